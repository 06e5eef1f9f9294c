"""BERT from the ground up: masking, next-sentence pairs, a WordPiece vocabulary, pretraining,
fill-mask, and using a pretrained encoder (frozen features vs fine-tuning).

The chapter's code lives in three modules, each readable in one sitting; this one re-exports the
other two, so ``from genai_lab import bert`` gives every name:

- :mod:`genai_lab.bert_data` — data and masking: :func:`mask_tokens` (the masked-LM recipe) and
  :func:`masking_statistics`, :func:`parse_speeches` / :func:`nsp_pairs` (next-sentence pairs),
  :func:`train_wordpiece` / :func:`shakespeare_wordpiece` (the WordPiece vocabulary),
  :func:`text_windows` / :func:`mask_for` (masked training windows).
- this module — model and pretraining: :func:`pretrain_mlm` (``BertForMaskedLM``) and
  :func:`pretrain_with_nsp` (``BertForPreTraining``), small BERTs trained from scratch and cached
  by :func:`genai_lab.checkpoints.load_or_train` (keyed by sizes, vocabulary, seed, masking recipe
  and steps); :func:`fill_mask`, :func:`fill_mask_widget`, :func:`fill_mask_accuracy`;
  :func:`minilm_mlm_head` (a masked-LM head on the frozen all-MiniLM-L6-v2 encoder); the bench.
- :mod:`genai_lab.bert_downstream` — the downstream task (who speaks this line?):
  :func:`speaker_dataset` / :func:`train_speaker_classifier`, by feature extraction or by full
  fine-tuning.

Labels follow the transformers conventions: ``-100`` (:data:`IGNORE_INDEX`) marks positions that
the MLM loss ignores, and ``next_sentence_label`` is 0 for "B follows A", 1 for "B is random".
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .bert_data import (  # noqa: F401  (re-exported: the chapter's first part)
    DEFAULT_MASKING, IGNORE_INDEX, IS_NEXT, NOT_NEXT, SPECIAL_TOKENS, Speech, _check_fraction, _check_ids,
    corpus_ids, mask_for, mask_tokens, masked_lm_loss, masking_recipe, masking_statistics, nsp_pairs,
    parse_speeches, shakespeare_wordpiece, special_ids, text_windows, train_wordpiece, vocab_digest,
)
from .config import LabConfig


# =========================================================================== model sizes
@dataclass(frozen=True)
class BertSize:
    """Hyper-parameters of a from-scratch BERT and its pretraining run."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    max_len: int
    steps: int
    batch_size: int
    lr: float
    dropout: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def scratch_size(cfg: LabConfig, kind: str = "mlm") -> BertSize:
    """Sizes for ``kind="mlm"`` (windows of running text) or ``"nsp"`` (sentence pairs).

    The MLM windows are short in ``smoke`` (12 positions: ``[CLS]``, 10 tokens, ``[SEP]``) because
    the length of the early plateau grows with the window: a masked LM first has to learn *where*
    the neighbouring words are, and with fewer positions it finds them sooner.  Measured on the
    smoke model (held-out top-1 vs the most-frequent-token baseline, ~1,000 tokens per step):
    12-token windows left the baseline after ~750 steps and reached 2.3× at 2,000; 16-token
    windows needed ~1,250 steps; 32-token windows ~2,500 steps and 5,000 steps for 3×.
    """
    if kind not in ("mlm", "nsp"):
        raise ValueError(f"kind must be 'mlm' or 'nsp', got {kind!r}")
    vocab = cfg.pick(smoke=2000, cpu=4000, gpu=8000)
    hidden, layers, heads = cfg.pick(smoke=(128, 2, 4), cpu=(128, 4, 4), gpu=(256, 6, 8))
    if kind == "mlm":
        # cpu: 16-token windows and 3,000 steps. The book's cpu build trains this on one thread beside
        # another notebook, where 24-token windows × 5,000 steps took 14 minutes (measured 2026-12-02)
        return BertSize(vocab, hidden, layers, heads, max_len=cfg.pick(smoke=12, cpu=16, gpu=64),
                        steps=cfg.pick(smoke=2000, cpu=3000, gpu=6000),
                        batch_size=cfg.pick(smoke=96, cpu=64, gpu=128), lr=1e-3,
                        dropout=cfg.pick(smoke=0.0, cpu=0.0, gpu=0.1))
    return BertSize(vocab, hidden, layers, heads, max_len=48,
                    steps=cfg.pick(smoke=120, cpu=600, gpu=10000),  # cpu: 1,500 steps took 7 min on one thread
                    batch_size=cfg.pick(smoke=32, cpu=32, gpu=128), lr=1e-3,
                    dropout=cfg.pick(smoke=0.0, cpu=0.0, gpu=0.1))


