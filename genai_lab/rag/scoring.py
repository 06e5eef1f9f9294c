"""Scoring answers: exact match and token F1 on the extracted answer, and checked citations.

A reply such as ``"442 [1]"`` is scored in three steps:

1. :func:`extract_answer` takes the short answer it states: the first line, cut at the first
   citation marker ``[n]``, without a leading ``Answer:`` (``"442"``). When the gold answer is a
   number, the extracted answer is the *first number* of that line that the question does not
   already contain, as evaluations of free-form replies to numeric questions do
   (``"The dataset has 442 patients."`` → ``"442"``);
2. :func:`normalize_answer` applies the SQuAD normalisation (Rajpurkar et al., 2016): lower case,
   no punctuation, no articles ``a``/``an``/``the``, single spaces (``"The 1,603."`` → ``"1603"``);
3. :func:`exact_match` compares the two normalised strings for equality; :func:`token_f1` gives
   partial credit for overlapping words (the harmonic mean of word precision and recall).

Equality, not containment: ``"16030"`` and ``"in 1604 and 1603"`` are *not* the answer ``"1603"``
(the first number stated is 16030, or 1604), whereas a substring test (:func:`substring_match`, the
old scorer, kept for comparison) accepts both.

Citations: the grounded prompt numbers its passages ``[1]``, ``[2]``…; :func:`check_citation`
reads the markers of a reply and checks that they name a passage that was given and that the cited
passage really contains the answer (the passage's words include the answer's words as one run):
the expected answer when it is known (evaluation), else the reply's own extracted answer.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
_CITATION = re.compile(r"\[(\d+)\]")
_LEAD = re.compile(r"^\s*(?:(?:the\s+)?(?:short\s+)?answer\b\s*(?:is\b\s*)?[:：]?|a\s*:)\s*", re.IGNORECASE)
#: A number as written in a reply: digits with optional thousands separators and decimals, or a word.
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                 "fifteen sixteen seventeen eighteen nineteen twenty").split()
_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?!\w)|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b",
                     re.IGNORECASE)


def _golds(gold) -> list[str]:
    """``gold`` as a non-empty list of strings (one answer or a list of accepted answers)."""
    golds = [gold] if isinstance(gold, str) else gold
    if isinstance(golds, (list, tuple)) and golds and all(isinstance(g, str) and g.strip() for g in golds):
        return list(golds)
    raise TypeError(f"gold must be a non-empty str or a non-empty list of them, got {gold!r}")


def _check_str(value, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, remove punctuation, articles and extra whitespace.

    >>> normalize_answer("The  R.A. Fisher!")
    'ra fisher'
    """
    _check_str(text, "text")
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def is_number(text: str) -> bool:
    """True when ``text`` is one number: ``"1,797"``, ``"0.5"``, ``"seven"``."""
    _check_str(text, "text")
    return bool(_NUMBER.fullmatch(text.strip()))


def _number_key(text: str) -> str:
    return text.lower().replace(",", "")


def extract_answer(reply: str, gold: str | Sequence[str] | None = None, question: str | None = None) -> str:
    """The short answer a reply states: its first non-empty line, cut at the first ``[n]`` marker.

    A leading ``Answer:`` / ``The answer is`` is dropped: ``"442 [1]. The diabetes data…"`` →
    ``"442"``. When ``gold`` is given and one of its forms is a number (:func:`is_number`), the
    answer is the first number of that line that ``question`` does not already contain (``""`` if
    there is none): ``"The dataset has 442 patients aged 19-79."`` → ``"442"``;
    ``"in 1604 and 1603"`` → ``"1604"``; for "How many posts do the 20 newsgroups have?",
    ``"The 20 newsgroups have 18846 posts."`` → ``"18846"``.
    """
    _check_str(reply, "reply")
    if question is not None:
        _check_str(question, "question")
    line = next((ln for ln in reply.strip().splitlines() if ln.strip()), "")
    marker = _CITATION.search(line)
    if marker:
        line = line[:marker.start()]
    line = _LEAD.sub("", line).strip().rstrip(".,;:").strip()
    if gold is not None and any(is_number(g) for g in _golds(gold)):
        asked = {_number_key(m.group(0)) for m in _NUMBER.finditer(question or "")}
        numbers = [m.group(0) for m in _NUMBER.finditer(line) if _number_key(m.group(0)) not in asked]
        return numbers[0] if numbers else ""
    return line


