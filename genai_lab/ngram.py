"""n-gram language models: probabilities by counting, with smoothing.

A language model gives every sequence a probability by the chain rule,
``P(w_1..w_T) = Π_t P(w_t | w_1..w_{t-1})``.  An n-gram model cuts the history to the last
``n - 1`` tokens and estimates each factor by counting::

    P(w | h) = C(h, w) / C(h)

Raw counts give zero probability to anything never seen, so the model *smooths*:

- ``"add_k"``: pretend every possible next token was seen ``k`` more times,
  ``P(w | h) = (C(h, w) + k) / (C(h) + k·V)`` (``k = 1`` is Laplace smoothing).
- ``"kneser_ney"`` (default): interpolated modified Kneser-Ney (Chen & Goodman 1998). Subtract a
  small discount from every seen count and give the freed mass to the next-shorter context,
  whose counts are *continuation* counts (in how many different contexts a token appears).

Tokens are characters when the text is a ``str`` and ``level="char"``, or words
(:func:`word_tokens`) with ``level="word"``; a list of strings is used as given (handy for
Japanese, where words are not separated by spaces).  Tokens never seen in training map to
``<unk>``.

>>> lm = NGramLM(3).fit("むかしむかし、あるところに、おじいさんとおばあさんがいました。")
>>> lm.prob("あ", "むかし、") > lm.prob("ウ", "むかし、")
True
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from typing import Sequence

UNK = "<unk>"  # the unknown word; unknown characters become UNK_CHAR
UNK_CHAR = "\ufffd"
SMOOTHINGS = ("kneser_ney", "add_k")
LEVELS = ("char", "word")
_WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|\d+|\n|[^\sA-Za-z\d]")


def word_tokens(text: str) -> list[str]:
    """Split English text into words, punctuation marks and line breaks (``"\\n"``).

    >>> word_tokens("Nay, I'll go.\\nFirst")
    ['Nay', ',', "I'll", 'go', '.', '\\n', 'First']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _WORD_RE.findall(text)


def apply_temperature(probs, temperature: float):
    """Re-shape a distribution with a temperature: ``p_i^(1/T) / Σ_j p_j^(1/T)``.

    ``T < 1`` sharpens (``T → 0`` is greedy), ``T = 1`` leaves it unchanged, ``T > 1`` flattens it.
    Equivalent to ``softmax(log p / T)``.

    Args:
        probs: a ``torch.Tensor`` ``(..., V)`` of non-negative numbers summing to 1 on the last dim.
        temperature: a positive float.
    Returns:
        A tensor of the same shape, summing to 1 on the last dim.
    """
    import torch

    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"probs must be a torch.Tensor, got {type(probs).__name__}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if probs.numel() == 0 or (probs < 0).any():
        raise ValueError("probs must be a non-empty tensor of non-negative values")
    p = probs.double()
    logits = torch.where(p > 0, torch.log(p.clamp_min(1e-300)) / float(temperature),
                         torch.full_like(p, -math.inf))
    return torch.softmax(logits, dim=-1).to(probs.dtype)


def _generator(seed, generator):
    import torch

    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


