"""Who reads the future? A perturbation test for bidirectional encoders and causal decoders.

Change the token at one position of a sentence (nothing before it), run a model on both
versions and measure, at every position, how far its output moved.

- A **causal decoder** (GPT) lets position ``t`` attend to positions ``≤ t`` only, so every
  position *before* the change computes exactly the same numbers: its change is zero, up to
  floating-point rounding.
- A **bidirectional encoder** (BERT) lets every position attend to every other one, so the
  earlier positions move too: their representation depends on the words that follow.

:func:`future_token_sensitivity` does the measurement for any model wrapped as a function
``ids (1, T) → outputs (1, T, …)`` (hidden states of an encoder, logits of a decoder).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def _as_ids(ids, name: str) -> torch.Tensor:
    """``ids`` as an int64 tensor of shape (T,); accepts (T,), (1, T) or a sequence of ints."""
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        t = ids.detach().cpu().long()
    elif isinstance(ids, Sequence) and not isinstance(ids, (str, bytes)):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise TypeError(f"{name} must be a tensor or a sequence of int token ids")
        t = torch.tensor(list(ids), dtype=torch.long)
    else:
        raise TypeError(f"{name} must be a tensor or a sequence of int token ids, got {type(ids).__name__}")
    if t.ndim == 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"{name} must have shape (T,) or (1, T) with T ≥ 2, got {tuple(t.shape)}")
    return t


def first_changed_position(ids_a, ids_b) -> int:
    """The first position where two equally long token sequences differ.

    Args:
        ids_a, ids_b: int token ids, shape (T,) or (1, T) (tensors or lists), the same length.
    Returns:
        The index of the first differing token.
    Raises:
        ValueError: the lengths differ (``ids_b``) or the sequences are identical.
    """
    a, b = _as_ids(ids_a, "ids_a"), _as_ids(ids_b, "ids_b")
    if a.shape != b.shape:
        raise ValueError(f"ids_b must have the length of ids_a ({len(a)}), got {len(b)}: "
                         "pick a replacement word that tokenizes to as many tokens")
    diff = (a != b).nonzero()
    if len(diff) == 0:
        raise ValueError("ids_b must differ from ids_a somewhere; the two sequences are identical")
    return int(diff[0, 0])


@torch.no_grad()
def future_token_sensitivity(model_fn: Callable[[torch.Tensor], torch.Tensor], ids_a, ids_b, position: int,
                             *, relative: bool = False) -> torch.Tensor:
    """How far each position's output moves when the token at ``position`` changes.

    Args:
        model_fn: ``model_fn(ids)`` with ids int64 (1, T) returns float outputs (1, T, …) or
            (T, …): an encoder's hidden states, a decoder's logits.
        ids_a, ids_b: the original and the changed sentence, int token ids of shape (T,) or
            (1, T); equal before ``position`` and different at ``position`` (later tokens may
            differ too).
        position: the first changed position, ``1 ≤ position < T`` (so that there is an earlier
            position to look at).
        relative: divide each position's change by the largest |output| of ``ids_a`` at that
            position (a scale-free change, comparable between models).
    Returns:
        float32 (T,): at every position ``t``, ``max_d |f(ids_a)[t, d] − f(ids_b)[t, d]|``
        (relative to ``max_d |f(ids_a)[t, d]|`` when ``relative``).  Positions ``< position`` read
        only unchanged tokens: a causal model gives exactly zero there, a bidirectional one does not.
    Raises:
        TypeError / ValueError: bad arguments, named.
    """
    if not callable(model_fn):
        raise TypeError(f"model_fn must be a function ids (1, T) → outputs (1, T, …), got {type(model_fn).__name__}")
    a, b = _as_ids(ids_a, "ids_a"), _as_ids(ids_b, "ids_b")
    if a.shape != b.shape:
        raise ValueError(f"ids_b must have the length of ids_a ({len(a)}), got {len(b)}")
    if isinstance(position, bool) or not isinstance(position, int):
        raise TypeError(f"position must be an int, got {type(position).__name__}")
    if not 1 <= position < len(a):
        raise ValueError(f"position must be in [1, {len(a) - 1}] (an earlier position must exist), got {position}")
    if not torch.equal(a[:position], b[:position]):
        raise ValueError(f"ids_b must equal ids_a before position {position}; they differ at "
                         f"{first_changed_position(a, b)}")
    if a[position] == b[position]:
        raise ValueError(f"ids_b must differ from ids_a at position {position}")
    if not isinstance(relative, bool):
        raise TypeError(f"relative must be a bool, got {type(relative).__name__}")
    T = len(a)
    outs = []
    for ids, name in ((a, "ids_a"), (b, "ids_b")):
        out = model_fn(ids.unsqueeze(0))
        if not isinstance(out, torch.Tensor) or not out.dtype.is_floating_point:
            raise TypeError(f"model_fn must return a float tensor, got {type(out).__name__} for {name}")
        if out.ndim >= 2 and out.shape[0] == 1 and out.shape[1] == T:
            out = out[0]
        if out.ndim < 1 or out.shape[0] != T:
            raise ValueError(f"model_fn must return outputs of shape (1, T, …) or (T, …) with T = {T}, "
                             f"got {tuple(out.shape)}")
        outs.append(out.detach().float().cpu().reshape(T, -1))
    change = (outs[0] - outs[1]).abs().amax(dim=1)
    if relative:
        change = change / outs[0].abs().amax(dim=1).clamp_min(1e-12)
    return change
