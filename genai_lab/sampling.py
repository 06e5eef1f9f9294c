"""Turning next-token logits into a choice: greedy, temperature, top-k, top-p, repetition penalty.

Every filter takes scores ``(B, V)`` (one row of logits per sequence) and returns new scores of
the same shape; removed tokens get ``-inf`` so that ``softmax`` gives them probability 0.  They
behave exactly like transformers' ``RepetitionPenaltyLogitsProcessor``,
``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper`` (tested on the same
logits), and :func:`process_logits` applies them in the same order as ``generate()``.

>>> scores = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
>>> top_k_filter(scores, 2)
tensor([[2., 1., -inf, -inf]])
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

FILTERED = -math.inf


def _check_scores(scores) -> None:
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError("scores must be a floating-point tensor of shape (B, V)")
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (B, V), got {tuple(scores.shape)}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_sampling_args(*, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                        repetition_penalty: float = 1.0) -> None:
    """Raise a ``TypeError``/``ValueError`` naming the argument unless every sampling setting is valid.

    ``temperature`` and ``repetition_penalty``: finite numbers > 0; ``top_k``: ``None`` or a
    positive int; ``top_p``: ``None`` or a number in (0, 1].  NaN and ∞ are refused everywhere
    (a NaN ``top_p`` would otherwise switch the filter off without a word).
    """
    for name, value in (("temperature", temperature), ("repetition_penalty", repetition_penalty)):
        if not _is_number(value):
            raise TypeError(f"{name} must be a positive number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise TypeError(f"top_k must be None or a positive int, got {type(top_k).__name__} {top_k!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be None or a positive int, got {top_k!r}")
    if top_p is not None:
        if not _is_number(top_p):
            raise TypeError(f"top_p must be None or a number in (0, 1], got {type(top_p).__name__} {top_p!r}")
        if not 0.0 < top_p <= 1.0:  # False for NaN as well
            raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")


def greedy_choice(scores: torch.Tensor) -> torch.Tensor:
    """The most likely token of each row: int64 (B,)."""
    _check_scores(scores)
    return scores.argmax(dim=-1)


def apply_temperature(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide scores (B, V) by ``temperature`` (> 0): below 1 sharpens, above 1 flattens."""
    _check_scores(scores)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a finite positive number, got {temperature!r}")
    return scores / temperature


def top_k_filter(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest scores of each row (ties with the k-th are kept), -inf elsewhere."""
    _check_scores(scores)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    k = min(k, scores.shape[-1])
    kth = torch.topk(scores, k, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < kth, FILTERED)


def top_p_filter(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches ``p``.

    Tokens are sorted by probability; a token is dropped when the total probability of all tokens
    *less* likely than it plus itself is ≤ 1 - p (transformers' rule), so at least
    ``min_tokens_to_keep`` tokens always stay.
    """
    _check_scores(scores)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"p must be a number in (0, 1], got {p!r}")
    if not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        raise ValueError(f"min_tokens_to_keep must be a positive int, got {min_tokens_to_keep!r}")
    sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -min_tokens_to_keep:] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return scores.masked_fill(remove, FILTERED)


def repetition_penalty_filter(scores: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make tokens already in ``input_ids`` (B, T) less likely (CTRL paper, Keskar et al. 2019).

    A seen token's score is divided by ``penalty`` when positive and multiplied by it when
    negative, so ``penalty > 1`` always lowers it; ``penalty = 1`` changes nothing.
    """
    _check_scores(scores)
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not 0 < penalty < math.inf:
        raise ValueError(f"penalty must be a finite positive number, got {penalty!r}")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype != torch.long or input_ids.ndim != 2:
        raise TypeError("input_ids must be an int64 tensor of shape (B, T)")
    if input_ids.shape[0] != scores.shape[0]:
        raise ValueError(f"input_ids must have {scores.shape[0]} rows like scores, got {input_ids.shape[0]}")
    seen = torch.gather(scores, 1, input_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, input_ids, seen)


def process_logits(scores: torch.Tensor, input_ids: torch.Tensor | None = None, *,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   repetition_penalty: float = 1.0) -> torch.Tensor:
    """All filters in ``generate()``'s order: repetition penalty, temperature, top-k, top-p.

    Args:
        scores: (B, V) logits of the next token.
        input_ids: (B, T) tokens so far (needed only for ``repetition_penalty != 1``).
    Returns:
        (B, V) scores; ``softmax`` of them is the distribution to sample from.
    Raises:
        TypeError, ValueError: a setting is not valid (see :func:`check_sampling_args`).
    """
    _check_scores(scores)
    check_sampling_args(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    if repetition_penalty != 1.0:
        if input_ids is None:
            raise ValueError("input_ids must be given when repetition_penalty != 1")
        scores = repetition_penalty_filter(scores, input_ids, repetition_penalty)
    if temperature != 1.0:
        scores = apply_temperature(scores, temperature)
    if top_k is not None:
        scores = top_k_filter(scores, top_k)
    if top_p is not None and top_p < 1.0:
        scores = top_p_filter(scores, top_p)
    return scores


def sample_next_token(scores: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from ``softmax(scores)``: int64 (B,)."""
    _check_scores(scores)
    return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator).squeeze(-1)