class NGramLM:
    """A smoothed n-gram language model over characters or words.

    Args:
        n: order (1 = unigram, 2 = bigram, …); the context is the last ``n - 1`` tokens.
        smoothing: ``"kneser_ney"`` (interpolated modified Kneser-Ney) or ``"add_k"``.
        k: the pseudo-count of ``add_k`` smoothing (> 0).
        level: ``"char"`` or ``"word"``: how a ``str`` is split into tokens.

    After :meth:`fit`: ``vocab`` (sorted tokens, the unknown token :attr:`unk` last) and
    ``vocab_size``.
    """

    def __init__(self, n: int, *, smoothing: str = "kneser_ney", k: float = 1.0, level: str = "char"):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0:
            raise ValueError(f"k must be a positive number, got {k!r}")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        self.n, self.smoothing, self.k, self.level = n, smoothing, float(k), level
        self.vocab: list[str] = []
        self._known: set = set()
        self._str_keys = True
        # per order m = 1..n: table[m][context] = {next token: count}; for m < n (Kneser-Ney)
        # the counts are continuation counts.  stats[m][context] = (total, gamma numerator)
        self._table: dict[int, dict] = {}
        self._stats: dict[int, dict] = {}
        self._discounts: dict[int, tuple[float, float, float]] = {}

    # ------------------------------------------------------------------ tokens
    def tokens(self, text) -> tuple | str:
        """``text`` as the model's token sequence: a ``str`` of characters or a tuple of words."""
        if isinstance(text, str):
            return text if self.level == "char" else tuple(word_tokens(text))
        if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            return tuple(text)
        raise TypeError(f"text must be a str or a list of str tokens, got {type(text).__name__}")

    @property
    def unk(self) -> str:
        """The token that stands for anything not seen in training."""
        return UNK_CHAR if self.level == "char" else UNK

    def _map_unknown(self, seq):
        if all(t in self._known for t in seq):
            return seq
        if isinstance(seq, str):
            return "".join(t if t in self._known else UNK_CHAR for t in seq)
        return tuple(t if t in self._known else self.unk for t in seq)

    def _seq(self, text):
        """``text`` as tokens in the form the tables are keyed by (``str`` or tuple), unknowns mapped."""
        seq = self.tokens(text)
        if self._str_keys and not isinstance(seq, str):
            seq = "".join(t if len(t) == 1 else UNK_CHAR for t in seq)
        elif not self._str_keys and isinstance(seq, str):
            seq = tuple(seq)
        return self._map_unknown(seq)

    def _require_fit(self):
        if not self.vocab:
            raise RuntimeError("call fit(text) before using the model")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # ------------------------------------------------------------------ fitting
    def fit(self, text) -> "NGramLM":
        """Count the n-grams of ``text`` (a ``str`` or a list of tokens). Returns ``self``."""
        seq = self.tokens(text)
        if len(seq) < self.n:
            raise ValueError(f"text must hold at least n={self.n} tokens, got {len(seq)}")
        self._str_keys = isinstance(seq, str)
        self._known = set(seq) - {self.unk}
        self.vocab = sorted(self._known) + [self.unk]
        self._index = {w: i for i, w in enumerate(self.vocab)}
        raw = {m: Counter(seq[i:i + m] for i in range(len(seq) - m + 1)) for m in range(1, self.n + 1)}
        counts = {self.n: raw[self.n]}
        if self.smoothing == "kneser_ney":
            for m in range(1, self.n):  # continuation count: distinct tokens seen before the m-gram
                counts[m] = Counter(g[1:] for g in raw[m + 1])
        self._table, self._stats = {}, {}
        for m, grams in counts.items():
            table: dict = defaultdict(dict)
            for g, c in grams.items():
                table[g[:-1]][g[-1]] = c
            self._table[m] = dict(table)
            self._discounts[m] = _modified_kn_discounts(grams.values())
            d1, d2, d3 = self._discounts[m]
            stats = {}
            for h, nxt in table.items():
                vals = nxt.values()
                n1 = sum(1 for c in vals if c == 1)
                n2 = sum(1 for c in vals if c == 2)
                stats[h] = (sum(vals), d1 * n1 + d2 * n2 + d3 * (len(nxt) - n1 - n2))
            self._stats[m] = stats
        return self

    # ------------------------------------------------------------------ probabilities
    def _discount(self, m: int, c: int) -> float:
        d1, d2, d3 = self._discounts[m]
        return 0.0 if c == 0 else d1 if c == 1 else d2 if c == 2 else d3

    def _prob(self, w, h) -> float:
        """P(w | h) for a known-token context ``h`` of any length (longer is cut to n - 1)."""
        h = h[max(0, len(h) - (self.n - 1)):] if self.n > 1 else h[:0]
        if self.smoothing == "add_k":
            nxt = self._table[self.n].get(h, {})
            total = self._stats[self.n].get(h, (0, 0))[0]
            return (nxt.get(w, 0) + self.k) / (total + self.k * self.vocab_size)
        p = 1.0 / self.vocab_size  # order 0: uniform over the vocabulary (incl. <unk>)
        for m in range(1, self.n + 1):
            if len(h) < m - 1:
                break
            ctx = h[len(h) - (m - 1):] if m > 1 else h[:0]
            stats = self._stats[m].get(ctx)
            if stats is None:  # context never seen at this order: keep the shorter estimate
                continue
            total, gamma_num = stats
            c = self._table[m][ctx].get(w, 0)
            p = (max(c - self._discount(m, c), 0.0) + gamma_num * p) / total
        return p

    def prob(self, next_token: str, context="") -> float:
        """P(next_token | context): ``context`` is a ``str`` (chars) or a list of tokens.

        Only the last ``n - 1`` tokens of the context matter; unseen tokens count as ``<unk>``.
        """
        self._require_fit()
        if not isinstance(next_token, str):
            raise TypeError(f"next_token must be a str, got {type(next_token).__name__}")
        ctx = self._seq(context)
        w = next_token if next_token in self._known else self.unk
        return self._prob(w, ctx)

    def next_distribution(self, context="") -> "torch.Tensor":  # noqa: F821
        """P(· | context) over ``vocab`` as a float64 tensor ``(V,)`` summing to 1."""
        import torch

        self._require_fit()
        return self._distribution(self._seq(context))

    def _distribution(self, h) -> "torch.Tensor":  # noqa: F821
        """All of ``P(w | h)`` at once: the same recursion as :meth:`_prob`, on a whole vector."""
        import torch

        h = h[max(0, len(h) - (self.n - 1)):] if self.n > 1 else h[:0]
        V = self.vocab_size
        if self.smoothing == "add_k":
            p = torch.full((V,), self.k, dtype=torch.float64)
            for w, c in self._table[self.n].get(h, {}).items():
                p[self._index[w]] += c
            return p / p.sum()
        p = torch.full((V,), 1.0 / V, dtype=torch.float64)
        for m in range(1, self.n + 1):
            if len(h) < m - 1:
                break
            ctx = h[len(h) - (m - 1):] if m > 1 else h[:0]
            stats = self._stats[m].get(ctx)
            if stats is None:
                continue
            total, gamma_num = stats
            nxt = self._table[m][ctx]
            idx = torch.tensor([self._index[w] for w in nxt], dtype=torch.long)
            c = torch.tensor(list(nxt.values()), dtype=torch.float64)
            d = torch.tensor(self._discounts[m], dtype=torch.float64)[(c.clamp(max=3) - 1).long()]
            p = p * (gamma_num / total)
            p.index_add_(0, idx, (c - d).clamp_min(0) / total)
        return p

    def log_prob(self, continuation, context="") -> float:
        """Natural log of P(continuation | context), summed token by token (chain rule)."""
        self._require_fit()
        ctx = self._seq(context)
        cont = self._seq(continuation)
        if len(cont) == 0:
            raise ValueError("continuation must hold at least one token")
        seq = ctx + cont
        start = len(ctx)
        return sum(math.log(self._prob(seq[i], seq[max(0, i - self.n + 1):i]))
                   for i in range(start, len(seq)))

    def cross_entropy(self, text) -> float:
        """Average ``-ln P(token | previous n-1 tokens)`` over ``text``, in nats per token.

        For a character model this is nats/char; ``exp`` of it is the perplexity. The first
        ``n - 1`` tokens use the shorter context they have.
        """
        self._require_fit()
        seq = self._seq(text)
        if len(seq) == 0:
            raise ValueError("text must hold at least one token")
        total = 0.0
        for i in range(len(seq)):
            total -= math.log(self._prob(seq[i], seq[max(0, i - self.n + 1):i]))
        return total / len(seq)

    def sample(self, n_tokens: int, *, context="", temperature: float = 1.0, seed: int = 0,
               generator=None) -> str:
        """Generate ``n_tokens`` tokens after ``context`` and return them as text.

        Characters are joined directly; words are joined with spaces (no space around line
        breaks).  ``generator`` (a ``torch.Generator``) wins over ``seed``.
        """
        import torch

        self._require_fit()
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
            raise ValueError(f"n_tokens must be a positive int, got {n_tokens!r}")
        gen = _generator(seed, generator)
        ctx = list(self._seq(context))
        out: list[str] = []
        choices = self.vocab[:-1]  # never emit <unk>
        for _ in range(n_tokens):
            h = ctx[max(0, len(ctx) - (self.n - 1)):] if self.n > 1 else []
            probs = self._distribution("".join(h) if self._str_keys else tuple(h))[:-1]
            probs = apply_temperature(probs / probs.sum(), temperature)
            tok = choices[int(torch.multinomial(probs, 1, generator=gen))]
            out.append(tok)
            ctx.append(tok)
        if self.level == "char":
            return "".join(out)
        return re.sub(r" ?\n ?", "\n", " ".join(out))


