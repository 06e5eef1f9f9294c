"""BERT's training signal from plain text: the masking recipe, next-sentence pairs, a WordPiece vocabulary.

The first part of :mod:`genai_lab.bert` (which re-exports every name here), in the order the
chapter uses it:

- :func:`mask_tokens` — the masked-LM recipe (15 % of the ordinary tokens selected; of those 80 %
  become ``[MASK]``, 10 % a random token, 10 % stay), :func:`masking_statistics` to verify it and
  :func:`masked_lm_loss`.
- :func:`parse_speeches` / :func:`nsp_pairs` — Tiny Shakespeare as speeches, and sentence pairs for
  next-sentence prediction (half true continuations, half random lines from another speech).
- :func:`train_wordpiece` / :func:`shakespeare_wordpiece` — a WordPiece tokenizer trained with
  ``tokenizers`` and wrapped in ``PreTrainedTokenizerFast``.
- :func:`text_windows`, :func:`masking_recipe`, :func:`mask_for` — masked training windows with a
  tokenizer's ids.

Labels follow the transformers conventions: ``-100`` (:data:`IGNORE_INDEX`) marks positions that
the MLM loss ignores, and ``next_sentence_label`` is 0 for "B follows A", 1 for "B is random".
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .config import cache_dir

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
IGNORE_INDEX = -100
IS_NEXT, NOT_NEXT = 0, 1


# =========================================================================== masking
def _check_ids(input_ids, name: str = "input_ids") -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dtype != torch.long:
        raise TypeError(f"{name} must hold int64 token ids, got {input_ids.dtype}")


def _check_fraction(value, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def mask_tokens(input_ids: torch.Tensor, *, mask_token_id: int, vocab_size: int,
                special_token_ids: Sequence[int], mlm_probability: float = 0.15,
                mask_fraction: float = 0.8, random_fraction: float = 0.1,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch for masked-language-model training (the BERT recipe).

    Each ordinary token is *selected* with probability ``mlm_probability``; special tokens
    (``[CLS]``, ``[SEP]``, ``[PAD]``… listed in ``special_token_ids``) never are.  A selected
    token becomes ``[MASK]`` with probability ``mask_fraction``, a random ordinary token with
    probability ``random_fraction``, and stays unchanged otherwise.

    Args:
        input_ids: int64 ``(B, T)`` (or any shape) token ids.
        mask_token_id: id of ``[MASK]``.
        vocab_size: number of ids; random replacements are drawn from the non-special ones.
        special_token_ids: ids that are never selected (must include padding).
        generator: a ``torch.Generator`` for repeatable masks.

    Returns:
        ``(masked_ids, labels)``, both int64 with the shape of ``input_ids``: ``masked_ids`` is
        the corrupted input; ``labels`` holds the original id at selected positions and
        :data:`IGNORE_INDEX` (-100) everywhere else.
    """
    _check_ids(input_ids)
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int ≥ 2, got {vocab_size!r}")
    if not isinstance(mask_token_id, int) or not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id must be an id in [0, {vocab_size}), got {mask_token_id!r}")
    special = sorted({int(i) for i in special_token_ids})
    if mask_token_id not in special:
        special.append(mask_token_id)
    _check_fraction(mlm_probability, "mlm_probability")
    _check_fraction(mask_fraction, "mask_fraction")
    _check_fraction(random_fraction, "random_fraction")
    if mask_fraction + random_fraction > 1.0 + 1e-9:
        raise ValueError(f"mask_fraction + random_fraction must be ≤ 1, got "
                         f"{mask_fraction} + {random_fraction}")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(f"input_ids must lie in [0, vocab_size={vocab_size})")
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special)], dtype=torch.long)
    if len(ordinary) == 0:
        raise ValueError("special_token_ids must leave at least one ordinary token id")

    device = input_ids.device
    is_special = torch.isin(input_ids, torch.tensor(special, dtype=torch.long, device=device))
    draw = torch.rand(input_ids.shape, generator=generator).to(device)
    selected = (draw < mlm_probability) & ~is_special
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))

    choice = torch.rand(input_ids.shape, generator=generator).to(device)
    to_mask = selected & (choice < mask_fraction)
    to_random = selected & (choice >= mask_fraction) & (choice < mask_fraction + random_fraction)
    random_ids = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)].to(device)
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_ids, masked)
    return masked, labels


