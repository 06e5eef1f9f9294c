"""Attention written out: scaled dot-product attention, masks, multi-head attention, positions.

Everything here is small on purpose and checked against PyTorch in ``tests/test_attention.py``:

- :func:`scaled_dot_product_attention` ↔ ``torch.nn.functional.scaled_dot_product_attention``
- :class:`MultiHeadAttention` ↔ ``torch.nn.MultiheadAttention`` (same weights via
  :meth:`MultiHeadAttention.from_torch`)
- :func:`sinusoidal_positions` ↔ the formula of the PyTorch Transformer tutorial

Mask convention (the same as ``F.scaled_dot_product_attention``): a boolean mask is ``True``
where a query **may** attend to a key.  ``torch.nn.MultiheadAttention``'s ``key_padding_mask``
uses the opposite sign (``True`` = ignore); :meth:`MultiHeadAttention.forward` says which it takes.

The rest of the module draws the Transformer's blocks and measures the cost of attention.
A real pretrained encoder's attention (all-MiniLM-L6-v2) is read in :mod:`genai_lab.attention_maps`
and :mod:`genai_lab.syntax_heads`; the small encoder–decoder Transformer lives in
:mod:`genai_lab.transformer`.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch
from torch import Tensor, nn


# --------------------------------------------------------------------------- checks of inputs
def _tensor(x, name: str, min_dim: int = 1) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def _positive_int(x, name: str) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or x < 1:
        raise ValueError(f"{name} must be a positive int, got {x!r}")
    return x


# --------------------------------------------------------------------------- masks
def causal_mask(query_len: int, key_len: int | None = None, *, device=None) -> Tensor:
    """Boolean ``(query_len, key_len)`` mask, ``True`` on and below the diagonal.

    Query ``i`` may look at keys ``0..i`` (never the future).  With ``key_len != query_len`` the
    mask is aligned at the top-left, as in ``F.scaled_dot_product_attention(is_causal=True)``.

    >>> causal_mask(3).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    _positive_int(query_len, "query_len")
    key_len = query_len if key_len is None else _positive_int(key_len, "key_len")
    return torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril()


