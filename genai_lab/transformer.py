"""A small encoder–decoder Transformer built from :mod:`genai_lab.attention`, and a toy task.

The network follows "Attention Is All You Need" (Vaswani et al., 2017, Figure 1) at toy size:

- **encoder** layer: self-attention → Add & Norm → feed-forward → Add & Norm;
- **decoder** layer: causal self-attention → Add & Norm → cross-attention to the encoder output
  (source–target attention) → Add & Norm → feed-forward → Add & Norm;
- token embeddings × √D plus positional encodings in, a final linear layer (+ softmax) out.

The task: reverse a sequence of digits (``3 1 4 1 5`` → ``5 1 4 1 3``), lengths vary, so padding
masks matter; the right answer needs positions, and the cross-attention of a trained model
shows the anti-diagonal alignment.  :func:`greedy_decode` writes out the decoder's loop: feed
what was generated so far, output the next token, append it, repeat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention, PositionalEncoding, padding_mask

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<s>", "</s>")
DIGITS = tuple("0123456789")
VOCAB = SPECIALS + DIGITS  # id 3 + d is digit d


def to_text(ids) -> str:
    """Readable text of token ids (specials shown in angle brackets, padding dropped)."""
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    return " ".join(VOCAB[i] for i in ids if i != PAD)


@dataclass
class Seq2SeqConfig:
    """Sizes of :class:`Seq2SeqTransformer` (all of them change the weights)."""

    vocab_size: int = len(VOCAB)
    d_model: int = 64
    num_heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    ff_dim: int = 128
    max_len: int = 16
    positions: str = "sinusoidal"  # "sinusoidal" | "learned" | "none"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_heads", "encoder_layers", "decoder_layers",
                     "ff_dim", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide d_model ({self.d_model})")
        if self.positions not in PositionalEncoding.KINDS:
            raise ValueError(f"positions must be one of {PositionalEncoding.KINDS}, got {self.positions!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


class FeedForward(nn.Sequential):
    """Position-wise feed-forward: Linear(D → F) → ReLU → Linear(F → D), same for every token."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float = 0.0):
        super().__init__(nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(ff_dim, d_model))