def masking_statistics(input_ids: torch.Tensor, masked_ids: torch.Tensor, labels: torch.Tensor, *,
                       mask_token_id: int, special_token_ids: Sequence[int]) -> dict[str, float]:
    """Measure what a masking function did (to verify :func:`mask_tokens` or a learner's version).

    Args:
        input_ids, masked_ids, labels: int64 tensors of one shape (before, after, MLM labels).

    Returns:
        ``selected``: share of ordinary tokens selected (≈ 0.15); ``as_mask``, ``as_random``,
        ``as_unchanged``: shares of the selected tokens that became ``[MASK]``, another token, or
        stayed (≈ 0.8 / 0.1 / 0.1); ``special_selected``: number of special tokens selected (0);
        ``unselected_changed``: number of unselected tokens that were altered (0);
        ``labels_wrong``: selected positions whose label is not the original id (0);
        ``random_special``: random replacements that are special tokens (0).
    """
    for name, t in (("input_ids", input_ids), ("masked_ids", masked_ids), ("labels", labels)):
        _check_ids(t, name)
    if not (input_ids.shape == masked_ids.shape == labels.shape):
        raise ValueError(f"input_ids, masked_ids and labels must share a shape, got {tuple(input_ids.shape)}, "
                         f"{tuple(masked_ids.shape)}, {tuple(labels.shape)}")
    special = torch.tensor(sorted({int(i) for i in special_token_ids} | {mask_token_id}), dtype=torch.long)
    is_special = torch.isin(input_ids.cpu(), special)
    input_ids, masked_ids, labels = input_ids.cpu(), masked_ids.cpu(), labels.cpu()
    selected = labels != IGNORE_INDEX
    n_sel = int(selected.sum())
    as_mask = selected & (masked_ids == mask_token_id)
    as_same = selected & (masked_ids == input_ids)
    as_random = selected & ~as_mask & ~as_same
    return {
        "selected": n_sel / max(1, int((~is_special).sum())),
        "as_mask": int(as_mask.sum()) / max(1, n_sel),
        "as_random": int(as_random.sum()) / max(1, n_sel),
        "as_unchanged": int(as_same.sum()) / max(1, n_sel),
        "special_selected": int((selected & is_special).sum()),
        "unselected_changed": int((~selected & (masked_ids != input_ids)).sum()),
        "labels_wrong": int((selected & (labels != input_ids)).sum()),
        "random_special": int((as_random & torch.isin(masked_ids, special)).sum()),
    }


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the masked positions only.

    Args:
        logits: float ``(B, T, V)`` scores over the vocabulary.
        labels: int64 ``(B, T)``; :data:`IGNORE_INDEX` (-100) where nothing is to be predicted.

    Returns:
        A scalar: the mean negative log-likelihood of the original token at labelled positions
        (what ``BertForMaskedLM`` computes when given ``labels``).
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        raise ValueError(f"logits must be a (B, T, V) tensor, got {getattr(logits, 'shape', type(logits))}")
    _check_ids(labels, "labels")
    if labels.shape != logits.shape[:2]:
        raise ValueError(f"labels must have shape {tuple(logits.shape[:2])}, got {tuple(labels.shape)}")
    if not (labels != IGNORE_INDEX).any():
        raise ValueError("labels must mark at least one position to predict (all are -100)")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


# =========================================================================== corpus
@dataclass(frozen=True)
class Speech:
    """One speech of a play: who speaks and the verse/prose lines they say."""

    speaker: str
    lines: tuple[str, ...]