def padding_mask(lengths, max_len: int | None = None) -> Tensor:
    """Boolean ``(B, max_len)`` mask, ``True`` for real tokens and ``False`` for padding.

    Args:
        lengths: ``(B,)`` int tensor or list with the true length of each sequence.
        max_len: padded length (default: the largest length).

    To mask *keys* in attention, broadcast it as ``mask[:, None, None, :]`` → ``(B, 1, 1, T)``.

    >>> padding_mask([2, 3]).int().tolist()
    [[1, 1, 0], [1, 1, 1]]
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.numel() == 0 or lengths.is_floating_point():
        raise ValueError(f"lengths must be a non-empty 1-D list/tensor of ints, got {lengths!r}")
    if (lengths < 0).any():
        raise ValueError(f"lengths must be ≥ 0, got {lengths.tolist()}")
    longest = int(lengths.max())
    max_len = longest if max_len is None else max_len
    if not isinstance(max_len, int) or max_len < longest:
        raise ValueError(f"max_len must be an int ≥ the longest length ({longest}), got {max_len!r}")
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


# --------------------------------------------------------------------------- attention
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None,
                                 *, is_causal: bool = False) -> tuple[Tensor, Tensor]:
    """Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V, written out, returning the weights too.

    Args:
        query: ``(..., T_q, d_k)``.
        key: ``(..., T_k, d_k)``.
        value: ``(..., T_k, d_v)``.
        mask: optional, broadcastable to ``(..., T_q, T_k)``: boolean (``True`` = may attend) or
            float (added to the scores, ``-inf`` = blocked).
        is_causal: block the future (query ``i`` sees keys ``≤ i``); not together with ``mask``.

    Returns:
        ``(output (..., T_q, d_v), weights (..., T_q, T_k))``; each row of ``weights`` sums to 1,
        except rows whose keys are all masked, which are all zero (as in PyTorch ≥ 2.5).
    """
    _tensor(query, "query", 2), _tensor(key, "key", 2), _tensor(value, "value", 2)
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key must share the last dimension d_k, got {query.shape[-1]} "
                         f"and {key.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"key and value must have the same length T_k, got {key.shape[-2]} "
                         f"and {value.shape[-2]}")
    if mask is not None and is_causal:
        raise ValueError("mask and is_causal cannot be used together; fold the causal part into mask")
    d_k = query.shape[-1]
    scores = (query / math.sqrt(d_k)) @ key.transpose(-2, -1)  # (..., T_q, T_k); scaling Q is cheaper
    if is_causal:
        mask = causal_mask(query.shape[-2], key.shape[-2], device=query.device)
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the scores "
                             f"{tuple(scores.shape)} (..., T_q, T_k)") from None
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask.is_floating_point():
            scores = scores + mask
        else:
            raise TypeError(f"mask must be bool or floating point, got {mask.dtype}")
    weights = torch.softmax(scores, dim=-1)
    if mask is not None and mask.dtype == torch.bool and not bool(mask.any(-1).all()):
        weights = torch.nan_to_num(weights, nan=0.0)  # a row with every key blocked attends to nothing
    elif mask is not None and mask.is_floating_point():
        weights = torch.nan_to_num(weights, nan=0.0)
    return weights @ value, weights


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(B, T, D)`` → ``(B, H, T, D/H)``: cut the feature axis into ``num_heads`` slices."""
    _tensor(x, "x", 3)
    _positive_int(num_heads, "num_heads")
    if x.dim() != 3:
        raise ValueError(f"x must be (B, T, D), got shape {tuple(x.shape)}")
    b, t, d = x.shape
    if d % num_heads:
        raise ValueError(f"num_heads ({num_heads}) must divide the feature size D ({d})")
    return x.view(b, t, num_heads, d // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """``(B, H, T, d_head)`` → ``(B, T, H·d_head)``: the "Concat" of multi-head attention."""
    _tensor(x, "x", 4)
    if x.dim() != 4:
        raise ValueError(f"x must be (B, H, T, d_head), got shape {tuple(x.shape)}")
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W_O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    The ``h`` projections ``W_i^Q`` are stored side by side in one ``(D, D)`` linear layer
    (``q_proj``), likewise for K and V; :func:`split_heads` cuts the result into heads.

    Args:
        embed_dim: model width ``D``.
        num_heads: ``H`` (must divide ``D``).
        bias: biases in the four linear layers.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, bias: bool = True):
        super().__init__()
        _positive_int(embed_dim, "embed_dim")
        _positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide embed_dim ({embed_dim})")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None, *,
                attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> tuple[Tensor, Tensor]:
        """Self-attention when only ``query`` is given; cross-attention with ``key``/``value``.

        Args:
            query: ``(B, T_q, D)``.
            key, value: ``(B, T_k, D)``; default ``query`` (self-attention).
            attn_mask: boolean ``(T_q, T_k)`` or ``(B, 1, T_q, T_k)``, ``True`` = may attend.
            key_padding_mask: boolean ``(B, T_k)``, ``True`` = real token (NOT PyTorch's sign).
            is_causal: add a causal mask (decoder self-attention).

        Returns:
            ``(output (B, T_q, D), weights (B, H, T_q, T_k))``.
        """
        _tensor(query, "query", 3)
        key = query if key is None else _tensor(key, "key", 3)
        value = key if value is None else _tensor(value, "value", 3)
        if query.shape[-1] != self.embed_dim:
            raise ValueError(f"query must have {self.embed_dim} features, got shape {tuple(query.shape)}")
        mask = None
        if is_causal:
            mask = causal_mask(query.shape[1], key.shape[1], device=query.device)
        if attn_mask is not None:
            if not isinstance(attn_mask, Tensor) or attn_mask.dtype != torch.bool:
                raise TypeError(f"attn_mask must be a boolean tensor (True = may attend), got "
                                f"{getattr(attn_mask, 'dtype', type(attn_mask).__name__)}")
            mask = attn_mask if mask is None else mask & attn_mask
        if key_padding_mask is not None:
            if (not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool
                    or key_padding_mask.shape != key.shape[:2]):
                got = (f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
                       if isinstance(key_padding_mask, Tensor) else type(key_padding_mask).__name__)
                raise ValueError(f"key_padding_mask must be boolean (B, T_k) = {tuple(key.shape[:2])}, "
                                 f"got {got}")
            pad = key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)
            mask = pad if mask is None else mask & pad
        q = split_heads(self.q_proj(query), self.num_heads)  # (B, H, T_q, d_head)
        k = split_heads(self.k_proj(key), self.num_heads)  # (B, H, T_k, d_head)
        v = split_heads(self.v_proj(value), self.num_heads)
        only_causal = is_causal and attn_mask is None and key_padding_mask is None
        heads, weights = (scaled_dot_product_attention(q, k, v, is_causal=True) if only_causal
                          else scaled_dot_product_attention(q, k, v, mask))
        return self.out_proj(merge_heads(heads)), weights

    @classmethod
    def from_torch(cls, reference: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A copy with the same weights as a ``torch.nn.MultiheadAttention`` (to compare outputs)."""
        if not isinstance(reference, nn.MultiheadAttention):
            raise TypeError(f"reference must be nn.MultiheadAttention, got {type(reference).__name__}")
        if reference.in_proj_weight is None:
            raise ValueError("reference must use one in_proj_weight (kdim == vdim == embed_dim)")
        bias = reference.in_proj_bias is not None
        mha = cls(reference.embed_dim, reference.num_heads, bias=bias)
        with torch.no_grad():
            for proj, w in zip((mha.q_proj, mha.k_proj, mha.v_proj), reference.in_proj_weight.chunk(3)):
                proj.weight.copy_(w)
            mha.out_proj.weight.copy_(reference.out_proj.weight)
            if bias:
                for proj, b in zip((mha.q_proj, mha.k_proj, mha.v_proj), reference.in_proj_bias.chunk(3)):
                    proj.bias.copy_(b)
                mha.out_proj.bias.copy_(reference.out_proj.bias)
        return mha.to(reference.in_proj_weight.device)


# --------------------------------------------------------------------------- positions
def sinusoidal_positions(num_positions: int, dim: int, *, base: float = 10000.0) -> Tensor:
    """The fixed positional encoding of "Attention Is All You Need", ``(num_positions, dim)``.

    ``PE[p, 2i] = sin(p / base^(2i/dim))`` and ``PE[p, 2i+1] = cos(p / base^(2i/dim))``: each pair
    of columns is a clock hand turning at its own speed, so every position gets a unique pattern
    and ``PE[p] · PE[q]`` depends only on the offset ``p - q``.
    """
    _positive_int(num_positions, "num_positions")
    _positive_int(dim, "dim")
    if dim % 2:
        raise ValueError(f"dim must be even (sin/cos pairs), got {dim}")
    if not isinstance(base, (int, float)) or base <= 1:
        raise ValueError(f"base must be a number > 1, got {base!r}")
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (P, 1)
    frequency = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (dim/2,)
    angle = position * frequency  # (P, dim/2)
    pe = torch.empty(num_positions, dim)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return pe


class PositionalEncoding(nn.Module):
    """Adds position information to token embeddings ``(B, T, D)``.

    ``kind``: ``"sinusoidal"`` (fixed table, works for any length up to ``max_len``),
    ``"learned"`` (an ``nn.Embedding`` trained with the model, like BERT and GPT-2), or ``"none"``
    (nothing added: the model then cannot tell positions apart).
    """

    KINDS = ("sinusoidal", "learned", "none")

    def __init__(self, kind: str, max_len: int, dim: int):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        _positive_int(max_len, "max_len")
        self.kind, self.max_len = kind, max_len
        if kind == "learned":
            self.table = nn.Embedding(max_len, dim)
            nn.init.normal_(self.table.weight, std=0.1)
        elif kind == "sinusoidal":
            self.register_buffer("pe", sinusoidal_positions(max_len, dim), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(f"x has {t} positions, more than max_len={self.max_len}")
        if self.kind == "none":
            return x
        table = self.table.weight if self.kind == "learned" else self.pe
        return x + table[:t]

    def vectors(self) -> Tensor:
        """The ``(max_len, D)`` position vectors (zeros for ``"none"``)."""
        if self.kind == "learned":
            return self.table.weight.detach().clone()
        if self.kind == "sinusoidal":
            return self.pe.clone()
        return torch.zeros(self.max_len, 1)


def permutation_equivariance_gap(layer: Callable[[Tensor], Tensor], x: Tensor, permutation: Tensor) -> float:
    """``max |layer(x[:, perm]) - layer(x)[:, perm]|`` for ``x (B, T, D)``.

    Near zero (float rounding) means shuffling the input tokens just shuffles the outputs: the
    layer has no idea of order.  Self-attention without positional information behaves so.
    """
    if not callable(layer):
        raise TypeError(f"layer must be callable, got {type(layer).__name__}")
    _tensor(x, "x", 3)
    permutation = torch.as_tensor(permutation)
    if sorted(permutation.tolist()) != list(range(x.shape[1])):
        raise ValueError(f"permutation must reorder 0..{x.shape[1] - 1}, got {permutation.tolist()}")
    with torch.no_grad():
        return float((layer(x[:, permutation]) - layer(x)[:, permutation]).abs().max())


# --------------------------------------------------------------------------- a diagram of the blocks
_BLOCK_COLOURS = {"embed": "#f9d0d9", "attention": "#fcd9b6", "norm": "#f4efb0", "ff": "#c9e3f6",
                  "out": "#e0d4f5"}


def plot_transformer_diagram(encoder_layers: int | None = None, decoder_layers: int | None = None, *,
                             title: str = "The Transformer's blocks (after Figure 1 of Vaswani et al., 2017)"):
    """Boxes and arrows of the encoder–decoder Transformer, bottom (tokens) to top (probabilities).

    Encoder (left): embedding × √D → + positional encoding → [multi-head self-attention → add &
    norm → feed-forward → add & norm] × N. Decoder (right): the same, with *masked* self-attention
    and a cross-attention block whose keys and values come from the encoder's output, then linear
    → softmax. The thin side arrows are the residual ("add") connections.

    Args:
        encoder_layers, decoder_layers: the N written beside each stack (``None``: the letter N).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    for name, value in (("encoder_layers", encoder_layers), ("decoder_layers", decoder_layers)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    width, height = 3.6, 0.6
    fig, ax = plt.subplots(figsize=(9.5, 10))
    ax.set(xlim=(0, 12), ylim=(0, 13.4))
    ax.axis("off")

    def arrow(start, end, **kw):
        style = {"arrowstyle": "-|>", "color": "0.25", "lw": 1.2, "shrinkA": 0, "shrinkB": 0} | kw
        ax.annotate("", xy=end, xytext=start, arrowprops=style)

    def box(x, y, text, kind):
        ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, fc=_BLOCK_COLOURS[kind],
                                    ec="0.3", boxstyle="round,pad=0,rounding_size=0.12"))
        ax.text(x, y, text, ha="center", va="center", fontsize=9.5)

    def stack(x, blocks, residual_side):
        """Boxes from y = 3.9 upwards, 1.1 apart; a residual arrow around each sub-layer."""
        ys = [3.9 + 1.1 * i for i in range(len(blocks))]
        for i, ((text, kind), y) in enumerate(zip(blocks, ys)):
            box(x, y, text, kind)
            if i:
                arrow((x, ys[i - 1] + height / 2), (x, y - height / 2))
            if kind != "norm":  # a sub-layer: its input also goes round it to the add & norm above
                side = x + residual_side * (width / 2 + 0.3)
                junction = y - height / 2 - 0.2
                ax.plot([x, side, side], [junction, junction, ys[i + 1]], color="0.45", lw=1)
                arrow((side, ys[i + 1]), (x + residual_side * width / 2, ys[i + 1]), color="0.45")
        return ys

    def column(x, tokens, embed_text):
        ax.text(x, 0.5, tokens, ha="center", va="center", fontsize=9.5, style="italic")
        arrow((x, 0.7), (x, 1.5 - height / 2))
        box(x, 1.5, embed_text, "embed")
        arrow((x, 1.5 + height / 2), (x, 2.5 - height / 2))
        box(x, 2.5, "+ positional encoding", "embed")
        arrow((x, 2.5 + height / 2), (x, 3.9 - height / 2))

    def frame(x, top, label, label_x):
        ax.add_patch(FancyBboxPatch((x - width / 2 - 0.45, 3.2), width + 0.9, top - 3.2, fc="none", ec="0.55",
                                    ls="--", boxstyle="round,pad=0,rounding_size=0.2"))
        ax.text(label_x, (3.2 + top) / 2, label, ha="center", va="center", rotation=90, fontsize=10)

    n_enc = "N" if encoder_layers is None else str(encoder_layers)
    n_dec = "N" if decoder_layers is None else str(decoder_layers)
    ex, dx = 3.0, 8.5
    column(ex, "source tokens", "input embedding × √D")
    enc = stack(ex, [("multi-head self-attention", "attention"), ("add & norm", "norm"),
                     ("feed-forward (per position)", "ff"), ("add & norm", "norm")], +1)
    frame(ex, enc[-1] + 0.75, f"encoder layer × {n_enc}", ex - width / 2 - 0.8)

    column(dx, "target tokens, shifted right", "output embedding × √D")
    dec = stack(dx, [("masked multi-head self-attention", "attention"), ("add & norm", "norm"),
                     ("cross-attention (multi-head)", "attention"), ("add & norm", "norm"),
                     ("feed-forward (per position)", "ff"), ("add & norm", "norm")], +1)
    frame(dx, dec[-1] + 0.75, f"decoder layer × {n_dec}", dx + width / 2 + 0.8)

    # the encoder's output (memory) feeds every decoder layer's cross-attention as keys and values
    top, bend = enc[-1] + height / 2, enc[-1] + 1.3
    middle = (ex + dx) / 2  # between the two frames
    ax.plot([ex, ex, middle, middle], [top, bend, bend, dec[2]], color="#c0504d", lw=1.6)
    arrow((middle, dec[2]), (dx - width / 2, dec[2]), color="#c0504d", lw=1.6)
    ax.text((ex + middle) / 2, bend + 0.3, "encoder output → keys, values", ha="center", va="center",
            fontsize=9, color="#c0504d")

    head = dec[-1] + 1.7
    arrow((dx, dec[-1] + height / 2), (dx, head - height / 2))
    box(dx, head, "linear (to vocabulary size)", "out")
    arrow((dx, head + height / 2), (dx, head + 0.9 - height / 2))
    box(dx, head + 0.9, "softmax", "out")
    arrow((dx, head + 0.9 + height / 2), (dx, head + 1.5))
    ax.text(dx, head + 1.75, "next-token probabilities", ha="center", va="center", fontsize=9.5, style="italic")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- cost
