"""Checks for the attention lab: each exercise is compared with PyTorch on fixed seeded inputs.

- :func:`check_attention` ↔ ``F.scaled_dot_product_attention`` (the weights too: attending over
  an identity matrix of values returns the weights themselves).
- :func:`check_masks` ↔ ``torch.tril`` / ``F.scaled_dot_product_attention(is_causal=True)``.
- :func:`check_split_merge` ↔ ``view``/``transpose`` of ``torch.nn.MultiheadAttention``'s layout.
- :func:`check_multi_head` ↔ ``torch.nn.MultiheadAttention`` with the same weights.
- :func:`check_sinusoidal` ↔ the positional encoding of the PyTorch Transformer tutorial.
"""

from __future__ import annotations

import math
from typing import Callable

from . import CheckResult, Exercise, check_function, describe_difference, expect, name_mistake, run_check


def _randn(*shape, seed: int):
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _reference_attention(q, k, v, mask=None, is_causal=False):
    """PyTorch's output, and its weights (attention applied to identity "values")."""
    import torch
    import torch.nn.functional as F

    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    eye = torch.eye(k.shape[-2]).expand(*k.shape[:-1], k.shape[-2])
    weights = F.scaled_dot_product_attention(q, k, eye, attn_mask=mask, is_causal=is_causal)
    return out, weights


def _attention_mistakes(q, k, v, mask=None) -> dict:
    """What the two classic slips in scaled dot-product attention return on ``q, k, v``."""
    import torch

    def attend(scale: float, softmax_dim: int):
        scores = q @ k.transpose(-2, -1) * scale
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=softmax_dim)
        return weights @ v, weights

    return {"the scores are not divided by √d_k (the scaling in softmax(QKᵀ/√d_k))":
            lambda: attend(1.0, -1),
            "the softmax runs over the queries (dim=-2); each query's weights must sum to 1 over the keys (dim=-1)":
            lambda: attend(1 / math.sqrt(q.shape[-1]), -2)}


def _compare_pair(actual, expected, what: str, mistakes: dict | None = None) -> str | None:
    if not isinstance(actual, (tuple, list)) or len(actual) != 2:
        return f"should return (output, weights), got {type(actual).__name__}"
    for name, a, e in zip(("output", "weights"), actual, expected):
        msg = describe_difference(a, e, atol=1e-5, rtol=1e-4, path=name)
        if msg:
            return f"{what}: {msg}" + (name_mistake(tuple(actual), mistakes, atol=1e-5, rtol=1e-4)
                                       if mistakes else "")
    return None


def check_attention(fn: Callable) -> CheckResult:
    """``fn(query, key, value) -> (output, weights)`` without masks; compared with PyTorch."""
    cases = []
    for i, (tq, tk, d, dv) in enumerate([(4, 4, 8, 8), (3, 6, 8, 5), (5, 2, 16, 4)]):
        q, k, v = _randn(2, tq, d, seed=i), _randn(2, tk, d, seed=10 + i), _randn(2, tk, dv, seed=20 + i)
        expected = _reference_attention(q, k, v)
        cases.append(((q, k, v), {}, lambda actual, e=expected, s=(tq, tk), m=_attention_mistakes(q, k, v):
                      _compare_pair(actual, e, f"T_q={s[0]}, T_k={s[1]}", m)))
    return check_function(fn, cases, name="scaled dot-product attention")