def _with_steps(size: BertSize, steps) -> BertSize:
    """``size`` with another number of training steps (``None``: unchanged)."""
    if steps is None:
        return size
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return dataclasses.replace(size, steps=steps)


def bert_config(size: BertSize, tokenizer=None, attn_implementation: str = "sdpa"):
    """A ``BertConfig`` for ``size`` (pad id from ``tokenizer`` when given).

    ``attn_implementation="sdpa"`` trains fastest; switch a trained model to ``"eager"``
    (``model.set_attn_implementation("eager")``) to get attention maps.
    """
    from transformers import BertConfig

    pad = tokenizer.pad_token_id if tokenizer is not None else 0
    return BertConfig(vocab_size=size.vocab_size, hidden_size=size.hidden,
                      num_hidden_layers=size.layers, num_attention_heads=size.heads,
                      intermediate_size=4 * size.hidden, max_position_embeddings=size.max_len,
                      type_vocab_size=2, pad_token_id=pad, attn_implementation=attn_implementation,
                      hidden_dropout_prob=size.dropout, attention_probs_dropout_prob=size.dropout)


def init_output_bias(model, train_ids: torch.Tensor) -> None:
    """Start the MLM output bias at the log-frequency of each token in ``train_ids``.

    The untrained model then already predicts like a unigram model (the first thing every
    masked LM learns), so training goes straight to learning from context.
    """
    _check_ids(train_ids, "train_ids")
    head = model.cls.predictions
    counts = torch.bincount(train_ids, minlength=head.bias.numel()).float() + 1.0
    with torch.no_grad():
        head.bias.copy_((counts / counts.sum()).log().to(head.bias.device))