def _modified_kn_discounts(counts) -> tuple[float, float, float]:
    """Chen & Goodman's discounts ``(D1, D2, D3+)`` from the count-of-counts n1..n4."""
    coc = Counter(c for c in counts if c <= 4)
    n1, n2, n3, n4 = (coc.get(i, 0) for i in (1, 2, 3, 4))
    if n1 == 0 or n2 == 0:
        return (0.5, 0.75, 0.75)
    y = n1 / (n1 + 2 * n2)
    d1 = 1 - 2 * y * n2 / n1
    d2 = 2 - 3 * y * n3 / n2 if n3 else 1.0
    d3 = 3 - 4 * y * n4 / n3 if n3 and n4 else d2
    return tuple(min(max(d, 0.05), c) for d, c in ((d1, 1.0), (d2, 2.0), (d3, 3.0)))


# ---------------------------------------------------------------------- Tiny Shakespeare baselines
def _cache_file(kind: str, key: dict):
    from .config import cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    path = cache_dir() / "ngram" / f"{kind}-{digest}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def baseline_table(cfg=None, *, orders: Sequence[int] = (1, 2, 3, 4, 5), level: str = "char",
                   smoothing: str = "kneser_ney", k: float = 1.0, val_chars: int | None = None,
                   refresh: bool = False) -> dict[int, float]:
    """Validation cross-entropy of n-gram models on the shared Tiny Shakespeare 90/10 split.

    Counting uses the whole training split in every profile (it takes seconds, not minutes), so
    the numbers are the same everywhere; they are cached in ``<cache>/ngram/`` after the first call.

    Args:
        cfg: the :class:`~genai_lab.config.LabConfig` (accepted for symmetry; the table does not
            depend on the profile).
        orders: which n to fit.
        level: ``"char"`` (nats/char) or ``"word"`` (nats/word).
        smoothing, k: as in :class:`NGramLM`.
        val_chars: score only the first that many characters of the validation text (to match
            a neural model's quick evaluation); ``None`` scores all of it.
        refresh: recompute instead of reading the cache.
    Returns:
        ``{n: validation nats per token}``.
    """
    from .text import shakespeare_chars

    if not orders or any(isinstance(o, bool) or not isinstance(o, int) or o < 1 for o in orders):
        raise ValueError(f"orders must be a non-empty sequence of positive ints, got {orders!r}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
    if val_chars is not None and (isinstance(val_chars, bool) or not isinstance(val_chars, int) or val_chars < 1):
        raise ValueError(f"val_chars must be a positive int or None, got {val_chars!r}")
    key = {"level": level, "smoothing": smoothing, "k": k, "val_chars": val_chars, "version": 1}
    path = _cache_file(f"shakespeare-{level}", key)
    cached = {} if refresh or not path.is_file() else {int(a): b for a, b in json.loads(path.read_text()).items()}
    missing = [o for o in orders if o not in cached]
    if missing:
        corpus = shakespeare_chars()
        for order in missing:
            lm = NGramLM(order, smoothing=smoothing, k=k, level=level).fit(corpus.train_text)
            cached[order] = lm.cross_entropy(corpus.val_text[:val_chars])
        path.write_text(json.dumps({str(a): b for a, b in sorted(cached.items())}, indent=1))
    return {o: cached[o] for o in orders}

