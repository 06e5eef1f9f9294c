"""Tests for genai_lab.bpe: the from-scratch BPE equals the tokenizers library's, merge for merge."""

from __future__ import annotations

import pytest

from genai_lab import bpe
from genai_lab.data import load_tiny_shakespeare, train_val_split

#: Sennrich et al. (2016)'s toy corpus
TOY = {"low": 5, "lower": 2, "newest": 6, "widest": 3}


@pytest.fixture(scope="module")
def shakespeare():
    train, val = train_val_split(load_tiny_shakespeare())
    return train[:60_000], [line for line in val.splitlines() if line.strip()][:300]


def test_pre_tokenize_and_merge_pair():
    assert bpe.pre_tokenize("I'll go,  now!\n") == ["I", "'", "ll", "go", ",", "now", "!"]
    assert bpe.merge_pair(["a", "a", "a", "b"], ("a", "a")) == ["aa", "a", "b"]
    assert bpe.merge_pair(["a", "b", "a", "b"], ("a", "b")) == ["ab", "ab"]
    assert bpe.merge_pair(["x"], ("a", "b")) == ["x"]


def test_train_bpe_on_the_toy_corpus_by_hand():
    # (e, s) and (s, t) both occur 9 times: the pair of older symbols, (e, s), wins; then (es, t)
    # (9); (l, o) and (o, w) 7 times: (l, o); then (lo, w); then the 6s of "newest": (e, w) is
    # the pair of the oldest symbols (e is older than n).
    assert bpe.train_bpe(TOY, 5) == [("e", "s"), ("es", "t"), ("l", "o"), ("lo", "w"), ("e", "w")]
    words = [w for w, n in TOY.items() for _ in range(n)]
    assert bpe.train_bpe(words, 5) == bpe.train_bpe(TOY, 5) == bpe.train_bpe(" ".join(words), 5)
    assert bpe.encode("lowest newer", bpe.train_bpe(TOY, 5)) == ["low", "est", "n", "ew", "e", "r"]


def test_training_stops_when_nothing_is_left_to_merge():
    merges = bpe.train_bpe("abab ab", 100)
    assert merges == [("a", "b"), ("ab", "ab")]
    assert bpe.train_bpe("abc", 0) == []
    assert bpe.encode("abab ab", merges) == ["abab", "ab"]


def test_train_bpe_equals_the_tokenizers_library(shakespeare):
    train, lines = shakespeare
    ours = bpe.train_bpe(train, 300)
    theirs, tokenizer = bpe.train_bpe_tokenizers(train, 300)
    assert len(ours) == 300
    assert ours == theirs
    for line in lines:
        assert bpe.encode(line, ours) == tokenizer.encode(line).tokens, line


def test_toy_corpus_equals_the_tokenizers_library():
    text = " ".join(w for w, n in TOY.items() for _ in range(n))
    assert bpe.train_bpe(text, 12) == bpe.train_bpe_tokenizers(text, 12)[0]


def test_fewer_merges_are_a_prefix_and_encoding_keeps_every_character(shakespeare):
    train, lines = shakespeare
    merges = bpe.train_bpe(train, 200)
    assert bpe.train_bpe(train, 50) == merges[:50]
    for line in lines[:50]:
        tokens = bpe.encode(line, merges)
        assert "".join(tokens) == "".join(line.split())  # only whitespace is dropped
        assert bpe.encode(line, []) == list("".join(bpe.pre_tokenize(line)))
    assert bpe.encode("Zq§", merges)[-1] == "§"  # an unseen character stays a token of its own


def test_more_merges_give_shorter_sequences(shakespeare):
    train, lines = shakespeare
    merges = bpe.train_bpe(train, 300)
    rows = bpe.sequence_lengths(lines, merges, [0, 30, 100, 300])
    tokens = [r["tokens_per_line"] for r in rows]
    assert all(a > b for a, b in zip(tokens, tokens[1:]))
    non_space = sum(len("".join(line.split())) for line in lines) / len(lines)
    assert tokens[0] == pytest.approx(non_space)
    assert rows[-1]["chars_per_token"] > 2.0  # 300 merges already more than halve a line
    assert bpe.tokens_per_line(lines[:5], merges) == [len(bpe.encode(line, merges)) for line in lines[:5]]


def test_plot_sequence_lengths_has_title_and_labels(shakespeare):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genai_lab.audit import figure_problems

    train, lines = shakespeare
    merges = bpe.train_bpe(train, 50)
    fig = bpe.plot_sequence_lengths(bpe.sequence_lengths(lines, merges, [0, 10, 50]))
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert figure_problems(fig) == []
    plt.close(fig)


@pytest.mark.parametrize("call, error, match", [
    (lambda: bpe.train_bpe(42, 3), TypeError, "words_or_text"),
    (lambda: bpe.train_bpe("", 3), ValueError, "words_or_text"),
    (lambda: bpe.train_bpe(["ok", ""], 3), TypeError, "words_or_text"),
    (lambda: bpe.train_bpe(["ok", None], 3), TypeError, "words_or_text"),
    (lambda: bpe.train_bpe({"ok": 0}, 3), ValueError, "words_or_text"),
    (lambda: bpe.train_bpe("a b", -1), ValueError, "num_merges"),
    (lambda: bpe.train_bpe("a b", 2.0), TypeError, "num_merges"),
    (lambda: bpe.train_bpe("a b", True), TypeError, "num_merges"),
    (lambda: bpe.encode(b"bytes", []), TypeError, "text"),
    (lambda: bpe.encode("ab", "ab"), TypeError, "merges"),
    (lambda: bpe.encode("ab", [("a",)]), ValueError, r"merges\[0\]"),
    (lambda: bpe.encode("ab", [("a", "")]), ValueError, r"merges\[0\]"),
    (lambda: bpe.pre_tokenize(None), TypeError, "text"),
    (lambda: bpe.tokens_per_line("one line", []), TypeError, "lines"),
    (lambda: bpe.sequence_lengths([], [], [0]), ValueError, "lines"),
    (lambda: bpe.sequence_lengths(["a"], [("a", "b")], [2]), ValueError, "merge_counts"),
    (lambda: bpe.sequence_lengths(["a"], [], []), ValueError, "merge_counts"),
    (lambda: bpe.train_bpe_tokenizers("  ", 3), ValueError, "text"),
    (lambda: bpe.train_bpe_tokenizers("a b", -2), ValueError, "num_merges"),
])
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
