"""Checks for the BERT lab: masking recipe, next-sentence pairs, masked-LM loss, top-k fill-mask.

Each check runs the learner's function on fixed, seeded inputs and compares it with the tested
reference in :mod:`genai_lab.bert` (or with transformers itself), saying what differed.
"""

from __future__ import annotations

from typing import Callable

from . import Exercise, run_check

# A toy vocabulary: ids 0..4 are [PAD], [UNK], [CLS], [SEP], [MASK]; 5..99 are ordinary tokens.
PAD, UNK, CLS, SEP, MASK, VOCAB = 0, 1, 2, 3, 4, 100
SPECIAL = (PAD, UNK, CLS, SEP, MASK)


def toy_batch(rows: int = 400, length: int = 64, seed: int = 0):
    """``[CLS] tokens… [SEP] [PAD]…`` rows of random ordinary ids, int64 ``(rows, length)``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=g)
    lengths = torch.randint(length // 2, length, (rows,), generator=g)
    for r, n in enumerate(lengths.tolist()):
        ids[r, 0], ids[r, n - 1] = CLS, SEP
        ids[r, n:] = PAD
    return ids


def _within(name: str, value: float, target: float, tol: float) -> str | None:
    if abs(value - target) > tol:
        return f"{name} is {value:.3f}, expected {target:.2f} ± {tol:.2f}"
    return None


def check_mask_tokens(fn: Callable) -> object:
    """``fn(input_ids, mask_token_id=, vocab_size=, special_token_ids=, mlm_probability=,
    generator=) -> (masked_ids, labels)`` follows the BERT recipe over 25k tokens."""
    import torch

    from ..bert import IGNORE_INDEX, masking_statistics

    def body():
        ids = toy_batch()
        kwargs = dict(mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=SPECIAL)
        out = fn(ids.clone(), generator=torch.Generator().manual_seed(1), **kwargs)
        if not isinstance(out, tuple) or len(out) != 2:
            return "must return a tuple (masked_ids, labels)"
        masked, labels = out
        for name, t in (("masked_ids", masked), ("labels", labels)):
            if not isinstance(t, torch.Tensor) or t.shape != ids.shape or t.dtype != torch.long:
                return f"{name} must be an int64 tensor of shape {tuple(ids.shape)}"
        if not ((labels == IGNORE_INDEX) | (labels >= 0)).all():
            return f"labels must be -100 (ignored) or a token id"
        stats = masking_statistics(ids, masked, labels, mask_token_id=MASK, special_token_ids=SPECIAL)
        if stats["special_selected"]:
            return f"{stats['special_selected']} special/padding tokens were selected; they never should be"
        if stats["labels_wrong"]:
            return f"{stats['labels_wrong']} selected positions have a label other than the original id"
        if stats["unselected_changed"]:
            return (f"{stats['unselected_changed']} tokens were changed although their label is -100: "
                    "only selected tokens may change")
        if stats["random_special"]:
            return f"{stats['random_special']} random replacements are special tokens; draw ordinary ids"
        for key, target, tol in (("selected", 0.15, 0.01), ("as_mask", 0.8, 0.025),
                                 ("as_random", 0.1, 0.02), ("as_unchanged", 0.1, 0.02)):
            msg = _within(f"share {key}", stats[key], target, tol)
            if msg:
                return msg
        again = fn(ids.clone(), generator=torch.Generator().manual_seed(1), **kwargs)
        if not (torch.equal(again[0], masked) and torch.equal(again[1], labels)):
            return "the same generator seed must give the same mask (use the generator for every draw)"
        more = fn(ids.clone(), mlm_probability=0.3, generator=torch.Generator().manual_seed(2), **kwargs)
        share = masking_statistics(ids, more[0], more[1], mask_token_id=MASK,
                                   special_token_ids=SPECIAL)["selected"]
        return _within("share selected with mlm_probability=0.3", share, 0.3, 0.015)

    return run_check("mask_tokens (15 %; 80/10/10; specials never selected)", body)


def check_nsp_pairs(fn: Callable) -> object:
    """``fn(documents, n_pairs, generator=) -> [(a, b, label)]``: label 0 = true next sentence,
    1 = a random sentence from another document, about half each."""
    import torch

    def body():
        docs = [[f"d{d}s{i}" for i in range(2 + d % 4)] for d in range(40)]
        pairs = fn(docs, 4000, generator=torch.Generator().manual_seed(0))
        if not isinstance(pairs, list) or len(pairs) != 4000:
            return f"must return a list of 4000 pairs, got {type(pairs).__name__} of length {len(pairs)}"
        where = {s: (d, i) for d, doc in enumerate(docs) for i, s in enumerate(doc)}
        for k, pair in enumerate(pairs):
            if not isinstance(pair, tuple) or len(pair) != 3:
                return f"pair {k} must be a tuple (sentence_a, sentence_b, label), got {pair!r}"
            a, b, label = pair
            if label not in (0, 1):
                return f"pair {k} has label {label!r}; use 0 (IsNext) or 1 (NotNext)"
            (da, ia), (db, ib) = where[a], where[b]
            if ia == len(docs[da]) - 1:
                return f"pair {k}: sentence A {a!r} is the last of its document, so it has no next sentence"
            if label == 0 and (db, ib) != (da, ia + 1):
                return f"pair {k} is labelled IsNext (0) but {b!r} does not follow {a!r}"
            if label == 1 and db == da:
                return f"pair {k} is labelled NotNext (1) but {b!r} comes from the same document as {a!r}"
        share = sum(p[2] == 0 for p in pairs) / len(pairs)
        msg = _within("share of IsNext pairs", share, 0.5, 0.03)
        if msg:
            return msg
        again = fn(docs, 50, generator=torch.Generator().manual_seed(5))
        if again != fn(docs, 50, generator=torch.Generator().manual_seed(5)):
            return "the same generator seed must give the same pairs"
        return None

    return run_check("nsp_pairs (50 % IsNext; NotNext from another document)", body)


def check_masked_lm_loss(fn: Callable) -> object:
    """``fn(logits (B, T, V), labels (B, T)) -> scalar``: equals the loss ``BertForMaskedLM``
    computes itself, i.e. cross-entropy on labelled positions only."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    def body():
        torch.manual_seed(0)
        model = BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=64,
                                           max_position_embeddings=64)).eval()
        from ..bert import mask_tokens

        ids = toy_batch(rows=8, length=24, seed=3)
        masked, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=SPECIAL,
                                     generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            out = model(input_ids=masked, labels=labels)
        loss = fn(out.logits, labels)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            return f"must return a scalar tensor, got {getattr(loss, 'shape', type(loss).__name__)}"
        all_positions = torch.nn.functional.cross_entropy(out.logits.reshape(-1, VOCAB), ids.reshape(-1))
        if abs(float(loss) - float(out.loss)) > 1e-4:
            hint = (" (that is the loss over every position: ignore the -100 labels)"
                    if abs(float(loss) - float(all_positions)) < 1e-4 else "")
            return f"loss is {float(loss):.5f}, BertForMaskedLM computes {float(out.loss):.5f}{hint}"
        logits = torch.randn(2, 5, 7, requires_grad=True)
        labels = torch.tensor([[-100, 3, -100, -100, 6], [0, -100, -100, -100, -100]])
        fn(logits, labels).backward()
        if logits.grad is None or logits.grad[0, 0].abs().sum() != 0:
            return "positions labelled -100 must not receive any gradient"
        return None

    return run_check("masked_lm_loss (ignore_index = -100)", body)