def parse_speeches(text: str) -> list[Speech]:
    """Split Tiny-Shakespeare-style text (``"NAME:\\nline\\nline\\n\\n"``) into speeches."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty str")
    speeches = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in block.strip("\n").split("\n") if ln.strip()]
        if len(lines) >= 2 and lines[0].endswith(":") and len(lines[0]) < 40:
            speeches.append(Speech(lines[0][:-1], tuple(lines[1:])))
    return speeches


def nsp_pairs(documents: Sequence[Sequence[str]], n_pairs: int, *,
              generator: torch.Generator | None = None) -> list[tuple[str, str, int]]:
    """Sentence pairs for next-sentence prediction.

    Sentence A is a random sentence that has a successor in its document.  With probability
    1/2 sentence B is that successor (label :data:`IS_NEXT` = 0); otherwise B is a random
    sentence from a *different* document (label :data:`NOT_NEXT` = 1).

    Args:
        documents: e.g. the lines of each speech (at least two documents, one with ≥ 2 lines).
        n_pairs: how many pairs to draw.
        generator: a ``torch.Generator`` for repeatable pairs.

    Returns:
        ``[(sentence_a, sentence_b, label), ...]`` of length ``n_pairs``.
    """
    if not isinstance(documents, Sequence) or isinstance(documents, str):
        raise TypeError(f"documents must be a sequence of sentence lists, got {type(documents).__name__}")
    if not isinstance(n_pairs, int) or isinstance(n_pairs, bool) or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive int, got {n_pairs!r}")
    docs = [list(d) for d in documents if len(d) > 0]
    if len(docs) < 2:
        raise ValueError("documents must hold at least two non-empty documents")
    starts = [(d, i) for d, doc in enumerate(docs) for i in range(len(doc) - 1)]
    if not starts:
        raise ValueError("documents must contain a document with at least two sentences")
    pairs = []
    for _ in range(n_pairs):
        d, i = starts[int(torch.randint(len(starts), (1,), generator=generator))]
        if float(torch.rand(1, generator=generator)) < 0.5:
            pairs.append((docs[d][i], docs[d][i + 1], IS_NEXT))
        else:
            other = int(torch.randint(len(docs) - 1, (1,), generator=generator))
            other += other >= d  # any document but d
            j = int(torch.randint(len(docs[other]), (1,), generator=generator))
            pairs.append((docs[d][i], docs[other][j], NOT_NEXT))
    return pairs


# =========================================================================== tokenizer
def train_wordpiece(texts: Sequence[str], vocab_size: int, *, min_frequency: int = 2,
                    model_max_length: int = 512):
    """Train a lower-casing BERT-style WordPiece tokenizer and wrap it for transformers.

    Args:
        texts: training text, e.g. the lines of the training split.
        vocab_size: target vocabulary size, special tokens included (≥ 100).

    Returns:
        A ``PreTrainedTokenizerFast`` with ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4`` that
        adds ``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]`` and token type ids like BERT.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise TypeError("texts must be a non-empty sequence of str (e.g. a list of lines)")
    if not isinstance(vocab_size, int) or vocab_size < 100:
        raise ValueError(f"vocab_size must be an int ≥ 100, got {vocab_size!r}")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=model_max_length,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def vocab_digest(tokenizer) -> str:
    """A short hash of a tokenizer's vocabulary (part of every checkpoint key that depends on it)."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:10]


def shakespeare_wordpiece(vocab_size: int):
    """The WordPiece tokenizer of the Tiny Shakespeare training split, trained once and cached.

    WordPiece training is not bit-for-bit repeatable (ties are broken in hash order), so the
    tokenizer is saved under ``<cache>/tokenizers/`` and every model trained with it stores
    :func:`vocab_digest` in its checkpoint key.
    """
    from transformers import PreTrainedTokenizerFast

    from .data import load_tiny_shakespeare, train_val_split

    if not isinstance(vocab_size, int) or vocab_size < 100:
        raise ValueError(f"vocab_size must be an int ≥ 100, got {vocab_size!r}")
    folder = cache_dir() / "tokenizers" / f"shakespeare-wordpiece-{vocab_size}"
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    train_text, _ = train_val_split(load_tiny_shakespeare())
    tokenizer = train_wordpiece(train_text.splitlines(), vocab_size)
    tmp = folder.with_name(folder.name + f".tmp{time.time_ns()}")
    tokenizer.save_pretrained(str(tmp))
    try:
        tmp.replace(folder)
    except OSError:  # another process saved it first: use theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def special_ids(tokenizer) -> list[int]:
    """Ids of the tokenizer's special tokens ([PAD], [CLS], [SEP], [MASK], [UNK]…)."""
    return sorted(set(tokenizer.all_special_ids))