class EncoderLayer(nn.Module):
    """Self-attention and feed-forward, each followed by Add & Norm (post-norm, as in the paper)."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(c.d_model, c.num_heads)
        self.ff = FeedForward(c.d_model, c.ff_dim, c.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.attn_weights: Tensor | None = None  # (B, H, S, S) of the last call

    def forward(self, x: Tensor, src_keep: Tensor) -> Tensor:
        """``x (B, S, D)``, ``src_keep (B, S)`` True for real tokens → ``(B, S, D)``."""
        a, self.attn_weights = self.self_attn(x, key_padding_mask=src_keep)
        x = self.norm1(x + self.drop(a))
        return self.norm2(x + self.drop(self.ff(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder, feed-forward; Add & Norm after each."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(c.d_model, c.num_heads)
        self.cross_attn = MultiHeadAttention(c.d_model, c.num_heads)
        self.ff = FeedForward(c.d_model, c.ff_dim, c.dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(c.d_model) for _ in range(3))
        self.drop = nn.Dropout(c.dropout)
        self.self_weights: Tensor | None = None  # (B, H, T, T)
        self.cross_weights: Tensor | None = None  # (B, H, T, S)

    def forward(self, y: Tensor, memory: Tensor, src_keep: Tensor) -> Tensor:
        """``y (B, T, D)`` target so far, ``memory (B, S, D)`` encoder output → ``(B, T, D)``."""
        a, self.self_weights = self.self_attn(y, is_causal=True)
        y = self.norm1(y + self.drop(a))
        a, self.cross_weights = self.cross_attn(y, memory, memory, key_padding_mask=src_keep)
        y = self.norm2(y + self.drop(a))
        return self.norm3(y + self.drop(self.ff(y)))


class Seq2SeqTransformer(nn.Module):
    """Encoder–decoder Transformer: ``forward(src (B, S), tgt_in (B, T)) → logits (B, T, V)``.

    ``src`` and ``tgt_in`` are token ids padded with ``PAD`` (0); ``tgt_in`` starts with ``BOS``.
    After a forward pass, ``decoder_layers[i].cross_weights`` holds that layer's cross-attention
    ``(B, H, T, S)``: which source token each output position read.
    """

    def __init__(self, config: Seq2SeqConfig | None = None):
        super().__init__()
        c = config or Seq2SeqConfig()
        if not isinstance(c, Seq2SeqConfig):
            raise TypeError(f"config must be a Seq2SeqConfig, got {type(c).__name__}")
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=PAD)
        self.positions = PositionalEncoding(c.positions, c.max_len, c.d_model)
        self.encoder_layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.decoder_layers))
        self.lm_head = nn.Linear(c.d_model, c.vocab_size)

    def _check_ids(self, ids, name: str) -> Tensor:
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.is_floating_point():
            raise TypeError(f"{name} must be a (B, T) integer tensor, got "
                            f"{getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"{name} ids must be in [0, {self.config.vocab_size})")
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"{name} has {ids.shape[1]} positions, more than max_len={self.config.max_len}")
        return ids

    def _embed(self, ids: Tensor) -> Tensor:
        return self.positions(self.embed(ids) * self.config.d_model ** 0.5)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """``src (B, S)`` → ``(memory (B, S, D), src_keep (B, S))``."""
        src = self._check_ids(src, "src")
        keep = src != PAD
        x = self._embed(src)
        for layer in self.encoder_layers:
            x = layer(x, keep)
        return x, keep

    def decode(self, tgt_in: Tensor, memory: Tensor, src_keep: Tensor) -> Tensor:
        """``tgt_in (B, T)`` and the encoder's output → next-token logits ``(B, T, V)``."""
        y = self._embed(self._check_ids(tgt_in, "tgt_in"))
        for layer in self.decoder_layers:
            y = layer(y, memory, src_keep)
        return self.lm_head(y)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, keep = self.encode(src)
        return self.decode(tgt_in, memory, keep)

    def cross_attention(self) -> Tensor:
        """Cross-attention of the last forward pass, ``(layers, B, H, T, S)``."""
        if self.decoder_layers[0].cross_weights is None:
            raise RuntimeError("run the model (forward or greedy_decode) first")
        return torch.stack([layer.cross_weights for layer in self.decoder_layers])


def greedy_decode(model: Seq2SeqTransformer, src: Tensor, max_new_tokens: int | None = None,
                  *, trace: list | None = None) -> Tensor:
    """The decoder loop, written out: feed what was generated so far, take the most likely next token.

    Args:
        model: a trained :class:`Seq2SeqTransformer`.
        src: ``(B, S)`` source ids.
        max_new_tokens: stop after this many tokens (default ``S + 1``, enough for reversal).
        trace: if a list is given, one ``(generated_so_far, next_token)`` pair per step is
            appended for the first sequence (to print the loop in the book).

    Returns:
        ``(B, T)`` generated ids starting with ``BOS``; after ``EOS`` only ``PAD``.
        The source is encoded once; the decoder reruns on the growing prefix each step.
    """
    if not isinstance(model, Seq2SeqTransformer):
        raise TypeError(f"model must be a Seq2SeqTransformer, got {type(model).__name__}")
    steps = src.shape[1] + 1 if max_new_tokens is None else max_new_tokens
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    steps = min(steps, model.config.max_len - 1)
    src = src.to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        memory, keep = model.encode(src)
        generated = torch.full((src.shape[0], 1), BOS, dtype=torch.long, device=src.device)
        finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(steps):
            logits = model.decode(generated, memory, keep)  # (B, t, V): a prediction per position
            next_token = logits[:, -1].argmax(-1)  # only the last position's guess is new
            next_token = torch.where(finished, torch.full_like(next_token, PAD), next_token)
            if trace is not None:
                trace.append((to_text(generated[0]), VOCAB[int(next_token[0])]))
            generated = torch.cat([generated, next_token[:, None]], dim=1)
            finished |= next_token == EOS
            if finished.all():
                break
    model.train(was_training)
    return generated


