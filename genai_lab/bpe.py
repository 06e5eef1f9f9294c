"""Byte-pair encoding (BPE) from scratch: learn merges from a corpus, then cut new text with them.

BPE (Sennrich et al., 2016) starts from single characters and, again and again, merges the most
frequent pair of neighbouring symbols into one new symbol: ``t h e`` → ``th e`` → ``the``. The list
of merges *is* the tokenizer. Frequent words end up as one token, rare words as a few pieces, and
nothing is ever out of the vocabulary, because single characters are always left to fall back on.

The settings match the ``tokenizers`` library's ``BpeTrainer`` with the ``Whitespace``
pre-tokenizer, no normaliser and no special tokens, so the two can be compared merge by merge
(:func:`train_bpe_tokenizers`; ``tests/test_bpe.py``):

- words are ``\\w+`` runs and runs of punctuation (``[^\\w\\s]+``); whitespace is dropped;
- a word's pairs count as often as the word occurs, overlapping pairs included (``aaa`` holds
  ``(a, a)`` twice);
- between equally frequent pairs the pair of *older* symbols wins: symbols are numbered, the
  characters first in code-point order, then each merged symbol as it is made, and the pair with
  the smaller (first, second) numbers is taken — the library's rule;
- encoding repeats, inside each word, "merge the neighbouring pair that was learned first" until
  no learned pair is left (the same result as applying the merges in order).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from typing import Iterable, Mapping, Sequence

#: a word: a run of letters/digits/underscore, or a run of punctuation (whitespace is dropped)
WORD_PATTERN = re.compile(r"\w+|[^\w\s]+")

Merge = tuple[str, str]


# --------------------------------------------------------------------------- inputs
def pre_tokenize(text: str) -> list[str]:
    """Cut ``text`` into words before BPE: ``"I'll go."`` → ``["I", "'", "ll", "go", "."]``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return WORD_PATTERN.findall(text)


def word_counts(words_or_text) -> Counter:
    """How often each word occurs: from a text (pre-tokenized), a list of words, or ``{word: count}``."""
    if isinstance(words_or_text, str):
        counts = Counter(pre_tokenize(words_or_text))
    elif isinstance(words_or_text, Mapping):
        counts = Counter()
        for word, n in words_or_text.items():
            if not isinstance(word, str) or not word:
                raise TypeError(f"words_or_text must map non-empty str words to counts, got key {word!r}")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"words_or_text must map words to positive int counts, got {word!r}: {n!r}")
            counts[word] += n
    elif isinstance(words_or_text, Iterable):
        words = list(words_or_text)
        for word in words:
            if not isinstance(word, str) or not word:
                raise TypeError(f"words_or_text must hold non-empty str words, got {word!r}")
        counts = Counter(words)
    else:
        raise TypeError("words_or_text must be a str, a list of words or a {word: count} mapping, "
                        f"got {type(words_or_text).__name__}")
    if not counts:
        raise ValueError("words_or_text must contain at least one word")
    return counts


def _num_merges(num_merges) -> int:
    if not isinstance(num_merges, int) or isinstance(num_merges, bool):
        raise TypeError(f"num_merges must be an int, got {type(num_merges).__name__}")
    if num_merges < 0:
        raise ValueError(f"num_merges must be ≥ 0, got {num_merges}")
    return num_merges


def _ranks(merges) -> dict[Merge, int]:
    """``{pair: position in merges}`` (the first position when a pair repeats)."""
    if isinstance(merges, (str, bytes)) or not isinstance(merges, (list, tuple)):
        raise TypeError(f"merges must be a list of (str, str) pairs, got {type(merges).__name__}")
    ranks: dict[Merge, int] = {}
    for i, pair in enumerate(merges):
        if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                or not all(isinstance(s, str) and s for s in pair)):
            raise ValueError(f"merges[{i}] must be a pair of non-empty str, got {pair!r}")
        ranks.setdefault((pair[0], pair[1]), i)
    return ranks


