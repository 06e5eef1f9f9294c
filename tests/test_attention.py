"""Tests for genai_lab.attention and genai_lab.transformer: exact against PyTorch, real behaviour."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import genai_lab as gl
from genai_lab import attention as A
from genai_lab import attention_maps as maps
from genai_lab import attention_bench
from genai_lab import transformer as T


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- scaled dot-product
@pytest.mark.parametrize("tq,tk", [(5, 5), (3, 7)])
def test_sdpa_matches_torch_without_mask(tq, tk):
    q, k, v = randn(2, 4, tq, 8, seed=1), randn(2, 4, tk, 8, seed=2), randn(2, 4, tk, 6, seed=3)
    out, weights = A.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, tq))


def test_sdpa_matches_torch_with_causal_padding_and_float_masks():
    q, k, v = randn(3, 2, 6, 8, seed=1), randn(3, 2, 6, 8, seed=2), randn(3, 2, 6, 8, seed=3)
    causal = A.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(causal[0], F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-6, rtol=1e-5)
    assert causal[1].triu(1).abs().max() == 0  # nothing above the diagonal: no peeking ahead
    keep = A.padding_mask([6, 4, 2])[:, None, None, :]  # (B, 1, 1, T)
    out, weights = A.scaled_dot_product_attention(q, k, v, keep)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
                               atol=1e-6, rtol=1e-5)
    assert weights[2, :, :, 2:].abs().max() == 0  # padded keys get zero weight
    additive = randn(6, 6, seed=4)
    torch.testing.assert_close(A.scaled_dot_product_attention(q, k, v, additive)[0],
                               F.scaled_dot_product_attention(q, k, v, attn_mask=additive),
                               atol=1e-6, rtol=1e-5)


def test_sdpa_fully_masked_row_is_zero_like_torch():
    q = randn(1, 3, 4)
    mask = torch.tensor([[True, True, True], [False, False, False], [True, False, False]])
    out, weights = A.scaled_dot_product_attention(q, q, q, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, q, q, attn_mask=mask))
    assert weights[0, 1].abs().sum() == 0 and not torch.isnan(out).any()


def test_sdpa_rejects_bad_input():
    q = randn(2, 3, 4)
    with pytest.raises(TypeError, match="query"):
        A.scaled_dot_product_attention(q.numpy(), q, q)
    with pytest.raises(ValueError, match="d_k"):
        A.scaled_dot_product_attention(q, randn(2, 3, 5), randn(2, 3, 5))
    with pytest.raises(ValueError, match="T_k"):
        A.scaled_dot_product_attention(q, q, randn(2, 4, 4))
    with pytest.raises(ValueError, match="mask"):
        A.scaled_dot_product_attention(q, q, q, torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_causal"):
        A.scaled_dot_product_attention(q, q, q, torch.ones(3, 3, dtype=torch.bool), is_causal=True)
    with pytest.raises(TypeError, match="mask"):
        A.scaled_dot_product_attention(q, q, q, torch.ones(3, 3, dtype=torch.long))


def test_masks():
    assert A.causal_mask(3).int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert A.causal_mask(2, 3).int().tolist() == [[1, 0, 0], [1, 1, 0]]
    assert A.padding_mask(torch.tensor([1, 3]), 4).int().tolist() == [[1, 0, 0, 0], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match="max_len"):
        A.padding_mask([5], 3)
    with pytest.raises(ValueError, match="lengths"):
        A.padding_mask([1.5, 2.0])
    with pytest.raises(ValueError, match="query_len"):
        A.causal_mask(0)


# --------------------------------------------------------------------------- multi-head
def test_split_merge_heads_round_trip_and_errors():
    x = randn(2, 5, 12)
    heads = A.split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    torch.testing.assert_close(heads[:, 1], x[..., 4:8])  # head 1 is the second slice of features
    torch.testing.assert_close(A.merge_heads(heads), x)
    with pytest.raises(ValueError, match="num_heads"):
        A.split_heads(x, 5)
    with pytest.raises(ValueError, match="x"):
        A.merge_heads(x.unsqueeze(0).unsqueeze(0))


@pytest.fixture
def torch_mha():
    torch.manual_seed(0)
    return nn.MultiheadAttention(16, 4, batch_first=True).eval()


def test_mha_matches_torch_self_attention_with_padding(torch_mha):
    x = randn(3, 7, 16)
    keep = A.padding_mask([7, 3, 5], 7)
    ref_out, ref_w = torch_mha(x, x, x, key_padding_mask=~keep, average_attn_weights=False)
    out, w = A.MultiHeadAttention.from_torch(torch_mha)(x, key_padding_mask=keep)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)


def test_mha_matches_torch_causal_and_cross_attention(torch_mha):
    ours = A.MultiHeadAttention.from_torch(torch_mha)
    x = randn(2, 6, 16, seed=1)
    causal = A.causal_mask(6)
    ref_out = torch_mha(x, x, x, attn_mask=~causal)[0]
    torch.testing.assert_close(ours(x, is_causal=True)[0], ref_out, atol=1e-5, rtol=1e-5)
    memory = randn(2, 9, 16, seed=2)
    ref_out, ref_w = torch_mha(x, memory, memory, average_attn_weights=False)
    out, w = ours(x, memory, memory)
    assert w.shape == (2, 4, 6, 9)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)


def test_mha_rejects_bad_input(torch_mha):
    with pytest.raises(ValueError, match="num_heads"):
        A.MultiHeadAttention(10, 3)
    mha = A.MultiHeadAttention.from_torch(torch_mha)
    with pytest.raises(ValueError, match="query"):
        mha(randn(2, 3, 8))
    with pytest.raises(ValueError, match="key_padding_mask"):
        mha(randn(2, 3, 16), key_padding_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="reference"):
        A.MultiHeadAttention.from_torch(nn.Linear(2, 2))


# --------------------------------------------------------------------------- positions
def test_sinusoidal_matches_pytorch_tutorial_formula_and_depends_on_offset_only():
    n, d = 50, 16
    position = torch.arange(n).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    ref = torch.zeros(n, d)
    ref[:, 0::2] = torch.sin(position * div_term)
    ref[:, 1::2] = torch.cos(position * div_term)
    pe = A.sinusoidal_positions(n, d)
    torch.testing.assert_close(pe, ref, atol=1e-5, rtol=1e-5)
    dots = pe @ pe.T
    torch.testing.assert_close(dots.diagonal(3)[:-1], dots.diagonal(3)[1:], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="dim"):
        A.sinusoidal_positions(4, 5)


def test_self_attention_is_permutation_equivariant_only_without_positions():
    torch.manual_seed(0)
    mha = A.MultiHeadAttention(16, 4).eval()
    x = randn(2, 8, 16)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    assert A.permutation_equivariance_gap(lambda t: mha(t)[0], x, perm) < 1e-5
    pos = A.PositionalEncoding("sinusoidal", 8, 16)
    assert A.permutation_equivariance_gap(lambda t: mha(pos(t))[0], x, perm) > 0.05
    with pytest.raises(ValueError, match="permutation"):
        A.permutation_equivariance_gap(lambda t: t, x, torch.tensor([0, 0, 1, 2, 3, 4, 5, 6]))
    with pytest.raises(ValueError, match="kind"):
        A.PositionalEncoding("rotary", 8, 16)


# --------------------------------------------------------------------------- MiniLM
@pytest.fixture(scope="module")
def minilm():
    return gl.models.load_minilm("encoder")


def test_our_attention_reproduces_minilm_attention(minilm):
    tok, model = minilm
    enc = tok(["This is a pen.", "Attention is all you need, they said."], padding=True,
              return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_attentions=True, output_hidden_states=True)
        for layer in (0, 3, 5):
            ours = maps.bert_self_attention_weights(model, out.hidden_states[layer], layer,
                                                 enc["attention_mask"])
            torch.testing.assert_close(ours, out.attentions[layer], atol=1e-5, rtol=1e-4)


def test_minilm_has_pattern_heads_far_above_uniform(minilm):
    tok, model = minilm
    tokens, attentions = maps.encoder_attentions(tok, model, "This is a pen.")
    assert tokens == ["[CLS]", "this", "is", "a", "pen", ".", "[SEP]"]
    assert len(attentions) == 6 and attentions[0].shape == (1, 12, 7, 7)
    rows = {r["pattern"]: r for r in maps.best_heads(maps.average_pattern_scores(tok, model, maps.MINILM_SENTENCES))}
    # A real head puts most of its attention on the previous token: far above spreading it evenly.
    assert rows["previous token"]["score"] > 0.5 and rows["previous token"]["ratio"] > 4
    assert rows["next token"]["ratio"] > 4
    table = maps.format_score_table(attentions[0][0, 0], tokens)
    assert "pen" in table and len(table.splitlines()) == 8
    with pytest.raises(ValueError, match="text"):
        maps.encoder_attentions(tok, model, "  ")


def test_pattern_targets():
    targets = maps.pattern_targets(["[CLS]", "the", "cat", "the", "[SEP]"])
    assert targets["previous token"].nonzero().tolist() == [[2, 1], [3, 2]]
    assert targets["same word elsewhere"].nonzero().tolist() == [[1, 3], [3, 1]]
    assert targets["[SEP]"][:, 4].tolist() == [False, True, True, True, False]


# --------------------------------------------------------------------------- cost
def test_attention_cost_weight_memory_is_quadratic():
    rows = A.attention_cost([32, 64, 128], repeats=1)
    slope = A.loglog_slope([r["seq_len"] for r in rows], [r["weight_bytes"] for r in rows])
    assert slope == pytest.approx(2.0)
    assert all(r["seconds"] > 0 for r in rows)
    steps = A.rnn_vs_attention_step([8, 16], repeats=1, batch=2, dim=16)
    assert [r["rnn_sequential_steps"] for r in steps] == [8, 16]
    with pytest.raises(ValueError, match="seq_lens"):
        A.attention_cost([])


# --------------------------------------------------------------------------- encoder-decoder
def test_reversal_pairs_are_reversed_and_padded():
    src, tgt = T.reversal_pairs(20, min_len=2, max_len=5, generator=torch.Generator().manual_seed(0))
    for s, t in zip(src.tolist(), tgt.tolist()):
        digits = [i for i in s if i != T.PAD]
        assert t[0] == T.BOS and t[1:len(digits) + 1] == digits[::-1] and t[len(digits) + 1] == T.EOS
    with pytest.raises(ValueError, match="min_len"):
        T.reversal_pairs(3, min_len=4, max_len=2)


def test_decoder_is_causal_and_greedy_loop_matches_teacher_forcing():
    torch.manual_seed(0)
    model = T.Seq2SeqTransformer(T.Seq2SeqConfig(d_model=16, ff_dim=32)).eval()
    src, tgt = T.reversal_pairs(4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(src, tgt[:, :-1])
        changed = tgt[:, :-1].clone()
        changed[:, 5:] = T.BOS  # change the future…
        torch.testing.assert_close(model(src, changed)[:, :5], logits[:, :5])  # …the past is unchanged
    trace = []
    generated = T.greedy_decode(model, src, 6, trace=trace)
    assert generated.shape[1] <= 7 and (generated[:, 0] == T.BOS).all()
    assert trace[0] == ("<s>", T.VOCAB[int(generated[0, 1])])
    with torch.no_grad():  # each step's choice is the argmax of a full forward pass on the prefix
        again = model(src, generated[:, :-1]).argmax(-1)
    alive = generated[:, 1:] != T.PAD
    assert (again[alive] == generated[:, 1:][alive]).all()
    assert model.cross_attention().shape[:3] == (2, 4, 4)
    with pytest.raises(TypeError, match="src"):
        model(src.float(), tgt)
    with pytest.raises(ValueError, match="positions"):
        T.Seq2SeqConfig(positions="rope")


@pytest.mark.slow
def test_bench_smoke_passes_its_bars():
    """Trains the reversal model (about 30 s on one idle core) unless it is cached."""
    cfg = gl.setup("smoke", verbose=False, threads=1)
    metrics = {m.name: m for m in attention_bench.bench_attention(cfg)}
    assert all(m.passed is True for m in metrics.values() if m.bar is not None), metrics
    assert metrics["reversal_exact_match_heldout"].value >= 0.95
    # the trained model beats the obvious baseline (copying the input: right only for palindromes)
    baseline = metrics["reversal_copy_baseline_exact_match"].value
    assert metrics["reversal_exact_match_heldout"].value >= baseline + 0.8
    assert metrics["minilm_previous_token_vs_uniform"].value > 4
    assert metrics["attention_time_loglog_slope"].value > 1.3  # clearly super-linear in T
    assert metrics["bpe_heldout_chars_per_token"].value > 2  # 500 merges more than halve a line
    # a determiner → noun head beats the best fixed offset on non-adjacent pairs, also held out
    assert (metrics["det_to_noun_best_head_nonadjacent"].value
            >= metrics["det_to_noun_offset_baseline_nonadjacent"].value + 0.15)
    assert metrics["det_to_noun_heldout_sign_test_p"].value < 0.01
    assert metrics["noun_to_det_best_head_adjacent"].value == metrics["noun_to_det_offset_baseline_adjacent"].value == 1


# --------------------------------------------------------------------------- one query by hand, the diagram
def test_one_query_worked_by_hand_is_a_row_of_the_matrix_form():
    """The page's hand-worked query (plain Python floats) equals the row of the matrix form."""
    x = randn(5, 4, seed=7)
    i = 4
    scores = [float(x[i] @ key) for key in x]
    scaled = [s / math.sqrt(4) for s in scores]
    exps = [math.exp(s) for s in scaled]
    weights = [e / sum(exps) for e in exps]
    output = sum(w * v for w, v in zip(weights, x))
    assert abs(sum(weights) - 1) < 1e-12
    ours, our_weights = A.scaled_dot_product_attention(x, x, x)
    torch.testing.assert_close(torch.tensor(weights, dtype=torch.float32), our_weights[i], atol=1e-6, rtol=0)
    torch.testing.assert_close(output, ours[i], atol=1e-6, rtol=0)
    torch.testing.assert_close(output, F.scaled_dot_product_attention(x[None], x[None], x[None])[0, i],
                               atol=1e-6, rtol=0)


