"""Sampling filters match transformers' logits processors on the same logits."""

import pytest
import torch

from genai_lab import sampling as S


@pytest.fixture
def scores():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 50, generator=g) * 3


@pytest.fixture
def input_ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 50, (4, 12), generator=g)


def _hf(procs, ids, scores):
    return procs(ids, scores.clone())


@pytest.mark.parametrize("k", [1, 5, 49, 50, 80])
def test_top_k_matches_transformers(scores, input_ids, k):
    from transformers.generation.logits_process import TopKLogitsWarper

    ours = S.top_k_filter(scores, k)
    ref = TopKLogitsWarper(k)(input_ids, scores.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    assert torch.allclose(ours[~torch.isinf(ours)], ref[~torch.isinf(ref)])
    assert (~torch.isinf(ours)).sum(-1).tolist() == [min(k, 50)] * 4


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999, 1.0])
def test_top_p_matches_transformers(scores, input_ids, p):
    from transformers.generation.logits_process import TopPLogitsWarper

    ours = S.top_p_filter(scores, p)
    ref = TopPLogitsWarper(p)(input_ids, scores.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    kept_mass = torch.softmax(scores, -1).masked_fill(torch.isinf(ours), 0).sum(-1)
    assert bool((kept_mass >= p - 1e-6).all())  # the nucleus holds at least p of the probability


@pytest.mark.parametrize("penalty", [0.7, 1.3, 2.0])
def test_repetition_penalty_matches_transformers(scores, input_ids, penalty):
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    ours = S.repetition_penalty_filter(scores, input_ids, penalty)
    ref = RepetitionPenaltyLogitsProcessor(penalty)(input_ids, scores.clone())
    assert torch.allclose(ours, ref)
    unseen = torch.ones_like(scores, dtype=torch.bool).scatter(1, input_ids, False)
    assert torch.equal(ours[unseen], scores[unseen])


def test_temperature_and_chain_match_transformers(scores, input_ids):
    from transformers.generation.logits_process import TemperatureLogitsWarper

    assert torch.allclose(S.apply_temperature(scores, 0.7), TemperatureLogitsWarper(0.7)(input_ids, scores.clone()))
    settings = dict(temperature=0.8, top_k=20, top_p=0.9, repetition_penalty=1.2)
    ours = S.process_logits(scores, input_ids, **settings)
    ref = S.hf_logits_processors(**settings)(input_ids, scores.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    assert torch.allclose(ours[~torch.isinf(ours)], ref[~torch.isinf(ref)])


def test_temperature_changes_entropy(scores):
    def entropy(s):
        p = torch.softmax(s, -1)
        return float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean())

    assert entropy(S.apply_temperature(scores, 0.5)) < entropy(scores) < entropy(S.apply_temperature(scores, 2.0))


def test_sampling_follows_the_distribution():
    scores = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([S.sample_next_token(scores, generator=g) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)
    assert S.greedy_choice(scores).tolist() == [0]


def test_distinct_n():
    assert S.distinct_n(["abcd"], 2) == 1.0
    assert S.distinct_n(["aaaa"], 1) == 0.25
    assert S.distinct_n([["the", "cat", "the", "cat"]], 2) == pytest.approx(2 / 3)


def test_probability_table():
    rows = S.probability_table(torch.tensor([0.0, 2.0, 1.0]), ["a", "b", "c"], k=2)
    assert [r[0] for r in rows] == ["b", "c"]
    assert rows[0][1] == pytest.approx(torch.softmax(torch.tensor([0.0, 2.0, 1.0]), 0)[1].item())


def test_bad_inputs(scores, input_ids):
    with pytest.raises(ValueError, match="k"):
        S.top_k_filter(scores, 0)
    with pytest.raises(ValueError, match="p"):
        S.top_p_filter(scores, 1.5)
    with pytest.raises(ValueError, match="temperature"):
        S.apply_temperature(scores, 0.0)
    with pytest.raises(ValueError, match="penalty"):
        S.repetition_penalty_filter(scores, input_ids, -1.0)
    with pytest.raises(TypeError, match="input_ids"):
        S.repetition_penalty_filter(scores, input_ids.float(), 1.2)
    with pytest.raises(TypeError, match="scores"):
        S.top_k_filter(torch.arange(5), 2)
    with pytest.raises(ValueError, match="scores"):
        S.top_k_filter(torch.randn(5), 2)
    with pytest.raises(ValueError, match="input_ids"):
        S.process_logits(scores, None, repetition_penalty=1.5)
    with pytest.raises(ValueError, match="n"):
        S.distinct_n(["abc"], 0)
    with pytest.raises(TypeError, match="texts"):
        S.distinct_n("abc", 1)


@pytest.mark.parametrize("kwargs, name", [
    ({"top_p": float("nan")}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"top_p": 0.0}, "top_p"),
    ({"top_p": -0.2}, "top_p"), ({"temperature": float("inf")}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"temperature": -1.0}, "temperature"),
    ({"top_k": 0}, "top_k"), ({"repetition_penalty": float("nan")}, "repetition_penalty"),
    ({"repetition_penalty": float("inf")}, "repetition_penalty")])