def hf_logits_processors(*, temperature: float = 1.0, top_k: int | None = None,
                         top_p: float | None = None, repetition_penalty: float = 1.0):
    """The transformers ``LogitsProcessorList`` that does what :func:`process_logits` does."""
    from transformers.generation.logits_process import (LogitsProcessorList,
                                                        RepetitionPenaltyLogitsProcessor,
                                                        TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    procs = LogitsProcessorList()
    if repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if temperature != 1.0:
        procs.append(TemperatureLogitsWarper(temperature))
    if top_k is not None:
        procs.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p))
    return procs


# --------------------------------------------------------------------------- measuring diversity


def distinct_n(texts: Sequence[str] | Iterable[Sequence], n: int) -> float:
    """Share of distinct n-grams among all n-grams of ``texts`` (characters of a str, or items).

    1.0 means no n-gram repeats; values near 0 mean the texts loop over the same few pieces.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(texts, str):
        raise TypeError("texts must be a list of sequences, not a single str")
    grams, total = set(), 0
    for text in texts:
        items = list(text)
        for i in range(len(items) - n + 1):
            grams.add(tuple(items[i:i + n]))
            total += 1
    if total == 0:
        raise ValueError(f"texts must contain at least one sequence of length ≥ n={n}")
    return len(grams) / total


def _check_one_text(text, name: str = "text") -> list:
    if isinstance(text, (str, bytes)):
        return list(text)
    if hasattr(text, "tolist"):  # a 1-D tensor or array of token ids
        text = text.tolist()
    if not isinstance(text, Sequence) or any(isinstance(t, (list, tuple)) for t in text):
        raise TypeError(f"{name} must be one sequence (a str or a list of tokens), got {type(text).__name__}")
    return list(text)


def repeated_ngram_fraction(text: Sequence, n: int = 4) -> float:
    """Share of the ``n``-grams of ONE text that already occurred earlier in the same text.

    ``1 - distinct_n([text], n)``: 0 when no ``n``-gram repeats, near 1 when the text loops.
    ``"abcabc"`` with ``n=3`` has the 3-grams abc, bca, cab, abc: one of four repeats → 0.25.
    """
    items = _check_one_text(text)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if len(items) < n:
        raise ValueError(f"text must be at least n={n} items long, got {len(items)}")
    return 1.0 - distinct_n([items], n)


def longest_repeated_span(text: Sequence) -> int:
    """Length of the longest piece that occurs at least twice in ONE text (occurrences may overlap).

    ``"abcabc"`` → 3 (``abc``); ``"aaaa"`` → 3 (``aaa`` at positions 0 and 1); ``"abcd"`` → 0.
    A text that loops with period p over L items scores L - p.
    """
    items = _check_one_text(text)

    def repeats(k: int) -> bool:  # does some piece of length k occur twice?
        seen = set()
        for i in range(len(items) - k + 1):
            piece = tuple(items[i:i + k])
            if piece in seen:
                return True
            seen.add(piece)
        return False

    lo, hi = 0, max(0, len(items) - 1)  # a repeat of length k implies one of every shorter length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if repeats(mid) else (lo, mid - 1)
    return lo


def text_diversity(texts: Sequence[Sequence], *, ns: Sequence[int] = (1, 2, 3), repeat_n: int = 4) -> dict:
    """Diversity and repetition of a set of samples, the way text-degeneration studies report them.

    Returns a dict with ``distinct-{n}`` for each ``n`` in ``ns`` (:func:`distinct_n` over all
    samples pooled: unique n-grams / total n-grams), ``repetition`` (mean over samples of
    :func:`repeated_ngram_fraction` with ``repeat_n``) and ``longest_repeat`` (mean over samples of
    :func:`longest_repeated_span`).  Compare sets of equal size and length: distinct-n falls as
    the total length grows, even for real text.
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence) or not texts:
        raise TypeError("texts must be a non-empty list of samples (str or token lists)")
    if not ns or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in ns):
        raise ValueError(f"ns must be a non-empty list of positive ints, got {ns!r}")
    samples = [_check_one_text(t, "each text") for t in texts]
    row = {f"distinct-{n}": distinct_n(samples, n) for n in ns}
    row["repetition"] = sum(repeated_ngram_fraction(s, repeat_n) for s in samples) / len(samples)
    row["longest_repeat"] = sum(longest_repeated_span(s) for s in samples) / len(samples)
    return row


def probability_table(scores: torch.Tensor, labels: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
    """The ``k`` most likely tokens of one row of scores (V,) as ``(label, probability)`` pairs."""
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1:
        raise TypeError("scores must be a 1-D tensor (V,)")
    if len(labels) != scores.shape[0]:
        raise ValueError(f"labels must have {scores.shape[0]} entries, got {len(labels)}")
    probs = torch.softmax(scores.float(), dim=-1)
    top = torch.topk(probs, min(k, len(labels)))
    return [(labels[i], float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist())]