def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], device, repeats: int) -> float:
    fn()  # warm-up
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def attention_cost(seq_lens: Sequence[int], *, dim: int = 64, heads: int = 4, batch: int = 1,
                   repeats: int = 3, device="cpu", seed: int = 0) -> list[dict]:
    """Time and memory of one self-attention call as the sequence grows.

    For each ``T``: the best-of-``repeats`` seconds of :func:`scaled_dot_product_attention` on
    ``(batch, heads, T, dim/heads)`` inputs and the bytes of the ``(batch, heads, T, T)`` weight
    matrix it has to hold (``peak_bytes``: CUDA's measured peak, when on a GPU).

    Returns:
        ``[{"seq_len", "seconds", "weight_bytes", "peak_bytes"}, ...]``.
    """
    if not seq_lens or any(not isinstance(t, int) or t < 1 for t in seq_lens):
        raise ValueError(f"seq_lens must be a non-empty list of positive ints, got {seq_lens!r}")
    _positive_int(dim, "dim"), _positive_int(heads, "heads"), _positive_int(batch, "batch")
    _positive_int(repeats, "repeats")
    if dim % heads:
        raise ValueError(f"heads ({heads}) must divide dim ({dim})")
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for t in seq_lens:
        q, k, v = (torch.randn(batch, heads, t, dim // heads, generator=gen).to(device) for _ in range(3))
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        with torch.no_grad():
            seconds = _time(lambda: scaled_dot_product_attention(q, k, v), device, repeats)
        peak = (torch.cuda.max_memory_allocated(device) - base) if cuda else None
        rows.append({"seq_len": t, "seconds": seconds, "weight_bytes": batch * heads * t * t * 4,
                     "peak_bytes": peak})
    return rows


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x): 1 = linear growth, 2 = quadratic."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("xs and ys must have the same length ≥ 2")
    lx = torch.log(torch.as_tensor(xs, dtype=torch.float64))
    ly = torch.log(torch.as_tensor(ys, dtype=torch.float64))
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())


