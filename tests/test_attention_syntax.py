"""Tests for genai_lab.syntax_heads: the head statistic on hand-made maps, the labelled set, MiniLM."""

from __future__ import annotations

import pytest
import torch

from genai_lab import models
from genai_lab import syntax_heads as S


# --------------------------------------------------------------------------- the statistic, by hand
def test_word_attention_sums_to_a_word_averages_from_it_and_drops_specials():
    # tokens: [CLS] the big ##gest [SEP]  → words: the (0), biggest (1)
    att = torch.tensor([[0.2, 0.2, 0.2, 0.2, 0.2],
                        [0.5, 0.1, 0.3, 0.1, 0.0],
                        [0.4, 0.4, 0.1, 0.1, 0.0],
                        [0.0, 0.2, 0.6, 0.0, 0.2],
                        [0.2, 0.2, 0.2, 0.2, 0.2]])
    words = S.word_attention(att[None, None], [None, 0, 1, 1, None])  # (1, 1, 2, 2)
    expected = torch.tensor([[0.1, 0.3 + 0.1],                        # "the": one row, "biggest" summed
                             [(0.4 + 0.2) / 2, ((0.1 + 0.1) + (0.6 + 0.0)) / 2]])  # "biggest": mean of 2 rows
    torch.testing.assert_close(words[0, 0], expected)
    with pytest.raises(ValueError, match="word_ids"):
        S.word_attention(att, [None, 0, 1, None])
    with pytest.raises(ValueError, match="word_ids"):
        S.word_attention(att, [None, 0, 2, 2, None])
    with pytest.raises(TypeError, match="attentions"):
        S.word_attention(att.tolist(), [None, 0, 1, 1, None])


def test_head_accuracy_excludes_the_query_word_and_counts_exactly():
    # one layer, two heads, one sentence of 3 words: the (0) old (1) man (2)
    maps = torch.zeros(1, 2, 3, 3)
    maps[0, 0, 2] = torch.tensor([0.3, 0.6, 0.1])   # head 0: man → old   (wrong)
    maps[0, 0, 0] = torch.tensor([0.1, 0.2, 0.7])   # head 0: the → man   (right)
    maps[0, 1, 2] = torch.tensor([0.4, 0.1, 0.5])   # head 1: man → itself most, else the (right)
    maps[0, 1, 0] = torch.tensor([0.6, 0.1, 0.3])   # head 1: the → itself most, else man (right)
    queries, targets = [(0, 2), (0, 0)], [0, 2]      # noun → determiner, determiner → noun
    acc = S.head_accuracy([maps], queries, targets)
    assert acc.tolist() == [[0.5, 1.0]]
    with pytest.raises(ValueError, match="queries"):
        S.head_accuracy([maps], queries, [0])


def test_offset_baseline_counts_each_offset():
    table = S.offset_accuracy([3, 5, 2], [2, 3, 1], [-2, -1, 1])
    assert table == {-2: 1 / 3, -1: 2 / 3, 1: 0.0}
    with pytest.raises(ValueError, match="queries"):
        S.offset_accuracy([], [], [1])


# --------------------------------------------------------------------------- the labelled set
def test_labelled_set_is_consistent():
    assert len(S.LABELLED) >= 40
    for i, (text, det_pairs, subj_pairs) in enumerate(S.LABELLED):
        words = [w.lower() for w in S.split_words(text)]
        for left, right in det_pairs + subj_pairs:
            assert left.lower() in words and right.lower() in words, (i, text, left, right)
    det = S.labelled_pairs("det-noun")
    subj = S.labelled_pairs("subj-verb")
    assert len(det) == sum(len(entry[1]) for entry in S.LABELLED)
    assert len(subj) == sum(len(entry[2]) for entry in S.LABELLED)
    for pair in det + subj:
        words = S.split_words(S.LABELLED[pair.sentence][0])
        assert 0 <= pair.left < pair.right < len(words)
        assert words[pair.right] not in ",." and words[pair.left] not in ",."
    for pair in det:
        assert S.split_words(S.LABELLED[pair.sentence][0])[pair.left].lower() in S.DETERMINERS
    # enough pairs where "the word just before" is wrong, at more than one distance
    far = [p for p in det if not p.adjacent]
    assert len(far) >= 40 and len({p.distance for p in far}) >= 3
    assert sum(not p.adjacent for p in subj) >= 15
    with pytest.raises(ValueError, match="not found"):
        S.resolve_pairs(["the", "man"], [("a", "man")])
    with pytest.raises(ValueError, match="relation"):
        S.labelled_pairs("verb-object")