def check_top_k_tokens(fn: Callable) -> object:
    """``fn(logits (V,), k) -> (probabilities (k,), ids (k,))``: the softmax probabilities of the
    k most likely tokens, largest first."""
    import torch

    def body():
        g = torch.Generator().manual_seed(0)
        for k in (1, 5):
            logits = torch.randn(50, generator=g) * 3
            out = fn(logits, k)
            if not isinstance(out, tuple) or len(out) != 2:
                return "must return a tuple (probabilities, ids)"
            probs, ids = out
            want = logits.softmax(-1).topk(k)
            if tuple(probs.shape) != (k,) or tuple(ids.shape) != (k,):
                return f"with k={k} both results must have shape ({k},), got {tuple(probs.shape)}, {tuple(ids.shape)}"
            if not torch.equal(ids.long(), want.indices):
                return f"with k={k} the ids are {ids.tolist()}, expected {want.indices.tolist()}"
            if not torch.allclose(probs, want.values, atol=1e-6):
                return (f"with k={k} the probabilities are {[round(p, 4) for p in probs.tolist()]}, expected "
                        f"{[round(p, 4) for p in want.values.tolist()]} (softmax over the whole vocabulary)")
        return None

    return run_check("top_k_tokens (fill-mask probabilities)", body)


# --------------------------------------------------------------------------- the lab's exercises
# ``mask_tokens.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/bert.py).
mask_tokens = Exercise(
    "bert", "mask_tokens", check_mask_tokens, ("mask_tokens",),
    "build three boolean tables of shape (B, T): which tokens are special, which are selected "
    "(one uniform draw per position against mlm_probability, never a special one), and, from a "
    "second uniform draw, which selected tokens become [MASK] and which a random id. Random ids "
    "come from the ordinary (non-special) ids only. Take every draw from generator.")
nsp_pairs = Exercise(
    "bert", "nsp_pairs", check_nsp_pairs, ("nsp_pairs",),
    "first list every (document, sentence) position that has a next sentence, and pick among "
    "those. For the NotNext case draw a document index that skips the current one (draw from one "
    "fewer and shift).")
masked_lm_loss = Exercise(
    "bert", "masked_lm_loss", check_masked_lm_loss, ("masked_lm_loss",),
    "F.cross_entropy wants the scores as (N, V) and the targets as (N,): flatten batch and time "
    "together. It already knows how to skip a label value; look at its keyword arguments.")
top_k_tokens = Exercise(
    "bert", "top_k_tokens", check_top_k_tokens, ("top_k_tokens",),
    "normalise over the whole vocabulary first, then take the k largest; the other order gives "
    "probabilities that sum to 1 over k tokens only.")