def _schedule(optimizer, steps: int, warmup_fraction: float = 0.06, final: float = 0.1):
    """Linear warm-up, then linear decay to ``final`` × the peak (BERT's schedule, shortened).

    ``final=1.0`` keeps the rate constant after warm-up (used for short from-scratch runs, which
    need every high-rate step to get past the early plateau)."""
    warm = max(1, int(steps * warmup_fraction))

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        return max(final, 1.0 - (1.0 - final) * (step - warm) / max(1, steps - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

# =========================================================================== MLM metrics
def _mlm_logits(output):
    return output.logits if hasattr(output, "logits") and output.logits is not None else output.prediction_logits


@torch.no_grad()
def masked_token_accuracy(model, input_ids: torch.Tensor, labels: torch.Tensor, *,
                          token_type_ids: torch.Tensor | None = None,
                          attention_mask: torch.Tensor | None = None, batch_size: int = 64,
                          ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy of a masked LM at the labelled positions.

    Args:
        model: ``BertForMaskedLM`` or ``BertForPreTraining``.
        input_ids, labels: int64 ``(N, T)``; labels -100 where nothing is predicted.

    Returns:
        ``{"top1": …, "top5": …, "positions": n}``.
    """
    _check_ids(input_ids)
    _check_ids(labels, "labels")
    if input_ids.shape != labels.shape:
        raise ValueError(f"labels must have shape {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hits = {k: 0 for k in ks}
    total = 0
    for s in range(0, len(input_ids), batch_size):
        kwargs = {"input_ids": input_ids[s:s + batch_size].to(device)}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids[s:s + batch_size].to(device)
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask[s:s + batch_size].to(device)
        lab = labels[s:s + batch_size].to(device)
        where = lab != IGNORE_INDEX
        logits = _mlm_logits(model(**kwargs))[where]
        top = logits.topk(max(ks), dim=-1).indices
        for k in ks:
            hits[k] += int((top[:, :k] == lab[where][:, None]).any(-1).sum())
        total += int(where.sum())
    model.train(was_training)
    return {**{f"top{k}": hits[k] / max(1, total) for k in ks}, "positions": total}


def most_frequent_baseline(train_ids: torch.Tensor, labels: torch.Tensor) -> tuple[int, float]:
    """The most frequent training token and its top-1 accuracy if always predicted at ``labels``."""
    _check_ids(train_ids, "train_ids")
    _check_ids(labels, "labels")
    top = int(torch.bincount(train_ids).argmax())
    target = labels[labels != IGNORE_INDEX]
    if len(target) == 0:
        raise ValueError("labels must mark at least one position")
    return top, float((target == top).float().mean())


# =========================================================================== pretraining
def shakespeare_split() -> tuple[str, str]:
    """Tiny Shakespeare's one 90/10 split ``(train_text, val_text)``, as in :mod:`genai_lab.text`."""
    from .data import load_tiny_shakespeare, train_val_split

    return train_val_split(load_tiny_shakespeare())


def mlm_eval_set(tokenizer, max_len: int, n: int, *, seed: int = 1234):
    """Fixed held-out windows of the validation text, masked with every selected token → [MASK].

    Returns ``(masked_ids, labels)`` int64 ``(n, max_len)``.
    """
    _, val_text = shakespeare_split()
    windows = text_windows(corpus_ids(tokenizer, val_text), tokenizer, max_len, n=n)
    return mask_for(tokenizer, windows, generator=torch.Generator().manual_seed(seed), evaluation=True)


def pretrain_mlm(cfg: LabConfig, *, mlm_probability: float = 0.15, mask_fraction: float = 0.8,
                 random_fraction: float = 0.1, steps: int | None = None, retrain: bool = False,
                 progress: bool = True):
    """Pretrain a small ``BertForMaskedLM`` from scratch on Tiny Shakespeare (cached).

    Dynamic masking (a new mask every batch) on random windows of the training split, with the
    recipe ``mlm_probability`` / ``mask_fraction`` / ``random_fraction`` (see :func:`mask_tokens`;
    the defaults are BERT's) for ``steps`` optimiser steps (default: :func:`scratch_size`'s).
    The checkpoint is keyed by the sizes, the vocabulary, the seed, the recipe and the steps, so
    changing any of them trains a new model (``retrain=True`` forces it anyway).  The held-out
    evaluation always uses BERT's 15 % with every selected token as ``[MASK]``, so runs with
    different recipes are scored on the same items.

    Returns:
        ``(tokenizer, model, meta)``; ``meta["metrics"]`` holds ``losses`` (per step),
        ``top1``/``top5`` on held-out masked tokens, ``baseline_top1``, ``baseline_token``,
        ``parameters`` and ``seconds``.
    """
    from transformers import BertForMaskedLM

    from .checkpoints import load_or_train
    from .train import count_parameters, train_loop

    size = _with_steps(scratch_size(cfg, "mlm"), steps)
    recipe = masking_recipe(mlm_probability, mask_fraction, random_fraction)
    tokenizer = shakespeare_wordpiece(size.vocab_size)
    train_text, _ = shakespeare_split()
    train_ids = corpus_ids(tokenizer, train_text)
    eval_ids, eval_labels = mlm_eval_set(tokenizer, size.max_len, 400)

    def build():
        torch.manual_seed(cfg.seed)
        model = BertForMaskedLM(bert_config(size, tokenizer))
        init_output_bias(model, train_ids)
        return model

    def train(model):
        gen = torch.Generator().manual_seed(cfg.seed)

        def batches():
            while True:
                windows = text_windows(train_ids, tokenizer, size.max_len, n=size.batch_size, generator=gen)
                yield mask_for(tokenizer, windows, generator=gen, masking=recipe)

        def loss_fn(m, batch):
            # The same loss as masked_lm_loss(m(input_ids=ids).logits, labels), but the output
            # layer only runs at the ~15 % selected positions (a third less compute per step).
            ids, labels = (t.to(cfg.device) for t in batch)
            hidden = m.bert(input_ids=ids).last_hidden_state
            selected = labels != IGNORE_INDEX
            return F.cross_entropy(m.cls(hidden[selected]), labels[selected])

        opt = torch.optim.AdamW(model.parameters(), lr=size.lr, weight_decay=0.01, betas=(0.9, 0.98))
        hist = train_loop(model, opt, batches(), loss_fn, size.steps,
                          scheduler=_schedule(opt, size.steps, warmup_fraction=0.03, final=1.0),
                          clip_grad=1.0, progress=progress, desc="MLM pretraining")
        acc = masked_token_accuracy(model, eval_ids, eval_labels)
        token, base = most_frequent_baseline(train_ids, eval_labels)
        return {"losses": [round(x, 4) for x in hist.losses], "top1": acc["top1"], "top5": acc["top5"],
                "eval_positions": acc["positions"], "baseline_top1": base,
                "baseline_token": tokenizer.convert_ids_to_tokens(token),
                "parameters": count_parameters(model), "train_seconds": round(hist.seconds, 2)}

    config = {**size.as_dict(), "vocab": vocab_digest(tokenizer), "seed": cfg.seed, "masking": recipe,
              "version": 4}
    model, meta = load_or_train("bert-mlm", cfg, config, build, train, retrain=retrain)
    return tokenizer, model, meta


def pair_tensors(tokenizer, pairs: Sequence[tuple[str, str, int]], max_len: int) -> dict[str, torch.Tensor]:
    """Tokenise NSP pairs as ``[CLS] A [SEP] B [SEP]`` padded to ``max_len``.

    Returns ``input_ids``, ``token_type_ids``, ``attention_mask`` (int64 ``(N, max_len)``) and
    ``next_sentence_label`` (int64 ``(N,)``).
    """
    if not pairs:
        raise ValueError("pairs must not be empty")
    enc = tokenizer([a for a, _, _ in pairs], [b for _, b, _ in pairs], truncation="longest_first",
                    max_length=max_len, padding="max_length", return_tensors="pt")
    return {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
            "attention_mask": enc["attention_mask"],
            "next_sentence_label": torch.tensor([lab for _, _, lab in pairs], dtype=torch.long)}


def pretrain_with_nsp(cfg: LabConfig, *, mlm_probability: float = 0.15, mask_fraction: float = 0.8,
                      random_fraction: float = 0.1, steps: int | None = None, retrain: bool = False,
                      progress: bool = True):
    """Pretrain a small ``BertForPreTraining`` (masked LM + next-sentence prediction) from scratch.

    Pairs come from the speeches of the training split; evaluation pairs from the validation split.
    The masking recipe and ``steps`` are as in :func:`pretrain_mlm` and, like the sizes, the
    vocabulary, the seed and the number of pairs, part of the checkpoint key.

    Returns:
        ``(tokenizer, model, meta)``; ``meta["metrics"]`` holds ``losses``, ``nsp_accuracy``,
        ``top1``/``top5`` (masked tokens of held-out pairs), ``baseline_top1`` and ``parameters``.
    """
    from transformers import BertForPreTraining

    from .checkpoints import load_or_train
    from .train import count_parameters, infinite_batches, train_loop

    size = _with_steps(scratch_size(cfg, "nsp"), steps)
    recipe = masking_recipe(mlm_probability, mask_fraction, random_fraction)
    tokenizer = shakespeare_wordpiece(size.vocab_size)
    train_text, val_text = shakespeare_split()
    n_train = cfg.pick(smoke=6000, cpu=60000, gpu=200000)
    n_val = cfg.pick(smoke=600, cpu=2000, gpu=2000)

    def build():
        torch.manual_seed(cfg.seed)
        model = BertForPreTraining(bert_config(size, tokenizer))
        init_output_bias(model, corpus_ids(tokenizer, train_text))
        return model

    def train(model):
        gen = torch.Generator().manual_seed(cfg.seed)
        docs = [s.lines for s in parse_speeches(train_text)]
        data = pair_tensors(tokenizer, nsp_pairs(docs, n_train, generator=gen), size.max_len)
        val_docs = [s.lines for s in parse_speeches(val_text)]
        val = pair_tensors(tokenizer, nsp_pairs(val_docs, n_val, generator=torch.Generator().manual_seed(99)),
                           size.max_len)
        batches = infinite_batches(data["input_ids"], data["token_type_ids"], data["attention_mask"],
                                   data["next_sentence_label"], batch_size=size.batch_size, generator=gen)

        def loss_fn(m, batch):
            ids, types, attn, nsp = batch
            masked, labels = mask_for(tokenizer, ids, generator=gen, masking=recipe)
            out = m(input_ids=masked.to(cfg.device), token_type_ids=types.to(cfg.device),
                    attention_mask=attn.to(cfg.device), labels=labels.to(cfg.device),
                    next_sentence_label=nsp.to(cfg.device))
            return out.loss  # masked-LM loss + NSP loss

        opt = torch.optim.AdamW(model.parameters(), lr=size.lr, weight_decay=0.01, betas=(0.9, 0.98))
        hist = train_loop(model, opt, batches, loss_fn, size.steps, scheduler=_schedule(opt, size.steps),
                          clip_grad=1.0, progress=progress, desc="MLM + NSP pretraining")
        masked, labels = mask_for(tokenizer, val["input_ids"], generator=torch.Generator().manual_seed(7),
                                  evaluation=True)
        acc = masked_token_accuracy(model, masked, labels, token_type_ids=val["token_type_ids"],
                                    attention_mask=val["attention_mask"])
        nsp_acc = nsp_accuracy(model, val)
        _, base = most_frequent_baseline(corpus_ids(tokenizer, train_text), labels)
        return {"losses": [round(x, 4) for x in hist.losses], "nsp_accuracy": nsp_acc,
                "nsp_eval_pairs": n_val, "nsp_majority": float(max(val["next_sentence_label"].float().mean(),
                                          1 - val["next_sentence_label"].float().mean())),
                "top1": acc["top1"], "top5": acc["top5"], "baseline_top1": base,
                "parameters": count_parameters(model), "train_seconds": round(hist.seconds, 2)}

    config = {**size.as_dict(), "vocab": vocab_digest(tokenizer), "seed": cfg.seed, "pairs": n_train,
              "masking": recipe, "version": 3}
    model, meta = load_or_train("bert-nsp", cfg, config, build, train, retrain=retrain)
    return tokenizer, model, meta


@torch.no_grad()
def nsp_accuracy(model, pairs: dict[str, torch.Tensor], batch_size: int = 128) -> float:
    """Share of pairs whose next-sentence label ``BertForPreTraining`` predicts correctly.

    Args:
        pairs: the dict from :func:`pair_tensors`.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    n = len(pairs["next_sentence_label"])
    for s in range(0, n, batch_size):
        out = model(input_ids=pairs["input_ids"][s:s + batch_size].to(device),
                    token_type_ids=pairs["token_type_ids"][s:s + batch_size].to(device),
                    attention_mask=pairs["attention_mask"][s:s + batch_size].to(device))
        pred = out.seq_relationship_logits.argmax(-1).cpu()
        correct += int((pred == pairs["next_sentence_label"][s:s + batch_size]).sum())
    model.train(was_training)
    return correct / n


# =========================================================================== fill-mask
def _mask_inputs(model, tokenizer, texts: Sequence[str], longest: int = 128) -> dict[str, torch.Tensor]:
    """Tokenise ``texts`` (one ``[MASK]`` each) for ``model``, padded: int64 (B, T) tensors.

    A model knows only ``config.max_position_embeddings`` positions (the smoke BERT: 12), so a
    longer text is cut to the window of that many tokens centred on its ``[MASK]``.
    """
    limit = min(longest, int(getattr(model.config, "max_position_embeddings", longest)))
    rows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        if len(ids) > limit:
            body, keep = ids[1:-1], limit - 2
            centre = body.index(tokenizer.mask_token_id) if tokenizer.mask_token_id in body else 0
            start = min(max(0, centre - keep // 2), len(body) - keep)
            ids = [ids[0], *body[start:start + keep], ids[-1]]
        rows.append(ids)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.tensor(r)
        attention[i, :len(r)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": torch.zeros_like(input_ids)}


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, top_k: int = 5) -> list[tuple[str, float]]:
    """The ``top_k`` most probable tokens for the single ``[MASK]`` in ``text``.

    Returns:
        ``[(token, probability), ...]`` sorted by probability (what the transformers
        ``fill-mask`` pipeline reports as ``token_str`` and ``score``).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    found = tokenizer(text)["input_ids"].count(tokenizer.mask_token_id)
    if found != 1:
        raise ValueError(f"text must contain exactly one {tokenizer.mask_token}, found {found}")
    enc = _mask_inputs(model, tokenizer, [text])  # cut to the model's window around [MASK]
    where = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = _mlm_logits(model(**{k: v.to(device) for k, v in enc.items()
                                  if k in ("input_ids", "token_type_ids", "attention_mask")}))
    model.train(was_training)
    probs = logits[0, where[0]].softmax(-1)
    top = probs.topk(min(top_k, len(probs)))
    tokens = tokenizer.convert_ids_to_tokens(top.indices.tolist())
    return [(t, float(p)) for t, p in zip(tokens, top.values)]


def fill_mask_widget(models: dict, text: str = "to be or not to be , that is the [MASK] .",
                     top_k: int = 8):
    """An ipywidgets fill-mask explorer: a text box with ``[MASK]`` → a bar chart of the top-k.

    Args:
        models: ``{"name": (tokenizer, masked_lm_model), ...}``.

    Returns:
        An ``ipywidgets.interactive`` (display it; the static book shows its saved state).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .viz import bar_chart

    if not isinstance(models, dict) or not models:
        raise ValueError("models must be a non-empty dict name → (tokenizer, model)")

    def show(text: str, model: str, top_k: int):
        tokenizer, mlm = models[model]
        try:
            preds = fill_mask(mlm, tokenizer, text, top_k)
        except ValueError as exc:
            print(f"⚠ {exc}")
            return
        _, ax = plt.subplots(figsize=(6, 0.35 * top_k + 1.2))
        bar_chart([t for t, _ in preds], [p for _, p in preds], horizontal=True, ax=ax,
                  title=f"{model}: {text}"[:80], xlabel="probability", ylabel="predicted token")
        plt.tight_layout()
        plt.show()

    return widgets.interactive(
        show,
        text=widgets.Text(value=text, description="text", continuous_update=False,
                          layout=widgets.Layout(width="90%")),
        model=widgets.Dropdown(options=list(models), description="model"),
        top_k=widgets.IntSlider(value=top_k, min=1, max=15, description="top k"))


@dataclass(frozen=True)
class FillMaskItem:
    """A sentence with one word replaced by ``[MASK]`` and the hidden word."""

    text: str
    answer: str


def fill_mask_items(lines: Sequence[str], tokenizers: Sequence, n: int, *, seed: int = 0,
                    min_words: int = 5) -> list[FillMaskItem]:
    """A word-level fill-mask test that models with *different* vocabularies can share.

    Each item hides one word of a line; the word must be a single token in every tokenizer
    (so every model predicts it in one piece).  Items are drawn without repetition of lines.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not tokenizers:
        raise ValueError("tokenizers must name at least one tokenizer")
    vocabs = [tok.get_vocab() for tok in tokenizers]
    rng = random.Random(seed)
    order = list(range(len(lines)))
    rng.shuffle(order)
    items = []
    for i in order:
        line = lines[i]
        words = list(re.finditer(r"[A-Za-z]+", line))
        if len(words) < min_words:
            continue
        options = [w for w in words if len(w.group()) > 1 and all(w.group().lower() in v for v in vocabs)]
        if not options:
            continue
        w = rng.choice(options)
        items.append(FillMaskItem(line[:w.start()] + "[MASK]" + line[w.end():], w.group().lower()))
        if len(items) == n:
            break
    if not items:
        raise ValueError("lines gave no usable fill-mask item")
    return items


@torch.no_grad()
def fill_mask_accuracy(model, tokenizer, items: Sequence[FillMaskItem], *, batch_size: int = 64,
                       ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Share of :func:`fill_mask_items` whose hidden word is among the model's top-k tokens."""
    if not items:
        raise ValueError("items must not be empty")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hits = {k: 0 for k in ks}
    for s in range(0, len(items), batch_size):
        chunk = items[s:s + batch_size]
        enc = _mask_inputs(model, tokenizer, [it.text.replace("[MASK]", tokenizer.mask_token) for it in chunk])
        logits = _mlm_logits(model(**{k: v.to(device) for k, v in enc.items()
                                      if k in ("input_ids", "token_type_ids", "attention_mask")}))
        where = enc["input_ids"] == tokenizer.mask_token_id
        rows = where.float().argmax(1)
        top = logits[torch.arange(len(chunk), device=logits.device), rows.to(logits.device)]
        top = top.topk(max(ks), -1).indices.cpu()
        answers = torch.tensor([tokenizer.convert_tokens_to_ids(it.answer) for it in chunk])
        for k in ks:
            hits[k] += int((top[:, :k] == answers[:, None]).any(-1).sum())
    model.train(was_training)
    return {f"top{k}": hits[k] / len(items) for k in ks}


# =========================================================================== frozen MiniLM + MLM head
def minilm_masked_lm(device=None):
    """all-MiniLM-L6-v2 as a ``BertForMaskedLM``: the pretrained encoder, frozen, plus a fresh
    MLM head whose decoder is tied to the (frozen) word embeddings, as in BERT.

    Only the head's transform (dense + LayerNorm, 384→384) and its output bias are trainable.

    Returns:
        ``(tokenizer, model)``.
    """
    from transformers import BertForMaskedLM

    from .models import load_minilm

    tokenizer, encoder = load_minilm("encoder")
    torch.manual_seed(0)
    model = BertForMaskedLM(encoder.config)
    model.bert.load_state_dict(encoder.state_dict(), strict=False)  # the pooler is not used
    model.tie_weights()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in [*model.cls.predictions.transform.parameters(), model.cls.predictions.bias]:
        p.requires_grad_(True)
    if device is not None:
        model.to(device)
    return tokenizer, model.eval()


def minilm_mlm_head(cfg: LabConfig, *, retrain: bool = False, progress: bool = True):
    """Train only an MLM head on the frozen all-MiniLM-L6-v2 encoder (cached).

    The encoder never changes, so its last hidden states are computed once for a set of masked
    training windows (static masking, like the original BERT) and the head learns from them.

    Returns:
        ``(tokenizer, model, meta)``; ``meta["metrics"]`` has ``losses``, ``top1``/``top5`` on
        held-out masked tokens, ``trainable``, ``parameters`` and ``feature_seconds``.
    """
    from .checkpoints import load_or_train
    from .train import count_parameters, infinite_batches, train_loop

    max_len = 32
    n_windows = cfg.pick(smoke=480, cpu=4000, gpu=20000)
    steps = cfg.pick(smoke=150, cpu=800, gpu=4000)
    train_text, val_text = shakespeare_split()

    def build():
        return minilm_masked_lm()[1]

    def train(model):
        tok = _minilm_tokenizer()
        gen = torch.Generator().manual_seed(cfg.seed)
        train_ids = corpus_ids(tok, train_text)
        # Start the head as "copy the hidden state, then unigram prior": the transform is the
        # identity and the bias holds log token frequencies, so learning starts from sense.
        transform = model.cls.predictions.transform
        with torch.no_grad():
            transform.dense.weight.copy_(torch.eye(transform.dense.weight.shape[0]))
            transform.dense.bias.zero_()
        init_output_bias(model, train_ids)
        windows = text_windows(train_ids, tok, max_len, n=n_windows, generator=gen)
        masked, labels = mask_for(tok, windows, generator=gen)
        start = time.perf_counter()
        feats, targets = [], []
        with torch.no_grad():
            for s in range(0, len(masked), 64):
                hidden = model.bert(input_ids=masked[s:s + 64].to(cfg.device)).last_hidden_state
                lab = labels[s:s + 64].to(cfg.device)
                feats.append(hidden[lab != IGNORE_INDEX].cpu())
                targets.append(lab[lab != IGNORE_INDEX].cpu())
        feats, targets = torch.cat(feats), torch.cat(targets)
        feature_seconds = time.perf_counter() - start
        head = model.cls.predictions
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=2e-2, weight_decay=0.01)
        batches = infinite_batches(feats, targets, batch_size=128, generator=gen, device=cfg.device)
        hist = train_loop(head, opt, batches, lambda h, b: F.cross_entropy(h(b[0]), b[1]), steps,
                          scheduler=_schedule(opt, steps), progress=progress, desc="MLM head on frozen MiniLM")
        model.eval()
        eval_ids, eval_labels = mlm_eval_set(tok, max_len, 400)
        acc = masked_token_accuracy(model, eval_ids, eval_labels)
        return {"losses": [round(x, 4) for x in hist.losses], "top1": acc["top1"], "top5": acc["top5"],
                "trainable": count_parameters(model, trainable_only=True),
                "parameters": count_parameters(model), "feature_seconds": round(feature_seconds, 2),
                "masked_examples": len(targets)}

    config = {"windows": n_windows, "steps": steps, "max_len": max_len, "lr": 2e-2, "seed": cfg.seed, "version": 3}
    model, meta = load_or_train("bert-minilm-mlm-head", cfg, config, build, train, retrain=retrain)
    for p in model.parameters():
        p.requires_grad_(False)
    return _minilm_tokenizer(), model, meta


def _minilm_tokenizer():
    from transformers import AutoTokenizer

    from .models import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


def bert_base_masked_lm(device=None):
    """The real ``bert-base-uncased`` with its pretrained MLM head, or ``None`` when the hub
    is unreachable (offline, CI).  Returns ``(tokenizer, model)`` or ``None``."""
    from .models import hub_model_path

    path = hub_model_path("bert-base-uncased")
    if path is None:
        return None
    from transformers import AutoTokenizer, BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(path)
    if device is not None:
        model.to(device)
    return AutoTokenizer.from_pretrained(path), model.eval()

# =========================================================================== bench