def test_the_minilm_tokenizer_splits_the_sentences_into_the_same_words():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models.minilm_path())
    for text, _, _ in S.LABELLED:
        enc = tok(text)
        words = S.split_words(text.lower())
        ids = enc.word_ids()
        assert max(w for w in ids if w is not None) + 1 == len(words), text
        pieces = {}
        for token, w in zip(tok.convert_ids_to_tokens(enc["input_ids"]), ids):
            if w is not None:
                pieces[w] = pieces.get(w, "") + token.removeprefix("##")
        assert [pieces[w] for w in range(len(words))] == words, text


# --------------------------------------------------------------------------- MiniLM (what the page claims)
@pytest.fixture(scope="module")
def minilm_scores():
    tok, model = models.load_minilm("encoder")
    det = S.score_relation(tok, model, "det-noun")
    return det, S.score_relation(tok, model, "subj-verb", reuse=det)


def test_minilm_adjacent_pairs_are_found_by_position_and_by_the_previous_token_head(minilm_scores):
    det, subj = minilm_scores
    for scores, direction in ((det, "noun → determiner"), (subj, "verb → subject")):
        assert scores.best_offset(direction, "adjacent") == (-1, 1.0)
        assert scores.best_head(direction, "adjacent") == (0, 2, 1.0)  # the previous-token head of 03_attention
    assert len(S.LABELLED) == 100 and det.counts["noun → determiner", "non-adjacent"] == 127


def test_minilm_has_a_determiner_to_noun_head_that_beats_position_held_out(minilm_scores):
    det, _ = minilm_scores
    layer, head, acc = det.best_head("determiner → noun", "non-adjacent")
    k, base = det.best_offset("determiner → noun", "non-adjacent")
    assert (layer, head, k) == (3, 1, 2) and acc >= base + 0.15
    held = S.held_out_accuracy(det, "determiner → noun")
    assert held["choices"] == [(3, 1, 2), (3, 1, 2)]  # each half of the sentences picks the same head
    assert held["head_accuracy"] >= held["offset_accuracy"] + 0.15 and held["p_value"] < 0.01
    assert held["head_only"] + held["offset_only"] <= held["pairs"]
    # a fixed offset is right at one distance only; the head stays above 0.7 at every distance
    assert min(r["head_accuracy"] for r in S.accuracy_by_distance(det, "determiner → noun", 3, 1)) > 0.7


def test_minilm_no_head_beats_position_in_the_other_directions(minilm_scores):
    det, subj = minilm_scores
    for scores, direction in ((det, "noun → determiner"), (subj, "verb → subject")):
        assert scores.best_head(direction, "non-adjacent")[2] <= scores.best_offset(direction, "non-adjacent")[1]
        held = S.held_out_accuracy(scores, direction)
        assert held["head_accuracy"] < held["offset_accuracy"]
    assert S.held_out_accuracy(subj, "subject → verb")["p_value"] > 0.05  # a lead too small to tell from chance


def test_sign_test_exact_values():
    assert S.sign_test(0, 0) == 1.0
    assert S.sign_test(3, 0) == pytest.approx(0.25)          # 2 × (1/2)^3
    assert S.sign_test(10, 3) == pytest.approx(2 * (1 + 13 + 78 + 286) / 2 ** 13)
    with pytest.raises(ValueError, match="wins"):
        S.sign_test(-1, 2)


def test_confirmation_on_later_sentences_names_bad_first():
    from genai_lab import syntax_heads

    with pytest.raises(ValueError, match="first"):
        syntax_heads.confirm_on_later_sentences(None, "determiner → noun", first=0)
