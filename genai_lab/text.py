"""Character-level text data shared by the RNN, GPT, BERT and LoRA chapters.

Tiny Shakespeare is split once, the same way everywhere: the first 90 % trains, the last 10 %
validates (no shuffling, so no line of the validation text is seen in training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .data import load_tiny_shakespeare, train_val_split


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an id and back.

    >>> tok = CharTokenizer.from_text("hello")
    >>> tok.decode(tok.encode("hole"))
    'hole'
    """

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("chars must be a non-empty iterable of single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("chars must not repeat a character")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The sorted set of characters in ``text`` as the vocabulary."""
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty str")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``'s characters; an unknown character raises ``ValueError`` naming it."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"text contains {exc.args[0]!r}, which is not in the vocabulary") from None

    def decode(self, ids) -> str:
        """Characters of ``ids`` (a list or a 1-D tensor)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        if any(not 0 <= i < len(self.chars) for i in ids):
            raise ValueError(f"ids must be in [0, {len(self.chars)}), got {ids}")
        return "".join(self.chars[i] for i in ids)


@dataclass
class CharCorpus:
    """Tiny Shakespeare as id tensors: ``train`` and ``val`` are int64 ``(N,)``."""

    tokenizer: CharTokenizer
    train: "torch.Tensor"  # noqa: F821
    val: "torch.Tensor"  # noqa: F821
    train_text: str
    val_text: str


def shakespeare_chars(train_fraction: float = 0.9) -> CharCorpus:
    """Tiny Shakespeare, character-tokenised (65 symbols), split 90/10 by position."""
    import torch

    text = load_tiny_shakespeare()
    tok = CharTokenizer.from_text(text)
    tr, va = train_val_split(text, train_fraction)
    return CharCorpus(tok, torch.tensor(tok.encode(tr), dtype=torch.long),
                      torch.tensor(tok.encode(va), dtype=torch.long), tr, va)


def random_windows(data, block_size: int, batch_size: int, *, generator=None, device=None):
    """A batch of random windows for next-token training.

    Args:
        data: int64 ``(N,)`` token ids.
    Returns:
        ``(x, y)``, both int64 ``(batch_size, block_size)``; ``y`` is ``x`` shifted by one.
    """
    import torch

    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if data.ndim != 1 or len(data) <= block_size:
        raise ValueError(f"data must be 1-D and longer than block_size={block_size}, got {tuple(data.shape)}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[starts[:, None] + offsets]
    y = data[starts[:, None] + offsets + 1]
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y
