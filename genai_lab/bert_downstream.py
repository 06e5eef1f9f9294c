"""Using a pretrained encoder downstream: who speaks this speech? Feature extraction vs fine-tuning.

The third part of :mod:`genai_lab.bert` (which re-exports every name here):
:func:`speaker_dataset` builds the task from Tiny Shakespeare, :func:`train_speaker_classifier`
solves it with a frozen encoder plus a linear head or by fine-tuning everything, and
:func:`downstream_settings` / :func:`downstream_encoder` pick the encoder and budget per profile.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .bert import _schedule, pretrain_mlm
from .bert_data import _check_fraction, parse_speeches
from .config import LabConfig

# =========================================================================== downstream task
@dataclass
class SpeakerData:
    """Who says this speech?  ``*_labels`` are int64 ``(N,)`` indices into ``speakers``."""

    train_texts: list[str]
    train_labels: torch.Tensor
    test_texts: list[str]
    test_labels: torch.Tensor
    speakers: tuple[str, ...]


def speaker_dataset(text: str | None = None, n_speakers: int = 4, *, test_fraction: float = 0.2,
                    seed: int = 0) -> SpeakerData:
    """A balanced classification task from the corpus: the speeches of the ``n_speakers`` most
    frequent speakers, equally many each, split at random into train and test.

    The speeches come from the whole corpus (the speakers of one play are not spread over the
    90/10 split); pretraining saw the text but never the speaker labels.
    """
    from .data import load_tiny_shakespeare

    if not isinstance(n_speakers, int) or n_speakers < 2:
        raise ValueError(f"n_speakers must be an int ≥ 2, got {n_speakers!r}")
    _check_fraction(test_fraction, "test_fraction")
    speeches = parse_speeches(text if text is not None else load_tiny_shakespeare())
    counts: dict[str, int] = {}
    for s in speeches:
        counts[s.speaker] = counts.get(s.speaker, 0) + 1
    speakers = tuple(sorted(counts, key=lambda k: (-counts[k], k))[:n_speakers])
    if len(speakers) < n_speakers:
        raise ValueError(f"n_speakers={n_speakers} but the text has only {len(speakers)} speakers")
    per = min(counts[s] for s in speakers)
    rng = random.Random(seed)
    train, test = [], []
    for label, who in enumerate(speakers):
        mine = [" ".join(s.lines) for s in speeches if s.speaker == who]
        rng.shuffle(mine)
        mine = mine[:per]
        cut = int(round(per * (1 - test_fraction)))
        train += [(t, label) for t in mine[:cut]]
        test += [(t, label) for t in mine[cut:]]
    rng.shuffle(train)
    return SpeakerData([t for t, _ in train], torch.tensor([y for _, y in train]),
                       [t for t, _ in test], torch.tensor([y for _, y in test]), speakers)


class SpeakerClassifier(torch.nn.Module):
    """A BERT encoder, mean pooling over real tokens, and one linear layer.

    ``forward(input_ids (B, T), attention_mask (B, T)) -> logits (B, n_classes)``.
    """

    def __init__(self, encoder, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.config.hidden_size, n_classes)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over non-padding tokens, ``(B, hidden)``."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(input_ids, attention_mask))


@dataclass
class ClassifierResult:
    mode: str
    accuracy: float
    trainable: int
    total: int
    seconds: float
    losses: list[float]


def train_speaker_classifier(encoder, tokenizer, data: SpeakerData, *, mode: str, steps: int,
                             lr: float, batch_size: int = 32, max_len: int = 64, seed: int = 0,
                             device=None, progress: bool = True) -> ClassifierResult:
    """Solve :func:`speaker_dataset` with a pretrained encoder in one of two ways.

    - ``mode="frozen"`` (feature extraction, 転移学習): the encoder is frozen; its pooled
      features are computed once and only the linear head (hidden×classes + classes) learns.
    - ``mode="finetune"`` (ファインチューニング): a copy of the encoder and the head all learn.

    Returns a :class:`ClassifierResult` (test accuracy, trainable/total parameters, seconds).
    """
    from .train import count_parameters, infinite_batches, train_loop

    if mode not in ("frozen", "finetune"):
        raise ValueError(f"mode must be 'frozen' or 'finetune', got {mode!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    device = device or next(encoder.parameters()).device
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SpeakerClassifier(copy.deepcopy(encoder), len(data.speakers)).to(device)
    enc_tr = tokenizer(data.train_texts, truncation=True, max_length=max_len, padding="max_length",
                       return_tensors="pt")
    enc_te = tokenizer(data.test_texts, truncation=True, max_length=max_len, padding="max_length",
                       return_tensors="pt")
    start = time.perf_counter()
    if mode == "frozen":
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        model.eval()

        @torch.no_grad()
        def features(enc):
            return torch.cat([model.pooled(enc["input_ids"][s:s + 64].to(device),
                                           enc["attention_mask"][s:s + 64].to(device))
                              for s in range(0, len(enc["input_ids"]), 64)])

        f_tr, f_te = features(enc_tr), features(enc_te)
        opt = torch.optim.AdamW(model.head.parameters(), lr=lr, weight_decay=0.01)
        batches = infinite_batches(f_tr, data.train_labels.to(device), batch_size=batch_size, generator=gen)
        hist = train_loop(model.head, opt, batches, lambda h, b: F.cross_entropy(h(b[0]), b[1]), steps,
                          progress=progress, desc="linear head on frozen features")
        with torch.no_grad():
            acc = float((model.head(f_te).argmax(-1).cpu() == data.test_labels).float().mean())
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        batches = infinite_batches(enc_tr["input_ids"], enc_tr["attention_mask"], data.train_labels,
                                   batch_size=batch_size, generator=gen, device=device)
        hist = train_loop(model, opt, batches, lambda m, b: F.cross_entropy(m(b[0], b[1]), b[2]), steps,
                          scheduler=_schedule(opt, steps), clip_grad=1.0, progress=progress,
                          desc="full fine-tuning")
        model.eval()
        with torch.no_grad():
            preds = torch.cat([model(enc_te["input_ids"][s:s + 64].to(device),
                                     enc_te["attention_mask"][s:s + 64].to(device)).argmax(-1).cpu()
                               for s in range(0, len(data.test_labels), 64)])
        acc = float((preds == data.test_labels).float().mean())
    return ClassifierResult(mode, acc, count_parameters(model, trainable_only=True),
                            count_parameters(model), time.perf_counter() - start, hist.losses)


def downstream_settings(cfg: LabConfig) -> dict:
    """Which encoder and how many steps the downstream comparison uses in each profile."""
    return cfg.pick(
        smoke={"encoder": "scratch", "frozen_steps": 300, "finetune_steps": 80, "frozen_lr": 3e-3,
               "finetune_lr": 5e-4, "max_len": 12},  # the smoke BERT knows 12 positions
        cpu={"encoder": "minilm", "frozen_steps": 600, "finetune_steps": 150, "frozen_lr": 3e-3,
             "finetune_lr": 5e-5, "max_len": 64},
        gpu={"encoder": "minilm", "frozen_steps": 1000, "finetune_steps": 400, "frozen_lr": 3e-3,
             "finetune_lr": 5e-5, "max_len": 96})


def downstream_encoder(cfg: LabConfig, which: str | None = None):
    """``(tokenizer, BertModel)``: the from-scratch MLM encoder or all-MiniLM-L6-v2."""
    which = which or downstream_settings(cfg)["encoder"]
    if which == "scratch":
        tokenizer, mlm, _ = pretrain_mlm(cfg, progress=False)
        return tokenizer, mlm.bert
    if which == "minilm":
        from .models import load_minilm

        tokenizer, encoder = load_minilm("encoder", device=cfg.device)
        return tokenizer, encoder
    raise ValueError(f"which must be 'scratch' or 'minilm', got {which!r}")