def test_transformer_diagram_draws_every_block_without_overlaps():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genai_lab.audit import figure_problems

    fig = A.plot_transformer_diagram(2, 3)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts if t.get_text()]
    for block in ("input embedding × √D", "+ positional encoding", "multi-head self-attention",
                  "masked multi-head self-attention", "cross-attention (multi-head)", "add & norm",
                  "feed-forward (per position)", "softmax", "encoder layer × 2", "decoder layer × 3"):
        assert block in texts, block
    assert texts.count("add & norm") == 2 + 3  # encoder: 2 sub-layers, decoder: 3
    assert ax.get_title() and figure_problems(fig) == []
    plt.close(fig)
    assert "encoder layer × N" in [t.get_text() for t in A.plot_transformer_diagram().axes[0].texts]
    plt.close("all")
    with pytest.raises(ValueError, match="encoder_layers"):
        A.plot_transformer_diagram(0)
    with pytest.raises(ValueError, match="decoder_layers"):
        A.plot_transformer_diagram(2, "3")
    with pytest.raises(TypeError, match="title"):
        A.plot_transformer_diagram(title=None)


def test_attention_module_does_not_import_the_transformer_back():
    """transformer.py builds on attention.py; attention.py must not import it (no import circle)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(A))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "transformer" not in imported
