"""Tests of genai_lab.elmo: the controlled sense sentences, the leave-one-out ridge probe, its
permutation null, and the sense probe on the chapter's char LSTMs."""

import pytest
import torch

import genai_lab as gl
from genai_lab import elmo, rnn
from genai_lab.text import CharTokenizer, shakespeare_chars


def test_sense_sentences_are_controlled():
    tok = shakespeare_chars().tokenizer
    elmo.check_sense_sentences(elmo.SENSE_SENTENCES, tok, min_per_sense=12)
    assert len(elmo.SENSE_SENTENCES) >= 6
    for word, senses in elmo.SENSE_SENTENCES.items():
        first, second = senses.values()
        # position carries no sense: the same word indices, sentence lengths within a few characters
        assert sorted(elmo.word_index(s, word) for s in first) == sorted(elmo.word_index(s, word) for s in second)
        mean_len = [sum(map(len, g)) / len(g) for g in (first, second)]
        assert abs(mean_len[0] - mean_len[1]) < 5, (word, mean_len)


def test_check_sense_sentences_names_each_defect():
    good = {"bear": {"a": ["I bear it.", "We bear all."], "b": ["A bear ran.", "The bear ate."]}}
    elmo.check_sense_sentences(good)
    with pytest.raises(ValueError, match="space on each side"):
        elmo.check_sense_sentences({"bear": {"a": ["I bear, it.", "We bear all."], "b": good["bear"]["b"]}})
    with pytest.raises(ValueError, match="exactly once"):
        elmo.check_sense_sentences({"bear": {"a": ["I bear a bear now.", "We bear all."], "b": good["bear"]["b"]}})
    with pytest.raises(ValueError, match="same word index"):
        elmo.check_sense_sentences({"bear": {"a": ["I bear it.", "We bear all."], "b": ["The big bear ran.", "The bear ate."]}})
    with pytest.raises(ValueError, match="exactly two senses"):
        elmo.check_sense_sentences({"bear": {"a": ["I bear it."]}})
    with pytest.raises(ValueError, match="vocabulary"):
        elmo.check_sense_sentences(good, CharTokenizer.from_text("abc "))
    with pytest.raises(TypeError, match="sentences"):
        elmo.check_sense_sentences([])


def test_find_word_matches_whole_words_only():
    assert elmo.find_word("The beard of a bear.", "bear") == (15, 19)
    assert elmo.find_word("I forbear; a bear, a bear", "bear", 1) == (21, 25)
    with pytest.raises(ValueError, match="occurs 0 times"):
        elmo.find_word("He will forbear.", "bear")
    with pytest.raises(ValueError, match="occurrence"):
        elmo.find_word("a bear", "bear", -1)
    assert elmo.word_index("Pray you, bear with me.", "bear") == 2
    pos = elmo.position_features("Pray you, bear with me.", "bear")
    assert pos.tolist()[:4] == [10.0, 9.0, 2.0, 5.0] and pos[4] == pytest.approx(10 / 23)


def test_ridge_loo_scores_equal_refitting_without_each_row():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.randn(12, 3, generator=g, dtype=torch.float64)
    loo = elmo.ridge_loo_scores(x, y, alpha=0.3)
    lam = 0.3 * float((x * x).sum(1).mean())
    for i in range(12):
        keep = torch.arange(12) != i
        a = x[keep]
        w = torch.linalg.solve(a.T @ a + lam * torch.eye(5, dtype=torch.float64), a.T @ y[keep])
        torch.testing.assert_close(loo[i], x[i] @ w)
    assert elmo.ridge_loo_scores(x, y[:, 0]).shape == (12,)
    with pytest.raises(ValueError, match="targets"):
        elmo.ridge_loo_scores(x, y[:5])
    with pytest.raises(ValueError, match="alpha"):
        elmo.ridge_loo_scores(x, y, alpha=0)
    with pytest.raises(TypeError, match="features"):
        elmo.ridge_loo_scores(x.tolist(), y)