def check_masks(attention_fn: Callable, causal_mask_fn: Callable, padding_mask_fn: Callable) -> CheckResult:
    """The two masks, then ``attention_fn(q, k, v, mask)`` with them, against PyTorch."""
    import torch

    def body():
        msg = describe_difference(causal_mask_fn(4), torch.ones(4, 4, dtype=torch.bool).tril(),
                                  path="causal_mask(4)")
        if msg:
            return msg
        if causal_mask_fn(3).dtype != torch.bool:
            return "causal_mask should return a bool tensor (True = may attend)"
        expected_pad = torch.tensor([[True, True, False, False], [True, True, True, True],
                                     [True, False, False, False]])
        got_pad = padding_mask_fn(torch.tensor([2, 4, 1]), 4)
        msg = describe_difference(got_pad, expected_pad, path="padding_mask([2, 4, 1], 4)")
        if msg:
            return msg
        if got_pad.dtype != torch.bool:
            return "padding_mask should return a bool tensor (True = real token)"
        q, k, v = _randn(3, 2, 4, 8, seed=1), _randn(3, 2, 4, 8, seed=2), _randn(3, 2, 4, 8, seed=3)
        msg = _compare_pair(attention_fn(q, k, v, causal_mask_fn(4)),
                            _reference_attention(q, k, v, is_causal=True), "with the causal mask")
        if msg:
            return msg
        keep = expected_pad[:, None, None, :]
        return _compare_pair(attention_fn(q, k, v, keep), _reference_attention(q, k, v, keep),
                             "with the padding mask (B, 1, 1, T)")

    return run_check("attention masks", body)


def check_split_merge(split_fn: Callable, merge_fn: Callable) -> CheckResult:
    """``split_fn(x (B, T, D), H) -> (B, H, T, D/H)`` and ``merge_fn`` undoing it."""

    def body():
        x = _randn(2, 5, 12, seed=4)
        expected = x.view(2, 5, 3, 4).transpose(1, 2)
        split = split_fn(x, 3)
        msg = describe_difference(split, expected, path="split_heads(x, 3)")
        if msg:
            return msg + " (head h must hold features h·D/H … (h+1)·D/H − 1)"
        return describe_difference(merge_fn(expected), x, path="merge_heads(split)")

    return run_check("split and merge heads", body)


def check_multi_head(fn: Callable) -> CheckResult:
    """``fn(x, reference, key_padding_mask) -> (output, weights (B, H, T, T))`` vs the reference.

    ``reference`` is a seeded ``nn.MultiheadAttention(16, 4, batch_first=True)``; the learner
    uses its ``in_proj_weight``/``in_proj_bias``/``out_proj`` and their own attention.
    ``key_padding_mask`` is ``True`` for real tokens (PyTorch's own flag is the opposite).
    """
    import torch
    from torch import nn

    torch.manual_seed(0)
    reference = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = _randn(3, 6, 16, seed=5)
    keep = torch.arange(6)[None, :] < torch.tensor([6, 4, 2])[:, None]
    with torch.no_grad():
        out, weights = reference(x, x, x, key_padding_mask=~keep, average_attn_weights=False)

    def expected(actual):
        return _compare_pair(actual, (out, weights), "self-attention with padding")

    with torch.no_grad():
        return check_function(fn, [((x, reference, keep), {}, expected)], name="multi-head attention")


def check_sinusoidal(fn: Callable) -> CheckResult:
    """``fn(num_positions, dim) -> (num_positions, dim)`` vs the PyTorch tutorial's formula."""
    import torch

    def reference(n, d):
        position = torch.arange(n).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
        pe = torch.zeros(n, d)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        return pe

    def swapped(n, d):
        pe = reference(n, d)
        return torch.stack([pe[:, 1::2], pe[:, 0::2]], dim=-1).reshape(n, d)

    def per_column(n, d):  # exponent i/d with i the column, not the pair
        angle = torch.arange(n)[:, None] * 10000.0 ** (-torch.arange(d) / d)
        pe = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, 1::2])
        return pe

    cases = [((n, d), {}, expect(reference(n, d), {
        "sin and cos are swapped: even columns take sin, odd columns cos": lambda n=n, d=d: swapped(n, d),
        "each column has its own frequency; columns 2i and 2i+1 share 10000^(-2i/d)":
        lambda n=n, d=d: per_column(n, d)}, atol=1e-4, rtol=1e-4)) for n, d in [(10, 4), (64, 32), (3, 128)]]
    return check_function(fn, cases, name="sinusoidal positions")