def exact_match(prediction: str, gold: str | Sequence[str]) -> bool:
    """True when the normalised ``prediction`` equals the normalised gold answer (or one of them)."""
    _check_str(prediction, "prediction")
    return any(normalize_answer(prediction) == normalize_answer(g) for g in _golds(gold))


def token_f1(prediction: str, gold: str | Sequence[str]) -> float:
    """SQuAD token F1 between ``prediction`` and the gold answer (the best over a list of them)."""
    _check_str(prediction, "prediction")
    best = 0.0
    pred = normalize_answer(prediction).split()
    for g in _golds(gold):
        ref = normalize_answer(g).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if not pred or not ref:
            best = max(best, float(pred == ref))
        elif common:
            precision, recall = common / len(pred), common / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def substring_match(text: str, gold: str | Sequence[str]) -> bool:
    """The lenient scorer this module replaces: the gold string occurs anywhere in ``text``."""
    _check_str(text, "text")
    return any(g.lower() in text.lower() for g in _golds(gold))


def contains_answer(passage: str, answer: str | Sequence[str]) -> bool:
    """True when the words of ``answer`` occur as one run among the words of ``passage``.

    Both are normalised first, and whole words are compared: ``"1603"`` is in ``"in 1603 ."`` but
    not in ``"16030"``. An answer that normalises to nothing is never contained.
    """
    _check_str(passage, "passage")
    words = normalize_answer(passage).split()
    for a in _golds(answer):
        target = normalize_answer(a).split()
        if target and any(words[i:i + len(target)] == target for i in range(len(words) - len(target) + 1)):
            return True
    return False


def cited_passages(reply: str) -> list[int]:
    """The passage numbers a reply cites, in order, without repeats: ``"x [2] y [1][2]"`` → ``[2, 1]``."""
    _check_str(reply, "reply")
    return list(dict.fromkeys(int(n) for n in _CITATION.findall(reply)))


@dataclass(frozen=True)
class CitationCheck:
    """What :func:`check_citation` found.

    Attributes:
        cited: passage numbers the reply cites (1-based).
        in_range: every cited number names a passage that was given.
        supported: a cited passage contains the reply's extracted answer.
        answer: the answer that was looked for (the first of them when several are accepted).
    """

    cited: tuple[int, ...]
    in_range: bool
    supported: bool
    answer: str

    @property
    def valid(self) -> bool:
        """The reply cites at least one passage, only passages it was given, and one holds its answer."""
        return bool(self.cited) and self.in_range and self.supported


def check_citation(reply: str, passages: Sequence[str],
                   answer: str | Sequence[str] | None = None) -> CitationCheck:
    """Check the citations of ``reply`` against the numbered ``passages`` it was given.

    Args:
        reply: the model's answer, e.g. ``"442 [1]"``.
        passages: the texts of the passages ``[1]``, ``[2]``… in prompt order.
        answer: what a cited passage must contain: the expected answer (or its accepted forms)
            when it is known; ``None`` uses the reply's own :func:`extract_answer`.
    Returns:
        a :class:`CitationCheck`; ``.valid`` is True when a cited passage contains the answer.
    """
    _check_str(reply, "reply")
    if isinstance(passages, str) or not isinstance(passages, Sequence) \
            or not all(isinstance(p, str) for p in passages):
        raise TypeError("passages must be a list of str (the texts of [1], [2], …)")
    cited = tuple(cited_passages(reply))
    in_range = all(1 <= n <= len(passages) for n in cited)
    wanted = [extract_answer(reply)] if answer is None else _golds(answer)
    wanted = [w for w in wanted if normalize_answer(w)]
    supported = bool(wanted) and any(contains_answer(passages[n - 1], wanted)
                                     for n in cited if 1 <= n <= len(passages))
    return CitationCheck(cited, in_range, supported, wanted[0] if wanted else "")