def test_loo_accuracy_separable_constant_and_shuffled():
    g = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 1] * 12)
    signal = torch.randn(24, 30, generator=g) + 3.0 * (labels[:, None] * 2 - 1) * torch.eye(30)[0]
    assert elmo.loo_accuracy(signal, labels) == 1.0
    # a static vector (the same row everywhere) gives no score at all: exactly chance
    assert elmo.loo_accuracy(torch.ones(24, 8), labels) == 0.5
    noise = torch.randn(24, 30, generator=g)
    null = elmo.permutation_null(noise, labels, n_perm=300, seed=0)
    assert null.shape == (300,) and torch.equal(null, elmo.permutation_null(noise, labels, n_perm=300, seed=0))
    assert 0.35 < float(null.mean()) < 0.6 and 0.55 < float(torch.quantile(null, 0.95)) < 0.8
    null_signal = elmo.permutation_null(signal, labels, n_perm=300, seed=0)
    assert float(torch.quantile(null_signal, 0.95)) < 0.8  # shuffled labels: the signal is gone
    with pytest.raises(ValueError, match="labels"):
        elmo.loo_accuracy(signal, torch.tensor([0, 2] * 12))
    with pytest.raises(ValueError, match="n_perm"):
        elmo.permutation_null(signal, labels, n_perm=0)


def test_untrained_like_is_a_seeded_fresh_copy():
    torch.manual_seed(5)
    lm = rnn.CharLSTM(11, hidden=16, embed=8)
    a, b = elmo.untrained_like(lm, seed=3), elmo.untrained_like(lm, seed=3)
    assert a.lstm.hidden_size == 16 and a.embed.embedding_dim == 8 and a.vocab_size == 11
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.embed.weight, lm.embed.weight)
    with pytest.raises(TypeError, match="lm"):
        elmo.untrained_like(torch.nn.Linear(2, 2))


def test_sense_probe_contract_on_untrained_models():
    tok = shakespeare_chars().tokenizer
    torch.manual_seed(0)
    fwd, bwd = rnn.CharLSTM(tok.vocab_size, hidden=16, embed=8), rnn.CharLSTM(tok.vocab_size, hidden=12, embed=8)
    res = elmo.sense_probe(fwd, bwd, tok, n_perm=50)
    assert res.n_sentences == sum(len(g) for s in elmo.SENSE_SENTENCES.values() for g in s.values())
    assert res.vector_size == 28 and res.forward_size == 16 and res.words == list(elmo.SENSE_SENTENCES)
    for name in elmo.FEATURE_SETS:
        assert set(res.accuracy[name]) == set(res.words) | {"all"}
        assert all(0.0 <= v <= 1.0 for v in res.accuracy[name].values())
    assert all(v == 0.5 for v in res.accuracy["static vector"].values())  # chance by construction
    ax = elmo.plot_sense_probe(res)
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    import matplotlib.pyplot as plt
    plt.close("all")
    with pytest.raises(TypeError, match="result"):
        elmo.plot_sense_probe({})


@pytest.mark.slow
def test_trained_bilstm_tells_the_sense_beyond_every_control():
    """The chapter's smoke char LSTMs (both directions): the biLSTM vector's held-out sense accuracy
    clears the shuffled-label 95th percentile and the position-only probe by 0.1 or more."""
    cfg = gl.setup(profile="smoke", verbose=False)
    fwd, _ = rnn.train_char_lm(cfg, progress=False)
    bwd, _ = rnn.train_char_lm(cfg, rnn.char_lm_config(cfg, reverse=True), progress=False)
    res = elmo.sense_probe(fwd, bwd, shakespeare_chars().tokenizer, n_perm=300)
    bi = res.accuracy["biLSTM vector"]["all"]
    assert bi > res.null95["biLSTM vector"]["all"] + 0.1
    assert bi > res.accuracy["position only"]["all"] + 0.1
    assert res.accuracy["static vector"]["all"] == 0.5