# --------------------------------------------------------------------------- training
def merge_pair(symbols: Sequence[str], pair: Merge) -> list[str]:
    """Replace each occurrence of ``pair`` in ``symbols``, left to right, by the joined symbol.

    >>> merge_pair(["a", "a", "a", "b"], ("a", "a"))
    ['aa', 'a', 'b']
    """
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == pair[0] and symbols[i + 1] == pair[1]:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def train_bpe(words_or_text, num_merges: int) -> list[Merge]:
    """Learn up to ``num_merges`` BPE merges, most frequent pair first.

    Args:
        words_or_text: a text (cut into words by :func:`pre_tokenize`), a list of words, or a
            ``{word: count}`` mapping.
        num_merges: how many merges to learn (fewer when no pair is left to merge).

    Returns:
        The merges in the order they were learned, e.g. ``[("t", "h"), ("th", "e"), ...]``;
        the vocabulary is the characters of the corpus plus one symbol per merge.

    The loop is the textbook one — count the pairs, merge the most frequent, repeat — with one
    saving: after a merge only the words that held the pair are counted again.
    """
    counts = word_counts(words_or_text)
    num_merges = _num_merges(num_merges)
    splits = {word: list(word) for word in counts}                 # each word as its symbols
    age = {c: i for i, c in enumerate(sorted({c for word in counts for c in word}))}
    pairs: Counter = Counter()                                      # pair → how often it occurs
    where: defaultdict = defaultdict(set)                           # pair → words that hold it

    def count(word: str, sign: int) -> None:                        # add (+1) or remove (-1) a word's pairs
        symbols = splits[word]
        for pair in zip(symbols, symbols[1:]):
            pairs[pair] += sign * counts[word]
            where[pair].add(word)
            if pairs[pair] == 0:
                del pairs[pair]

    for word in counts:
        count(word, +1)
    merges: list[Merge] = []
    while len(merges) < num_merges and pairs:
        top = max(pairs.values())                                   # the most frequent pair; among
        best = min((p for p, n in pairs.items() if n == top),      # equals, the one of older symbols
                   key=lambda p: (age[p[0]], age[p[1]]))
        merges.append(best)
        age.setdefault(best[0] + best[1], len(age))
        for word in where.pop(best):                                # re-count only the words it touches
            count(word, -1)
            splits[word] = merge_pair(splits[word], best)
            count(word, +1)
    return merges


# --------------------------------------------------------------------------- encoding
def encode_word(word: str, ranks: Mapping[Merge, int]) -> list[str]:
    """One word's tokens: merge the neighbouring pair learned first, until none is learned."""
    symbols = list(word)
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:]), key=lambda p: ranks.get(p, math.inf))
        if best not in ranks:
            break
        symbols = merge_pair(symbols, best)
    return symbols