def rnn_vs_attention_step(seq_lens: Sequence[int], *, dim: int = 64, heads: int = 4, batch: int = 16,
                          repeats: int = 3, device="cpu", seed: int = 0) -> list[dict]:
    """Seconds of one training step (forward + backward) of an LSTM layer vs a self-attention layer.

    All map ``(batch, T, dim)`` to ``(batch, T, dim)``:

    - ``rnn_seconds``: ``nn.LSTM`` over the sequences — ``T`` dependent steps, position ``t``
      needs the state of ``t - 1``;
    - ``rnn_unchained_seconds``: the same LSTM on ``batch·T`` sequences of length 1 — the same
      arithmetic with the chain cut, i.e. what the LSTM would cost if positions were independent;
    - ``attention_seconds``: causal multi-head self-attention — every position in a few large
      matrix products, no chain that grows with ``T``.

    ``rnn_seconds / rnn_unchained_seconds`` is the price of the recurrence on this hardware: near 1
    on one CPU thread (it has nothing to run in parallel anyway), large on a GPU.

    Returns:
        ``[{"seq_len", "rnn_seconds", "rnn_unchained_seconds", "attention_seconds",
        "rnn_sequential_steps", "attention_sequential_steps"}, ...]``.
    """
    if not seq_lens or any(not isinstance(t, int) or t < 1 for t in seq_lens):
        raise ValueError(f"seq_lens must be a non-empty list of positive ints, got {seq_lens!r}")
    _positive_int(dim, "dim"), _positive_int(batch, "batch"), _positive_int(repeats, "repeats")
    torch.manual_seed(seed)
    rnn = nn.LSTM(dim, dim, batch_first=True).to(device)
    attn = MultiHeadAttention(dim, heads).to(device)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for t in seq_lens:
        x = torch.randn(batch, t, dim, generator=gen).to(device)

        def rnn_step(inputs):
            rnn.zero_grad(set_to_none=True)
            rnn(inputs)[0].square().mean().backward()

        def attention_step():
            attn.zero_grad(set_to_none=True)
            attn(x, is_causal=True)[0].square().mean().backward()

        rows.append({"seq_len": t,
                     "rnn_seconds": _time(lambda: rnn_step(x), device, repeats),
                     "rnn_unchained_seconds": _time(lambda: rnn_step(x.reshape(batch * t, 1, dim)),
                                                    device, repeats),
                     "attention_seconds": _time(attention_step, device, repeats),
                     "rnn_sequential_steps": t, "attention_sequential_steps": 1})
    return rows