# --------------------------------------------------------------------------- the toy task
@dataclass
class ReversalData:
    """Train and held-out test pairs. ``*_src (N, L)``; ``*_tgt (N, L + 2)`` = BOS, reversed, EOS."""

    train_src: Tensor
    train_tgt: Tensor
    test_src: Tensor
    test_tgt: Tensor
    min_len: int
    max_len: int


def reversal_pairs(n: int, *, min_len: int = 3, max_len: int = 8,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` random digit sequences and their reversals, padded with ``PAD``.

    Returns:
        ``src (n, max_len)`` and ``tgt (n, max_len + 2)`` (``BOS`` + reversed digits + ``EOS``).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(min_len, int) or not isinstance(max_len, int) or not 1 <= min_len <= max_len:
        raise ValueError(f"need ints 1 ≤ min_len ≤ max_len, got min_len={min_len!r}, max_len={max_len!r}")
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    digits = torch.randint(0, 10, (n, max_len), generator=generator) + len(SPECIALS)
    keep = padding_mask(lengths, max_len)
    src = torch.where(keep, digits, torch.full_like(digits, PAD))
    tgt = torch.full((n, max_len + 2), PAD, dtype=torch.long)
    tgt[:, 0] = BOS
    for i, length in enumerate(lengths.tolist()):
        tgt[i, 1:length + 1] = src[i, :length].flip(0)
        tgt[i, length + 1] = EOS
    return src, tgt


def reversal_data(cfg, *, n_train: int | None = None, n_test: int = 500, min_len: int = 3,
                  max_len: int = 8) -> ReversalData:
    """The chapter's fixed split (seeded by ``cfg.seed``): test sequences never appear in training."""
    n_train = n_train if n_train is not None else cfg.pick(smoke=20000, cpu=50000, gpu=100000)
    gen = torch.Generator().manual_seed(cfg.seed + 1234)
    train_src, train_tgt = reversal_pairs(n_train, min_len=min_len, max_len=max_len, generator=gen)
    test_src, test_tgt = reversal_pairs(2 * n_test, min_len=min_len, max_len=max_len, generator=gen)
    seen = {tuple(row) for row in train_src.tolist()}
    fresh = torch.tensor([tuple(row) not in seen for row in test_src.tolist()])
    test_src, test_tgt = test_src[fresh][:n_test], test_tgt[fresh][:n_test]
    return ReversalData(train_src, train_tgt, test_src, test_tgt, min_len, max_len)


def seq2seq_loss(model: Seq2SeqTransformer, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Teacher forcing: input ``tgt[:, :-1]``, predict ``tgt[:, 1:]``; padding is not scored."""
    src, tgt = batch
    logits = model(src, tgt[:, :-1])
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1),
                                       ignore_index=PAD)


def exact_match(model: Seq2SeqTransformer, src: Tensor, tgt: Tensor, *, batch_size: int = 500) -> float:
    """Share of sequences whose greedy decoding equals the target exactly (up to and incl. EOS)."""
    if len(src) != len(tgt) or len(src) == 0:
        raise ValueError(f"src and tgt must be non-empty and equally long, got {len(src)} and {len(tgt)}")
    device = next(model.parameters()).device
    correct = 0
    for s in range(0, len(src), batch_size):
        source, target = src[s:s + batch_size].to(device), tgt[s:s + batch_size].to(device)
        out = greedy_decode(model, source, target.shape[1] - 1)
        width = target.shape[1]
        out = nn.functional.pad(out, (0, width - out.shape[1]), value=PAD)[:, :width]
        correct += int((out == target).all(dim=1).sum())
    return correct / len(src)


def reversal_model_config(cfg, positions: str = "sinusoidal") -> Seq2SeqConfig:
    """The model size for this profile: D = 32 in ``smoke``, 64 in ``cpu``, 128 in ``gpu``."""
    width = cfg.pick(smoke=32, cpu=64, gpu=128)
    return Seq2SeqConfig(d_model=width, ff_dim=2 * width, positions=positions)


def copy_baseline_exact_match(src: Tensor, tgt: Tensor) -> float:
    """Exact match of the trivial baseline that outputs the input unchanged (right for palindromes)."""
    if len(src) != len(tgt) or len(src) == 0:
        raise ValueError(f"src and tgt must be non-empty and equally long, got {len(src)} and {len(tgt)}")
    lengths = (src != PAD).sum(1)
    guess = torch.full_like(tgt, PAD)
    guess[:, 0] = BOS
    guess[:, 1:src.shape[1] + 1] = src
    guess[torch.arange(len(src)), lengths + 1] = EOS
    return float((guess == tgt).all(1).float().mean())


def train_reversal(cfg, *, positions: str = "sinusoidal", steps: int | None = None,
                   retrain: bool = False, verbose: bool = True):
    """Train (or load the cached) reversal model for this profile: ``(model, meta)``.

    ``meta["metrics"]`` holds ``losses`` (every step), ``test_exact_match`` and ``steps``; the
    notebook and the bench share the checkpoint through :func:`genai_lab.checkpoints.load_or_train`.
    """
    from .checkpoints import load_or_train
    from .train import infinite_batches, train_loop

    steps = steps if steps is not None else cfg.pick(smoke=1000, cpu=2000, gpu=3000)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    model_config = reversal_model_config(cfg, positions)
    batch_size = cfg.pick(smoke=128, cpu=128, gpu=256)
    lr, warmup = 3e-3, 50
    settings = {"model": asdict(model_config), "steps": steps, "batch_size": batch_size, "lr": lr,
                "warmup": warmup, "seed": cfg.seed, "task": "reverse digits 3-8, v1"}

    def build():
        torch.manual_seed(cfg.seed)
        return Seq2SeqTransformer(model_config)

    def train(model):
        data = reversal_data(cfg)
        gen = torch.Generator().manual_seed(cfg.seed)
        batches = infinite_batches(data.train_src, data.train_tgt, batch_size=batch_size,
                                   generator=gen, device=cfg.device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / steps))
        hist = train_loop(model, opt, batches, seq2seq_loss, steps, scheduler=schedule, clip_grad=1.0,
                          desc=f"reversal ({positions})")
        match = exact_match(model, data.test_src, data.test_tgt)
        return {"losses": [round(v, 4) for v in hist.losses], "test_exact_match": match,
                "steps": len(hist.losses), "train_seconds": round(hist.seconds, 2)}

    return load_or_train(f"attention-reversal-{positions}", cfg, settings, build, train,
                         retrain=retrain, verbose=verbose)


def cross_attention_alignment(model: Seq2SeqTransformer, src: Tensor) -> Tensor:
    """How often each cross-attention head looks at the mirrored source digit, ``(layers, heads)``.

    Decodes ``src (B, S)`` greedily, reruns the decoder on the result, and for every output
    digit ``i`` of a sequence of length ``L`` checks whether the head's largest weight falls on
    source position ``L - 1 - i`` (the digit it must copy).  1.0 = a perfect reversal alignment.
    """
    if not isinstance(src, Tensor) or src.dim() != 2:
        raise TypeError(f"src must be a (B, S) tensor of ids, got {type(src).__name__}")
    src = src.to(next(model.parameters()).device)
    generated = greedy_decode(model, src)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(src, generated[:, :-1])
    model.train(was_training)
    cross = model.cross_attention()  # (layers, B, H, T, S)
    lengths = (src != PAD).sum(1)  # (B,)
    steps = torch.arange(cross.shape[-2], device=src.device)  # output position i predicts digit i
    mirrored = lengths[:, None] - 1 - steps[None, :]  # (B, T)
    valid = (mirrored >= 0)  # positions that copy a digit (not the EOS step)
    looked = cross.argmax(-1)  # (layers, B, H, T)
    hits = (looked == mirrored[None, :, None, :]) & valid[None, :, None, :]
    return hits.sum((1, 3)).float() / valid.sum()
