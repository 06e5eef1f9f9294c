"""The attention chapter's bench entry: one floor above :mod:`.attention`, :mod:`.attention_maps`,
:mod:`.syntax_heads`, :mod:`.transformer`, :mod:`.bpe` and :mod:`.head_count`, so none of them imports
another back."""

from __future__ import annotations

import torch
from torch import nn

from . import attention as A
from . import attention_maps, bpe, head_count, syntax_heads
from . import transformer as T
from .attention import MultiHeadAttention, padding_mask
from .bench import Metric, register
from .models import load_minilm


@register("attention", "attention vs PyTorch, MiniLM heads, reversal encoder-decoder, cost")
def bench_attention(cfg) -> list[Metric]:
    """The attention chapter's reference experiment (both parts): exactness, a trained encoder–decoder,
    pattern heads, 1 vs 8 heads, BPE."""

    gen = torch.Generator().manual_seed(cfg.seed)
    q, k, v = (torch.randn(4, 8, 12, 16, generator=gen) for _ in range(3))
    ours = A.scaled_dot_product_attention(q, k, v, is_causal=True)[0]
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.manual_seed(cfg.seed)
    torch_mha = nn.MultiheadAttention(32, 4, batch_first=True)
    x = torch.randn(3, 9, 32, generator=gen)
    keep = padding_mask([9, 5, 7], 9)
    with torch.no_grad():
        ref_mha = torch_mha(x, x, x, key_padding_mask=~keep)[0]
        our_mha = MultiHeadAttention.from_torch(torch_mha)(x, key_padding_mask=keep)[0]

    model, meta = T.train_reversal(cfg)
    data = T.reversal_data(cfg)
    match = T.exact_match(model, data.test_src, data.test_tgt)

    tok, encoder = load_minilm("encoder", device=cfg.device)
    scores = attention_maps.average_pattern_scores(tok, encoder, attention_maps.MINILM_SENTENCES)
    prev = next(r for r in attention_maps.best_heads(scores) if r["pattern"] == "previous token")
    # part 1's grammatical heads: the best head vs the best fixed offset on the hand-labelled pairs
    det = syntax_heads.score_relation(tok, encoder, "det-noun")
    subj = syntax_heads.score_relation(tok, encoder, "subj-verb", reuse=det)
    held = syntax_heads.held_out_accuracy(det, "determiner → noun", "non-adjacent")
    on_cpu = torch.device(cfg.device).type == "cpu"  # a GPU needs long sequences to be busy
    cost = A.attention_cost([256, 512, 1024] if on_cpu else [4096, 8192, 16384], repeats=2, device=cfg.device)
    # part 2's comparison of positional encodings (same short budget as the notebook; cached checkpoints)
    short_steps = cfg.pick(smoke=250, cpu=600, gpu=1000)
    short_match = {kind: T.train_reversal(cfg, positions=kind, steps=short_steps, verbose=False)[1]
                   ["metrics"]["test_exact_match"] for kind in ("sinusoidal", "learned", "none")}
    # part 2's price of the recurrence: LSTM vs the same LSTM with its chain cut, at the longest length
    longest = A.rnn_vs_attention_step([256] if on_cpu else [2048], dim=64 if on_cpu else 256,
                                      batch=16 if on_cpu else 64, repeats=2, device=cfg.device)[-1]
    heads = head_count.compare_heads(heads=(1, 8), steps=(100,), seeds=5)
    return [
        Metric("sdpa_max_abs_diff_vs_torch", float((ours - ref).abs().max()), False, bar=1e-5),
        Metric("mha_max_abs_diff_vs_torch", float((our_mha - ref_mha).abs().max()), False, bar=1e-5),
        Metric("reversal_exact_match_heldout", match, True, bar=cfg.pick(smoke=0.95, cpu=0.95, gpu=0.95)),
        Metric("reversal_copy_baseline_exact_match",
               T.copy_baseline_exact_match(data.test_src, data.test_tgt), True, bar=None),
        Metric("reversal_train_seconds", meta["seconds"], False, unit="s"),
        Metric("minilm_previous_token_head_score", prev["score"], True, bar=None),
        Metric("minilm_previous_token_vs_uniform", prev["ratio"], True, bar=None, unit="x"),
        *_syntax_metrics(det, "noun_to_det", "noun → determiner"),
        *_syntax_metrics(det, "det_to_noun", "determiner → noun"),
        *_syntax_metrics(subj, "verb_to_subject", "verb → subject"),
        # the head and the offset picked on one half of the sentences, scored on the other half
        Metric("det_to_noun_heldout_head_nonadjacent", held["head_accuracy"], True, bar=None),
        Metric("det_to_noun_heldout_offset_nonadjacent", held["offset_accuracy"], True, bar=None),
        Metric("det_to_noun_heldout_sign_test_p", held["p_value"], False, bar=None),
        Metric("attention_time_loglog_slope", A.loglog_slope([r["seq_len"] for r in cost],
                                                             [r["seconds"] for r in cost]), True, bar=None),
        Metric("reversal_sinusoidal_short_exact_match", short_match["sinusoidal"], True, bar=None),
        Metric("reversal_learned_short_exact_match", short_match["learned"], True, bar=None),
        Metric("reversal_no_positions_short_exact_match", short_match["none"], False, bar=None),
        Metric("recurrence_cost_ratio_longest", longest["rnn_seconds"] / longest["rnn_unchained_seconds"],
               True, bar=None, unit="x"),
        Metric("lstm_vs_attention_step_ratio_longest", longest["rnn_seconds"] / longest["attention_seconds"],
               True, bar=None, unit="x"),
        *bpe.bench_metrics(cfg),  # part 1's BPE: equal to the tokenizers library, and its compression
        # part 1's one head vs eight at equal width and budget (mean over 5 seeds, 100 steps)
        Metric("one_vs_eight_heads_accuracy_gap_100_steps", heads.mean(1, 100) - heads.mean(8, 100), True,
               bar=None),
    ]


def _syntax_metrics(scores, prefix: str, direction: str) -> list[Metric]:
    """Best head and best fixed offset (each chosen on the same pairs), on adjacent and non-adjacent pairs."""
    out = []
    for subset in ("adjacent", "non-adjacent"):
        tag = subset.replace("-", "")
        out += [Metric(f"{prefix}_best_head_{tag}", scores.best_head(direction, subset)[2], True, bar=None),
                Metric(f"{prefix}_offset_baseline_{tag}", scores.best_offset(direction, subset)[1], True, bar=None)]
    return out