# =========================================================================== windows and the masking recipe
def corpus_ids(tokenizer, text: str) -> torch.Tensor:
    """The token ids of ``text`` without special tokens, int64 ``(N,)``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def text_windows(ids: torch.Tensor, tokenizer, max_len: int, *, n: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``[CLS] w_1 … w_{max_len-2} [SEP]`` windows of running text, int64 ``(n, max_len)``.

    Random starts when ``generator`` is given; otherwise consecutive non-overlapping windows
    from the start (a fixed evaluation set).
    """
    from .text import random_windows

    span = max_len - 2
    if generator is not None:
        body, _ = random_windows(ids, span, n, generator=generator)
    else:
        count = (len(ids) - 1) // span if n is None else min(n, (len(ids) - 1) // span)
        body = ids[: count * span].view(count, span)
    cls = torch.full((len(body), 1), tokenizer.cls_token_id, dtype=torch.long)
    sep = torch.full((len(body), 1), tokenizer.sep_token_id, dtype=torch.long)
    return torch.cat([cls, body, sep], dim=1)


#: BERT's masking recipe: select 15 % of ordinary tokens; of those 80 % ``[MASK]``, 10 % random, 10 % kept
DEFAULT_MASKING = {"mlm_probability": 0.15, "mask_fraction": 0.8, "random_fraction": 0.1}


def masking_recipe(mlm_probability: float = 0.15, mask_fraction: float = 0.8, random_fraction: float = 0.1) -> dict:
    """A checked masking recipe (the keyword arguments of :func:`mask_tokens`), as a dict.

    Pretraining functions store it in their checkpoint key, so a changed recipe retrains.
    """
    _check_fraction(mlm_probability, "mlm_probability")
    _check_fraction(mask_fraction, "mask_fraction")
    _check_fraction(random_fraction, "random_fraction")
    if mlm_probability == 0.0:
        raise ValueError("mlm_probability must be above 0: with nothing selected there is nothing to learn")
    if mask_fraction + random_fraction > 1.0 + 1e-9:
        raise ValueError(f"mask_fraction + random_fraction must be ≤ 1, got {mask_fraction} + {random_fraction}")
    return {"mlm_probability": float(mlm_probability), "mask_fraction": float(mask_fraction),
            "random_fraction": float(random_fraction)}


def mask_for(tokenizer, input_ids: torch.Tensor, *, generator=None, evaluation: bool = False,
             masking: dict | None = None):
    """:func:`mask_tokens` with ``tokenizer``'s ids and a recipe from :func:`masking_recipe`
    (default: BERT's); ``evaluation=True`` turns every selected token into ``[MASK]`` (no
    random/unchanged: the honest fill-mask test; it keeps the recipe's ``mlm_probability``)."""
    recipe = dict(DEFAULT_MASKING if masking is None else masking)
    if evaluation:
        recipe.update(mask_fraction=1.0, random_fraction=0.0)
    return mask_tokens(input_ids, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                       special_token_ids=special_ids(tokenizer), generator=generator, **recipe)
