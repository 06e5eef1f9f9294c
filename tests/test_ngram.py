"""Tests of genai_lab.ngram: counting, smoothing, sampling and the Tiny Shakespeare baselines."""

import math

import pytest
import torch

from genai_lab.ngram import NGramLM, UNK, UNK_CHAR, apply_temperature, baseline_table, word_tokens

TALE = "むかしむかし、あるところに、おじいさんとおばあさんがいました。おじいさんはやまへしばかりに、おばあさんはかわへせんたくにいきました。"


@pytest.mark.parametrize("smoothing", ["kneser_ney", "add_k"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_distribution_sums_to_one_and_matches_prob(smoothing, n):
    lm = NGramLM(n, smoothing=smoothing, k=0.5).fit("the cat sat on the mat. the cat ate.")
    for context in ["", "the c", "zzz", "at."]:
        dist = lm.next_distribution(context)
        assert dist.shape == (lm.vocab_size,)
        assert float(dist.sum()) == pytest.approx(1.0, abs=1e-12)
        assert (dist > 0).all()
        for i, w in enumerate(lm.vocab):
            assert lm.prob(w, context) == pytest.approx(float(dist[i]), rel=1e-12)


def test_add_k_is_the_counting_formula():
    text = "abababbba"
    lm = NGramLM(2, smoothing="add_k", k=0.5).fit(text)
    # bigrams ab ba ab ba ab bb bb ba: C(a,b) = 3, C(a,a) = 0, C(a·) = 3 (the final "a" starts
    # none); C(b,a) = 3, C(b,b) = 2, C(b·) = 5; V = {a, b, <unk>} = 3
    assert lm.prob("b", "a") == pytest.approx((3 + 0.5) / (3 + 0.5 * 3))
    assert lm.prob("a", "a") == pytest.approx((0 + 0.5) / (3 + 0.5 * 3))
    assert lm.prob("b", "b") == pytest.approx((2 + 0.5) / (5 + 0.5 * 3))
    assert lm.prob("x", "a") == lm.prob(UNK_CHAR, "a")


def test_kneser_ney_prefers_seen_continuations_and_longer_context_helps():
    lm = NGramLM(3).fit(TALE)
    assert lm.prob("あ", "むかし、") > 10 * lm.prob("ウ", "むかし、")
    # the language-model claim of the syllabus: a natural continuation is far more probable
    assert lm.log_prob("あるところに", "むかしむかし") > lm.log_prob("ウェイヨッシャ", "むかしむかし") + 10


def test_word_order_matters_with_word_tokens():
    words = "おじいさん が いました 。 おばあさん が いました 。 おじいさん は やま へ いきました 。".split()
    lm = NGramLM(3, level="word").fit(words)
    good = lm.log_prob(["おじいさん", "が", "いました"], ["。"])
    bad = lm.log_prob(["が", "いました", "おじいさん"], ["。"])
    assert good > bad + 1.0
    assert UNK in lm.vocab


def test_word_tokens_splits_punctuation_and_keeps_newlines():
    assert word_tokens("Nay, I'll go.\nFirst") == ["Nay", ",", "I'll", "go", ".", "\n", "First"]


def test_sample_is_seeded_and_uses_the_vocabulary():
    lm = NGramLM(3).fit(TALE)
    a = lm.sample(40, context="むかし", seed=3)
    assert a == lm.sample(40, context="むかし", seed=3)
    assert len(a) == 40 and set(a) <= set(TALE)
    assert a != lm.sample(40, context="むかし", seed=4)
    # a very low temperature is (almost) greedy: the most probable continuation of "むかしむか" is "し"
    assert lm.sample(1, context="むかしむか", temperature=0.01, seed=0) == "し"


def test_word_sample_joins_words():
    lm = NGramLM(2, level="word").fit("to be or not to be , that is the question .\n" * 3)
    text = lm.sample(12, context="to", seed=0)
    assert all(w in lm.vocab for w in text.replace("\n", " ").split())


def test_apply_temperature_is_softmax_of_log_probs():
    p = torch.tensor([0.5, 0.3, 0.2, 0.0])
    for t in (0.5, 1.0, 2.0):
        expected = torch.softmax(torch.log(p[:3]) / t, -1)
        out = apply_temperature(p, t)
        assert torch.allclose(out[:3], expected, atol=1e-6) and out[3] == 0
    assert torch.allclose(apply_temperature(p, 1.0), p)


def test_shakespeare_bigram_and_five_gram_calibration():
    from genai_lab.text import shakespeare_chars

    corpus = shakespeare_chars()
    val = corpus.val_text[:30000]
    bigram = NGramLM(2).fit(corpus.train_text).cross_entropy(val)
    five = NGramLM(5).fit(corpus.train_text).cross_entropy(val)
    five_add_k = NGramLM(5, smoothing="add_k", k=1.0).fit(corpus.train_text).cross_entropy(val)
    assert 2.35 < bigram < 2.60  # the calibration: about 2.48 nats/char
    assert five < bigram - 0.6  # more context, much better
    assert five < five_add_k - 0.2  # Kneser-Ney smoothing beats add-one at the same order


def test_baseline_table_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path))
    table = baseline_table(orders=(1, 2))
    assert list(table) == [1, 2] and table[2] < table[1]
    assert list((tmp_path / "ngram").glob("*.json"))
    assert baseline_table(orders=(2,)) == {2: table[2]}


@pytest.mark.parametrize("kwargs, word", [
    ({"n": 0}, "n"), ({"n": 2.5}, "n"), ({"n": 2, "smoothing": "magic"}, "smoothing"),
    ({"n": 2, "k": 0}, "k"), ({"n": 2, "level": "byte"}, "level")])
def test_bad_constructor_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        NGramLM(**kwargs)


def test_bad_use():
    with pytest.raises(RuntimeError, match="fit"):
        NGramLM(2).prob("a", "b")
    with pytest.raises(ValueError, match="text"):
        NGramLM(5).fit("abc")
    with pytest.raises(TypeError, match="text"):
        NGramLM(2).fit(123)
    lm = NGramLM(2).fit("abcabc")
    with pytest.raises(ValueError, match="n_tokens"):
        lm.sample(0)
    with pytest.raises(ValueError, match="temperature"):
        lm.sample(3, temperature=0)
    with pytest.raises(TypeError, match="next_token"):
        lm.prob(1, "a")
    with pytest.raises(TypeError, match="seed"):
        lm.sample(3, seed="x")
    with pytest.raises(ValueError, match="orders"):
        baseline_table(orders=(0,))
    with pytest.raises(TypeError, match="probs"):
        apply_temperature([0.5, 0.5], 1.0)
    assert math.isfinite(lm.cross_entropy("zzz"))
