"""The BERT chapter's bench entry, one floor above :mod:`.bert` and :mod:`.bert_downstream`
(which builds on the pretrained encoder), so neither imports the other back."""

from __future__ import annotations

from . import bert, bert_downstream
from .bench import Metric, register
from .config import LabConfig


@register("bert", "BERT: MLM/NSP pretraining from scratch, MiniLM MLM head, frozen vs fine-tuned encoder")
def bench_bert(cfg: LabConfig) -> list[Metric]:
    """The chapter's reference experiment: every number the issue asks for."""
    tokenizer, mlm, meta = bert.pretrain_mlm(cfg, progress=False)
    m = meta["metrics"]
    ratio = m["top1"] / max(m["baseline_top1"], 1e-9)
    _, nsp_model, nsp_meta = bert.pretrain_with_nsp(cfg, progress=False)
    n = nsp_meta["metrics"]
    mini_tok, mini_mlm, mini_meta = bert.minilm_mlm_head(cfg, progress=False)
    _, val_text = bert.shakespeare_split()
    items = bert.fill_mask_items(val_text.splitlines(), [tokenizer, mini_tok], cfg.pick(smoke=200, cpu=1000, gpu=1000))
    fm_scratch = bert.fill_mask_accuracy(mlm, tokenizer, items)
    fm_mini = bert.fill_mask_accuracy(mini_mlm, mini_tok, items)
    answers = [item.answer for item in items]
    most_common_share = max(answers.count(a) for a in set(answers)) / len(answers)  # always guess one word
    metrics = [
        Metric("mlm_top1", m["top1"]), Metric("mlm_top5", m["top5"]),
        Metric("mlm_most_frequent_baseline", m["baseline_top1"]),
        Metric("mlm_top1_over_baseline", ratio, bar=cfg.pick(smoke=2.0, cpu=2.0, gpu=2.0), unit="x"),
        Metric("nsp_accuracy", n["nsp_accuracy"]), Metric("nsp_chance", n["nsp_majority"]),
        Metric("nsp_model_mlm_top1", n["top1"]),
        Metric("nsp_model_mlm_most_frequent", n["baseline_top1"]),
        Metric("minilm_head_mlm_top1", mini_meta["metrics"]["top1"]),
        Metric("fill_mask_word_top1_scratch", fm_scratch["top1"]),
        Metric("fill_mask_word_top1_minilm_head", fm_mini["top1"]),
        Metric("fill_mask_word_top1_most_common", most_common_share),
    ]
    if cfg.profile == "gpu":
        real = bert.bert_base_masked_lm(cfg.device)
        if real is not None:
            metrics.append(Metric("fill_mask_word_top1_bert_base", bert.fill_mask_accuracy(real[1], real[0], items)["top1"]))
    settings = bert_downstream.downstream_settings(cfg)
    enc_tok, encoder = bert_downstream.downstream_encoder(cfg)
    data = bert_downstream.speaker_dataset()
    for mode in ("frozen", "finetune"):
        res = bert_downstream.train_speaker_classifier(encoder, enc_tok, data, mode=mode, steps=settings[f"{mode}_steps"],
                                       lr=settings[f"{mode}_lr"], max_len=settings["max_len"],
                                       seed=cfg.seed, device=cfg.device, progress=False)
        metrics += [Metric(f"speaker_{mode}_accuracy", res.accuracy),
                    Metric(f"speaker_{mode}_trainable_params", res.trainable, unit="params")]
    metrics.append(Metric("speaker_chance", 1 / len(data.speakers)))
    return metrics