def check_greedy_decode(fn):
    """``fn(model, src, max_new_tokens)`` equals the chapter's ``transformer.greedy_decode``: BOS
    first, the most likely next token each step, PAD after a sequence's EOS, stop when all ended."""
    import torch

    from .. import transformer as T

    def body():
        config = T.Seq2SeqConfig(d_model=32, num_heads=4, encoder_layers=1, decoder_layers=1, ff_dim=64)
        for seed, eos_boost in ((0, 0.0), (1, 0.0), (2, 4.0)):
            torch.manual_seed(seed)
            model = T.Seq2SeqTransformer(config).eval()
            with torch.no_grad():  # a larger EOS bias ends some sequences early (tests the padding)
                model.lm_head.bias[T.EOS] += eos_boost
            g = torch.Generator().manual_seed(seed)
            src = torch.randint(3, len(T.VOCAB), (5, 6), generator=g)
            src[1, 4:] = T.PAD
            want = T.greedy_decode(model, src, 7)
            with torch.no_grad():
                got = fn(model, src, 7)
            if not isinstance(got, torch.Tensor):
                return f"should return a tensor, got {type(got).__name__}"
            if got.shape != want.shape:
                return f"seed {seed}: shape {tuple(got.shape)}, expected {tuple(want.shape)} (BOS + at most 7 tokens, "\
                       "stopping early once every sequence has ended)"
            if not torch.equal(got, want):
                row = int((got != want).any(1).nonzero()[0])
                return (f"seed {seed}, sequence {row}: got {T.to_text(got[row])!r}, expected "
                        f"{T.to_text(want[row])!r}")
        return None

    return run_check("greedy_decode", body)

# --------------------------------------------------------------------------- the lab's exercises
# ``attention.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/attention.py).
attention = Exercise(
    "attention", "attention", check_attention, ("attention",),
    "a score compares one query with one key, so you need Q times K with its last two axes "
    "swapped; divide by the square root of the key size (read it from a shape). Each query's "
    "weights must sum to 1 over the keys: choose the softmax axis accordingly. Apply the mask to "
    "the scores, before the softmax.")
masks = Exercise(
    "attention", "masks", check_masks, ("causal_mask", "padding_mask"),
    "causal: start from an all-True (n, n) matrix and keep its lower triangle. Padding: compare a "
    "row of positions 0..max_len-1 with a column of lengths; broadcasting gives the (B, max_len) "
    "table.",
    check_names=("attention", "causal_mask", "padding_mask"))
split_merge = Exercise(
    "attention", "split_merge", check_split_merge, ("split_heads", "merge_heads"),
    "split: reshape the last axis into (heads, features per head), then swap the time and head "
    "axes. Merge does the same two steps backwards; a transposed tensor needs reshape, not view.")
multi_head = Exercise(
    "attention", "multi_head", check_multi_head, ("multi_head_attention",),
    "the stacked projection weights and biases cut into three equal parts (Q, K, V). Project x, "
    "split into heads, call your attention with the padding mask shaped to broadcast over heads "
    "and queries, merge, and finish with the output projection.")
sinusoidal = Exercise(
    "attention", "sinusoidal", check_sinusoidal, ("sinusoidal_positions",),
    "there are dim/2 frequencies, one per (sin, cos) column pair; column pair i uses the exponent "
    "2i/dim. An outer product of positions and frequencies gives every angle; write sin into the "
    "even columns and cos into the odd ones with step-2 slices.")
greedy_decode = Exercise(
    "attention", "greedy_decode", check_greedy_decode, ("greedy_decode",),
    "encode the source once. Keep a (B, 1) tensor of BOS and a (B,) 'finished' flag. Each step: "
    "decode what you have, take argmax of the LAST position's logits, replace it by PAD where the "
    "sequence already finished, append it, mark EOS as finished, and stop when every sequence is.")