def encode(text: str, merges: Sequence[Merge]) -> list[str]:
    """Cut ``text`` into BPE tokens (str) with ``merges`` from :func:`train_bpe`.

    Whitespace is dropped by :func:`pre_tokenize`; a character never seen in training stays a
    token of its own.

    >>> encode("the theme", [("t", "h"), ("th", "e")])
    ['the', 'the', 'm', 'e']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    ranks = _ranks(merges)
    cache: dict[str, list[str]] = {}
    tokens: list[str] = []
    for word in pre_tokenize(text):
        if word not in cache:
            cache[word] = encode_word(word, ranks)
        tokens += cache[word]
    return tokens


def encode_lines(lines: Sequence[str], merges: Sequence[Merge]) -> list[list[str]]:
    """:func:`encode` for each of ``lines``, sharing one table of merges and one cache of words
    (so thousands of lines are quick)."""
    if isinstance(lines, str) or not isinstance(lines, (list, tuple)):
        raise TypeError(f"lines must be a list of str, got {type(lines).__name__}")
    if any(not isinstance(line, str) for line in lines):
        raise TypeError("lines must be a list of str")
    ranks = _ranks(merges)
    cache: dict[str, list[str]] = {}
    out = []
    for line in lines:
        tokens: list[str] = []
        for word in pre_tokenize(line):
            if word not in cache:
                cache[word] = encode_word(word, ranks)
            tokens += cache[word]
        out.append(tokens)
    return out


def tokens_per_line(lines: Sequence[str], merges: Sequence[Merge]) -> list[int]:
    """Number of BPE tokens of each of ``lines``."""
    return [len(tokens) for tokens in encode_lines(lines, merges)]


def sequence_lengths(lines: Sequence[str], merges: Sequence[Merge], merge_counts: Sequence[int]) -> list[dict]:
    """Characters vs BPE tokens per line, for the first ``k`` merges of ``merges``, each ``k``.

    Returns:
        One row per ``k``: ``{"merges": k, "tokens_per_line": mean tokens,
        "chars_per_line": mean characters (spaces included), "chars_per_token": their ratio}``.
    """
    if not lines:
        raise ValueError("lines must be a non-empty list of str")
    _ranks(merges)
    if isinstance(merge_counts, (str, bytes)) or not merge_counts:
        raise ValueError("merge_counts must be a non-empty list of ints")
    for k in merge_counts:
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= len(merges):
            raise ValueError(f"merge_counts must hold ints in [0, {len(merges)}], got {k!r}")
    chars = sum(len(line) for line in lines) / len(lines)
    rows = []
    for k in merge_counts:
        tokens = sum(tokens_per_line(lines, merges[:k])) / len(lines)
        rows.append({"merges": k, "tokens_per_line": tokens, "chars_per_line": chars,
                     "chars_per_token": chars / tokens if tokens else math.inf})
    return rows


def plot_sequence_lengths(rows: Sequence[dict], *, ax=None,
                          title: str = "More merges, shorter sequences (held-out lines)"):
    """Mean tokens per line against the number of merges, with the character count for reference."""
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("rows must be a non-empty list from sequence_lengths()")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    xs = [r["merges"] for r in rows]
    ax.plot(xs, [r["tokens_per_line"] for r in rows], "o-", label="BPE tokens (spaces dropped)")
    ax.axhline(rows[0]["chars_per_line"], color="grey", ls="--", label="characters (spaces included)")
    ax.set(title=title, xlabel="number of merges (vocabulary = characters + merges)",
           ylabel="mean length of a line", ylim=(0, 1.35 * rows[0]["chars_per_line"]))
    ax.legend(loc="upper right")
    return ax.figure


# --------------------------------------------------------------------------- the library, for comparison
def train_bpe_tokenizers(text: str, num_merges: int):
    """The ``tokenizers`` library's BPE trained on ``text`` with the settings of :func:`train_bpe`.

    ``Whitespace`` pre-tokenizer, no normaliser, no special tokens, no unknown token,
    ``min_frequency=0``, and a vocabulary of the corpus's characters plus ``num_merges``.

    Returns:
        ``(merges, tokenizer)``: the learned merges as ``[(str, str), ...]`` and the trained
        ``tokenizers.Tokenizer`` (``tokenizer.encode(line).tokens`` cuts a line).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty str")
    num_merges = _num_merges(num_merges)
    alphabet = {c for word in pre_tokenize(text) for c in word}
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + num_merges, min_frequency=0,
                                  special_tokens=[], show_progress=False)
    tokenizer.train_from_iterator([text], trainer=trainer)
    raw = json.loads(tokenizer.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in raw]
    return merges, tokenizer


# --------------------------------------------------------------------------- the chapter's figures
#: merges learned on Tiny Shakespeare per profile (the chapter page and the bench use the same)
NUM_MERGES = {"smoke": 500, "cpu": 2000, "gpu": 2000}


def bench_metrics(cfg) -> list:
    """The BPE figures of the attention chapter's bench: agreement with ``tokenizers``, compression.

    Trains both BPEs on the training part of Tiny Shakespeare with ``NUM_MERGES[cfg.profile]``
    merges and cuts the held-out lines, as the chapter page does.
    """
    from .bench import Metric
    from .text import shakespeare_chars

    corpus = shakespeare_chars()
    num_merges = cfg.pick(**NUM_MERGES)
    merges = train_bpe(corpus.train_text, num_merges)
    library_merges, library = train_bpe_tokenizers(corpus.train_text, num_merges)
    heldout = [line for line in corpus.val_text.splitlines() if line.strip()]
    theirs = [encoding.tokens for encoding in library.encode_batch(heldout)]
    same_lines = sum(a == b for a, b in zip(encode_lines(heldout, merges), theirs))
    same_merges = sum(a == b for a, b in zip(merges, library_merges))
    ratio = sequence_lengths(heldout, merges, [len(merges)])[0]["chars_per_token"]
    return [
        Metric("bpe_merges_equal_to_tokenizers", same_merges / max(len(library_merges), 1), True, bar=1.0),
        Metric("bpe_heldout_lines_equal_to_tokenizers", same_lines / len(heldout), True, bar=1.0),
        Metric("bpe_heldout_chars_per_token", ratio, True, bar=None, unit="x"),
    ]
