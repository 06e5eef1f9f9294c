"""One head or eight? The same attention layer, the same width and budget, a different number of heads.

A multi-head layer of width ``D`` with ``H`` heads gives each head ``D / H`` features: eight heads
are eight *narrower* attentions, not eight extra ones.  :func:`compare_heads` trains a one-layer
Transformer encoder (the chapter's :class:`~genai_lab.transformer.EncoderLayer`) on a look-up task
with one head and with eight, several seeds each, and reports held-out accuracy per step budget.

The task: a sequence of ``length`` tokens from ``vocab`` symbols; at every position ``i`` the answer
is the *ordered* triple of the tokens at ``i - 1``, ``i + 2`` and ``i - 3`` (positions wrap around),
one of ``vocab ** 3`` classes.  Every position must read three others, in order.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import PositionalEncoding
from .transformer import EncoderLayer, Seq2SeqConfig

OFFSETS = (-1, 2, -3)  # the positions each answer reads, relative to its own


def lookup_batch(n: int, generator: torch.Generator, *, length: int = 8, vocab: int = 4) -> tuple[Tensor, Tensor]:
    """``n`` sequences ``(n, length)`` of ids in ``[0, vocab)`` and their answers ``(n, length)``.

    ``answer[i] = vocab² · x[i-1] + vocab · x[i+2] + x[i-3]`` (positions wrap around).
    """
    for name, value in (("n", n), ("length", length), ("vocab", vocab)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    x = torch.randint(0, vocab, (n, length), generator=generator)
    answer = torch.zeros_like(x)
    for offset in OFFSETS:
        answer = answer * vocab + x.roll(-offset, dims=1)  # roll(-o)[i] = x[i + o]
    return x, answer


class LookupEncoder(nn.Module):
    """Embedding + learned positions → one :class:`EncoderLayer` (``heads`` heads) → classifier.

    ``forward(x (B, T)) → logits (B, T, vocab ** 3)``.
    """

    def __init__(self, heads: int, *, width: int = 64, length: int = 8, vocab: int = 4):
        super().__init__()
        config = Seq2SeqConfig(vocab_size=vocab, d_model=width, num_heads=heads, ff_dim=4 * width,
                               max_len=length)
        self.embed = nn.Embedding(vocab, width)
        self.positions = PositionalEncoding("learned", length, width)
        self.layer = EncoderLayer(config)
        self.out = nn.Linear(width, vocab ** len(OFFSETS))

    def forward(self, x: Tensor) -> Tensor:
        h = self.positions(self.embed(x))
        return self.out(self.layer(h, torch.ones_like(x, dtype=torch.bool)))


def fit_lookup(heads: int, steps: int, *, seed: int = 0, width: int = 64, batch: int = 64,
               lr: float = 3e-3) -> LookupEncoder:
    """A :class:`LookupEncoder` trained for ``steps`` AdamW steps (seeded weights and batches)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    torch.manual_seed(seed)
    model = LookupEncoder(heads, width=width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = lookup_batch(batch, data)
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def held_out_set(size: int = 2000) -> tuple[Tensor, Tensor]:
    """The held-out sequences every model is scored on (its own seed, never used in training)."""
    return lookup_batch(size, torch.Generator().manual_seed(10_000))


def lookup_accuracy(model: LookupEncoder, size: int = 2000) -> float:
    """Fraction of held-out positions whose triple ``model`` predicts exactly (chance: 1/64)."""
    x, y = held_out_set(size)
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def train_lookup(heads: int, steps: int, *, seed: int = 0, width: int = 64) -> float:
    """Held-out accuracy of :func:`fit_lookup` ``(heads, steps, seed, width)``."""
    return lookup_accuracy(fit_lookup(heads, steps, seed=seed, width=width))


def attention_by_offset(model: LookupEncoder, offsets=range(-3, 4), size: int = 500) -> Tensor:
    """Mean attention weight each head puts at each relative position, ``(heads, len(offsets))``.

    Row ``h``, column ``j``: how much of head ``h``'s weight goes to position ``i + offsets[j]``,
    averaged over positions ``i`` and held-out sequences.
    """
    x, _ = held_out_set(size)
    with torch.no_grad():
        model(x)
    weights = model.layer.attn_weights  # (B, H, T, T)
    length = weights.shape[-1]
    rows = torch.arange(length)
    return torch.stack([weights[:, :, rows, (rows + o) % length].mean(dim=(0, 2)) for o in offsets], dim=1)


@dataclass
class HeadsResult:
    """Accuracies per (heads, steps): ``accuracy[(heads, steps)]`` lists one value per seed."""

    accuracy: dict[tuple[int, int], list[float]]

    def mean(self, heads: int, steps: int) -> float:
        return statistics.fmean(self.accuracy[heads, steps])

    def spread(self, heads: int, steps: int) -> float:
        """Standard deviation over seeds."""
        return statistics.stdev(self.accuracy[heads, steps]) if len(self.accuracy[heads, steps]) > 1 else 0.0


def compare_heads(heads=(1, 8), steps=(100, 200), seeds: int = 5, *, width: int = 64) -> HeadsResult:
    """Train every (heads, steps) pair from ``seeds`` seeds (the same seeds for every pair)."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive int, got {seeds!r}")
    for h in heads:
        if not isinstance(h, int) or h < 1 or width % h:
            raise ValueError(f"heads must be positive ints dividing width={width}, got {h!r}")
    return HeadsResult({(h, s): [train_lookup(h, s, seed=seed, width=width) for seed in range(seeds)]
                        for h in heads for s in steps})