def test_process_logits_refuses_numbers_that_are_not_settings(scores, input_ids, kwargs, name):
    with pytest.raises(ValueError, match=name):
        S.process_logits(scores, input_ids, **kwargs)


@pytest.mark.parametrize("kwargs, name", [({"top_k": 2.0}, "top_k"), ({"top_p": "0.9"}, "top_p"),
                                          ({"temperature": True}, "temperature")])
def test_process_logits_refuses_wrong_types(scores, input_ids, kwargs, name):
    with pytest.raises(TypeError, match=name):
        S.process_logits(scores, input_ids, **kwargs)


def test_top_p_one_and_none_leave_scores_alone(scores, input_ids):
    assert torch.equal(S.process_logits(scores, input_ids, top_p=1.0), scores)
    assert torch.equal(S.process_logits(scores, input_ids, top_p=None), scores)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_filters_refuse_non_finite_temperature_and_penalty(scores, input_ids, bad):
    with pytest.raises(ValueError, match="temperature"):
        S.apply_temperature(scores, bad)
    with pytest.raises(ValueError, match="penalty"):
        S.repetition_penalty_filter(scores, input_ids, bad)


# --------------------------------------------------------------------------- judging samples


def _longest_repeat_by_brute_force(text):
    best = 0
    for i in range(len(text)):
        for j in range(i + 1, len(text)):
            k = 0
            while j + k < len(text) and text[i + k] == text[j + k]:
                k += 1
            best = max(best, k)
    return best


def test_repeated_ngram_fraction_counts_repeats_within_one_text():
    assert S.repeated_ngram_fraction("abcabc", 3) == pytest.approx(0.25)  # abc, bca, cab, abc
    assert S.repeated_ngram_fraction("aaaa", 2) == pytest.approx(2 / 3)
    assert S.repeated_ngram_fraction("abcd", 2) == 0.0
    assert S.repeated_ngram_fraction([1, 2, 1, 2, 1], 2) == pytest.approx(0.5)  # 12 21 12 21
    assert S.repeated_ngram_fraction(torch.tensor([5, 5, 5]), 1) == pytest.approx(2 / 3)
    loop = "the king " * 20  # a text stuck in a loop repeats almost every 4-gram
    assert S.repeated_ngram_fraction(loop, 4) > 0.9


def test_longest_repeated_span_small_cases_and_brute_force():
    assert S.longest_repeated_span("abcabc") == 3
    assert S.longest_repeated_span("aaaa") == 3  # "aaa" at 0 and at 1
    assert S.longest_repeated_span("abcd") == 0
    assert S.longest_repeated_span("") == 0
    assert S.longest_repeated_span("xy" + "the sea" * 4) == 21  # period 7 over 28 items
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        text = "".join("abc"[i] for i in torch.randint(0, 3, (25,), generator=g).tolist())
        assert S.longest_repeated_span(text) == _longest_repeat_by_brute_force(text), text


def test_text_diversity_exact_small_example():
    row = S.text_diversity(["abab", "abcd"], repeat_n=2)
    assert row["distinct-1"] == pytest.approx(4 / 8)  # a b a b a b c d
    assert row["distinct-2"] == pytest.approx(4 / 6)  # ab ba ab | ab bc cd
    assert row["distinct-3"] == pytest.approx(1.0)  # aba bab | abc bcd
    assert row["repetition"] == pytest.approx((1 / 3 + 0) / 2)
    assert row["longest_repeat"] == pytest.approx((2 + 0) / 2)
    assert set(S.text_diversity([[1, 2, 3, 4, 5]], ns=(2,))) == {"distinct-2", "repetition", "longest_repeat"}


def test_judging_functions_refuse_bad_input():
    with pytest.raises(ValueError, match="text"):
        S.repeated_ngram_fraction("ab", 3)
    with pytest.raises(ValueError, match="n"):
        S.repeated_ngram_fraction("abc", 0)
    with pytest.raises(TypeError, match="text"):
        S.repeated_ngram_fraction(12345, 2)
    with pytest.raises(TypeError, match="text"):
        S.longest_repeated_span([[1, 2], [3]])
    with pytest.raises(TypeError, match="texts"):
        S.text_diversity("abcd")
    with pytest.raises(TypeError, match="texts"):
        S.text_diversity([])
    with pytest.raises(ValueError, match="ns"):
        S.text_diversity(["abcd"], ns=())
    with pytest.raises(TypeError, match="each text"):
        S.text_diversity(["abcd", 7])
