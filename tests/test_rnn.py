"""Tests of genai_lab.rnn: the LSTM cell, the memory task, the char LSTM, ELMo vectors, timing."""

import math

import pytest
import torch

import genai_lab as gl
from genai_lab import rnn
from genai_lab.text import CharTokenizer


@pytest.fixture(scope="module")
def cfg():
    return gl.setup(profile="smoke", verbose=False)


def test_lstm_cell_matches_torch(cfg):
    g = torch.Generator().manual_seed(0)
    ref = torch.nn.LSTMCell(5, 7)
    x, h, c = (torch.randn(3, d, generator=g) for d in (5, 7, 7))
    h_ref, c_ref = ref(x, (h, c))
    h_out, c_out = rnn.lstm_cell(x, h, c, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    assert torch.allclose(h_out, h_ref, atol=1e-6) and torch.allclose(c_out, c_ref, atol=1e-6)
    mine = rnn.ScratchLSTMCell(5, 7)
    mine.load_state_dict(ref.state_dict())
    h2, c2 = mine(x)
    h2_ref, c2_ref = ref(x)
    assert torch.allclose(h2, h2_ref, atol=1e-6) and torch.allclose(c2, c2_ref, atol=1e-6)
    # gradients flow the same way too
    h_out.sum().backward()
    assert ref.weight_hh.grad is not None


def test_lstm_cell_rejects_bad_shapes():
    w_ih, w_hh = torch.zeros(28, 5), torch.zeros(28, 7)
    with pytest.raises(ValueError, match="weight_ih"):
        rnn.lstm_cell(torch.zeros(2, 4), torch.zeros(2, 7), torch.zeros(2, 7), w_ih, w_hh)
    with pytest.raises(ValueError, match="c must"):
        rnn.lstm_cell(torch.zeros(2, 5), torch.zeros(2, 7), torch.zeros(2, 6), w_ih, w_hh)
    with pytest.raises(TypeError, match="x must"):
        rnn.lstm_cell([1.0], torch.zeros(2, 7), torch.zeros(2, 7), w_ih, w_hh)


def test_memory_task_layout():
    x, y = rnn.memory_task_batch(16, 5, n_symbols=4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (16, 7) and y.shape == (16,)
    assert torch.equal(x[:, 0], y) and (x[:, -1] == 4).all() and (x[:, 1:-1] < 4).all()
    with pytest.raises(ValueError, match="distance"):
        rnn.memory_task_batch(4, 0)


def test_gradient_vanishes_in_rnn_not_in_lstm(cfg):
    mc = rnn.MemoryConfig()
    x, y = rnn.memory_task_batch(128, 40, generator=torch.Generator().manual_seed(0))
    ratio = {}
    for kind in ("rnn", "lstm"):
        g = rnn.gradient_norms_by_step(rnn.build_memory_model(kind, mc), x, y)
        assert g.shape == (42,)
        ratio[kind] = float(g[0] / g[-1])
    assert ratio["rnn"] < 1e-6  # 40 steps of tanh recurrence: nothing reaches the cue
    assert ratio["lstm"] > 1e-2  # the forget-gated cell path carries it


def test_lstm_learns_a_gap_the_rnn_cannot(cfg):
    mc = rnn.MemoryConfig(steps=150)
    acc = {}
    for kind in ("rnn", "lstm"):
        model = rnn.build_memory_model(kind, mc)
        rnn.train_memory_model(model, 12, mc, progress=False)
        acc[kind] = rnn.memory_accuracy(model, 12)
    assert acc["lstm"] > 0.9  # chance is 1/8
    assert acc["rnn"] < 0.3


def test_stream_cross_entropy_carries_state_exactly():
    torch.manual_seed(0)
    model = rnn.CharLSTM(11, hidden=16, embed=8)
    data = torch.randint(11, (401,), generator=torch.Generator().manual_seed(1))
    whole = rnn.stream_cross_entropy(model, data, streams=1, chunk=1000)
    chunked = rnn.stream_cross_entropy(model, data, streams=1, chunk=7)
    logits, _ = model(data[:-1][None])
    direct = torch.nn.functional.cross_entropy(logits[0], data[1:]).item()
    assert whole == pytest.approx(direct, abs=1e-5) and chunked == pytest.approx(direct, abs=1e-5)
    two = rnn.stream_cross_entropy(model, data, streams=2, chunk=50)
    assert abs(two - direct) < 0.05  # two independent halves: almost the same number


def test_generate_is_seeded_and_respects_the_prefix():
    torch.manual_seed(0)
    model = rnn.CharLSTM(11, hidden=16, embed=8)
    prefix = torch.tensor([1, 2, 3])
    a = model.generate(prefix, 20, generator=torch.Generator().manual_seed(0))
    b = model.generate(prefix, 20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (23,) and torch.equal(a[:3], prefix)
    greedy = model.generate(prefix, 5, temperature=1e-4, generator=torch.Generator().manual_seed(1))
    logits, _ = model(prefix[None])
    assert int(greedy[3]) == int(logits[0, -1].argmax())
    with pytest.raises(ValueError, match="n_new"):
        model.generate(prefix, 0)


def test_contextual_vectors_depend_on_context_static_ones_do_not():
    torch.manual_seed(0)
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ,.")
    fwd, bwd = rnn.CharLSTM(tok.vocab_size, hidden=16, embed=8), rnn.CharLSTM(tok.vocab_size, hidden=16, embed=8)
    v1 = rnn.contextual_word_vector(fwd, bwd, tok, "i bear the pain.", "bear")
    v2 = rnn.contextual_word_vector(fwd, bwd, tok, "the bear ate honey.", "bear")
    v1b = rnn.contextual_word_vector(fwd, bwd, tok, "i bear the pain.", "bear")
    assert v1.shape == (32,) and torch.equal(v1, v1b)
    sims = rnn.cosine_matrix(torch.stack([v1, v2]))
    assert not torch.allclose(v1, v2) and sims[0, 1] < 1 - 1e-5 and sims[0, 0] == pytest.approx(1.0, abs=1e-6)
    s1, s2 = rnn.static_word_vector(fwd, tok, "bear"), rnn.static_word_vector(fwd, tok, "bear")
    assert torch.equal(s1, s2)
    # the forward half only sees the left context: same left context → same forward half
    v3 = rnn.contextual_word_vector(fwd, bwd, tok, "i bear it.", "bear")
    assert torch.allclose(v1[:16], v3[:16]) and not torch.allclose(v1[16:], v3[16:])
    with pytest.raises(ValueError, match="occurs"):
        rnn.contextual_word_vector(fwd, bwd, tok, "no such word", "bear")


def test_cosine_matrix_with_center():
    v = torch.tensor([[1.0, 1.0], [1.0, 2.0], [1.0, 0.0]])
    raw = rnn.cosine_matrix(v)
    assert torch.allclose(raw.diagonal(), torch.ones(3)) and torch.allclose(raw, raw.T)
    assert raw[1, 2] == pytest.approx(1 / 5 ** 0.5, abs=1e-6)
    centred = rnn.cosine_matrix(v, center=torch.tensor([1.0, 1.0]))
    assert centred[1, 2] == pytest.approx(-1.0, abs=1e-6)  # (0, 1) and (0, -1) point opposite ways
    with pytest.raises(ValueError, match="center"):
        rnn.cosine_matrix(v, center=torch.zeros(3))


def test_time_sequence_layers_contract():
    # Only the contract: how the time grows with length is a speed figure, shown by the
    # chapter and the bench, never asserted here (a loaded CI machine would fail it for nothing).
    t = rnn.time_sequence_layers([4, 16], d_model=8, batch_size=2, repeats=1)
    assert set(t) == {"seq_lens", "lstm", "attention"} and t["seq_lens"] == [4, 16]
    assert all(len(t[k]) == 2 and all(math.isfinite(s) and s > 0 for s in t[k]) for k in ("lstm", "attention"))
    with pytest.raises(ValueError, match="seq_lens"):
        rnn.time_sequence_layers([])


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        rnn.SequenceClassifier("gru", 5, 2)
    with pytest.raises(ValueError, match="hidden"):
        rnn.CharLSTM(10, hidden=0)
    with pytest.raises(TypeError, match="lm_config"):
        rnn.train_char_lm(gl.setup(profile="smoke", verbose=False), lm_config={"hidden": 3})
    with pytest.raises(TypeError, match="vectors"):
        rnn.cosine_matrix([[1.0]])


@pytest.mark.slow
def test_bench_smoke_clears_the_issue_bars(cfg):
    from genai_lab.bench import run_chapter

    rows = {r["metric"]: r for r in run_chapter("rnn", cfg)}
    for row in rows.values():
        if row["bar"] is not None:
            assert row["passed"] is True, row
    assert rows["char_lstm_val_nats"]["value"] < rows["char_bigram_val_nats"]["value"] - 0.2
    longest = max(rnn.memory_config(cfg).distances)
    assert rows[f"memory_lstm_acc_d{longest}"]["value"] > rows[f"memory_rnn_acc_d{longest}"]["value"] + 0.5
