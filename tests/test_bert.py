"""Tests for genai_lab.bert: masking recipe, NSP pairs, tokenizer, losses, fill-mask, encoders."""

from __future__ import annotations

import pytest
import torch

from genai_lab import bert, bert_downstream
from genai_lab.checks import bert as bert_checks

TOY_TEXT = """First Citizen:
Before we proceed any further, hear me speak.
You are all resolved rather to die than to famish?

All:
Resolved. resolved.

First Citizen:
First, you know Caius Marcius is chief enemy to the people.

Second Citizen:
One word, good citizens.
We are accounted poor citizens, the patricians good.
What authority surfeits on would relieve us.
"""


def tiny_mlm(vocab_size: int = 100, seed: int = 0, max_positions: int = 64):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    return BertForMaskedLM(BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=64,
                                      max_position_embeddings=max_positions)).eval()


@pytest.fixture(scope="module")
def toy_tokenizer():
    lines = TOY_TEXT.splitlines() * 20
    return bert.train_wordpiece(lines, vocab_size=120, min_frequency=1)


# --------------------------------------------------------------------------- masking
def masked_toy_batch(rows: int, length: int, *, seed: int = 0, mask_seed: int = 0):
    """A toy batch (ids 0-3 special, 4 = [MASK], vocabulary 100) and its BERT masking."""
    ids = bert_checks.toy_batch(rows=rows, length=length, seed=seed)
    masked, labels = bert.mask_tokens(ids, mask_token_id=4, vocab_size=100, special_token_ids=(0, 1, 2, 3),
                                      generator=torch.Generator().manual_seed(mask_seed))
    return ids, masked, labels


def test_mask_tokens_follows_the_bert_recipe_over_many_draws():
    ids, masked, labels = masked_toy_batch(1000, 64)
    stats = bert.masking_statistics(ids, masked, labels, mask_token_id=4, special_token_ids=(0, 1, 2, 3))
    # ~48k ordinary tokens → ~7.2k selected: binomial std of the shares is < 0.5 %
    assert abs(stats["selected"] - 0.15) < 0.006
    assert abs(stats["as_mask"] - 0.8) < 0.015
    assert abs(stats["as_random"] - 0.1) < 0.012
    assert abs(stats["as_unchanged"] - 0.1) < 0.012
    assert stats["special_selected"] == stats["unselected_changed"] == 0
    assert stats["labels_wrong"] == stats["random_special"] == 0
    assert (masked[ids == 0] == 0).all() and (labels[ids == 0] == bert.IGNORE_INDEX).all()


def test_mask_tokens_is_repeatable_and_follows_its_probabilities():
    ids = bert_checks.toy_batch(rows=300)
    kw = dict(mask_token_id=4, vocab_size=100, special_token_ids=bert_checks.SPECIAL)
    a = bert.mask_tokens(ids, generator=torch.Generator().manual_seed(3), **kw)
    b = bert.mask_tokens(ids, generator=torch.Generator().manual_seed(3), **kw)
    c = bert.mask_tokens(ids, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    all_mask = bert.mask_tokens(ids, mlm_probability=0.5, mask_fraction=1.0, random_fraction=0.0,
                                generator=torch.Generator().manual_seed(0), **kw)
    stats = bert.masking_statistics(ids, *all_mask, mask_token_id=4, special_token_ids=bert_checks.SPECIAL)
    assert abs(stats["selected"] - 0.5) < 0.01 and stats["as_mask"] == 1.0


def test_reference_mask_tokens_passes_the_lab_check():
    assert bert_checks.check_mask_tokens(bert.mask_tokens).passed


def test_lab_check_catches_a_wrong_masking_function():
    def selects_specials(input_ids, *, mask_token_id, vocab_size, special_token_ids, mlm_probability=0.15,
                         generator=None):
        return bert.mask_tokens(input_ids, mask_token_id=mask_token_id, vocab_size=vocab_size,
                                special_token_ids=[], mlm_probability=mlm_probability, generator=generator)

    def always_mask(input_ids, *, mask_token_id, vocab_size, special_token_ids, mlm_probability=0.15,
                    generator=None):
        return bert.mask_tokens(input_ids, mask_token_id=mask_token_id, vocab_size=vocab_size,
                                special_token_ids=special_token_ids, mlm_probability=mlm_probability,
                                mask_fraction=1.0, random_fraction=0.0, generator=generator)

    r1 = bert_checks.check_mask_tokens(selects_specials)
    r2 = bert_checks.check_mask_tokens(always_mask)
    assert r1.status == "failed" and "special" in r1.message
    assert r2.status == "failed" and "as_mask" in r2.message


@pytest.mark.parametrize("kwargs, word", [
    (dict(input_ids=[[1, 2]]), "input_ids"),
    (dict(input_ids=torch.ones(2, 3)), "input_ids"),
    (dict(mask_token_id=200), "mask_token_id"),
    (dict(vocab_size=1), "vocab_size"),
    (dict(mlm_probability=1.5), "mlm_probability"),
    (dict(mask_fraction=0.95), "mask_fraction + random_fraction"),
    (dict(input_ids=torch.tensor([[5, 300]])), "input_ids"),
])
def test_mask_tokens_rejects_bad_input(kwargs, word):
    args = dict(input_ids=torch.tensor([[2, 5, 6, 3]]), mask_token_id=4, vocab_size=100,
                special_token_ids=(0, 1, 2, 3))
    args.update(kwargs)
    ids = args.pop("input_ids")
    with pytest.raises((ValueError, TypeError), match=word.split()[0]):
        bert.mask_tokens(ids, **args)


def test_masked_lm_loss_matches_transformers_and_ignores_unlabelled_positions():
    model = tiny_mlm()
    _, masked, labels = masked_toy_batch(6, 20, seed=1, mask_seed=2)
    with torch.no_grad():
        out = model(input_ids=masked, labels=labels)
    assert torch.allclose(bert.masked_lm_loss(out.logits, labels), out.loss, atol=1e-6)
    assert bert_checks.check_masked_lm_loss(bert.masked_lm_loss).passed
    wrong = bert_checks.check_masked_lm_loss(
        lambda logits, labels: torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                                 labels.clamp(min=0).reshape(-1)))
    assert wrong.status == "failed"
    with pytest.raises(ValueError, match="labels"):
        bert.masked_lm_loss(out.logits, labels[:, :5])
    with pytest.raises(ValueError, match="logits"):
        bert.masked_lm_loss(out.logits[0], labels)
    with pytest.raises(ValueError, match="labels"):
        bert.masked_lm_loss(out.logits, torch.full_like(labels, -100))


# --------------------------------------------------------------------------- corpus and NSP
def test_parse_speeches_and_nsp_pairs():
    speeches = bert.parse_speeches(TOY_TEXT)
    assert [s.speaker for s in speeches] == ["First Citizen", "All", "First Citizen", "Second Citizen"]
    assert speeches[3].lines[0] == "One word, good citizens."
    assert bert_checks.check_nsp_pairs(bert.nsp_pairs).passed
    docs = [s.lines for s in speeches]
    pairs = bert.nsp_pairs(docs, 2000, generator=torch.Generator().manual_seed(0))
    share = sum(lab == bert.IS_NEXT for _, _, lab in pairs) / len(pairs)
    assert abs(share - 0.5) < 0.04
    for a, b, lab in pairs:
        same = [d for d in docs if a in d and b in d and d.index(b) == d.index(a) + 1]
        assert bool(same) == (lab == bert.IS_NEXT)
    with pytest.raises(ValueError, match="n_pairs"):
        bert.nsp_pairs(docs, 0)
    with pytest.raises(ValueError, match="documents"):
        bert.nsp_pairs([["only", "one"]], 3)
    with pytest.raises(TypeError, match="documents"):
        bert.nsp_pairs("text", 3)
    with pytest.raises(ValueError, match="text"):
        bert.parse_speeches("")


def test_lab_check_catches_nsp_pairs_from_the_same_document():
    def same_doc(documents, n_pairs, generator=None):
        pairs = bert.nsp_pairs(documents, n_pairs, generator=generator)
        return [(a, a if lab else b, lab) for a, b, lab in pairs]

    result = bert_checks.check_nsp_pairs(same_doc)
    assert result.status == "failed" and "NotNext" in result.message


# --------------------------------------------------------------------------- tokenizer
def test_wordpiece_tokenizer_is_bert_like(toy_tokenizer):
    tok = toy_tokenizer
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == list(bert.SPECIAL_TOKENS)
    assert tok.tokenize("Citizens, [MASK] speak!") [:3] == ["citizens", ",", "[MASK]"]
    enc = tok("good citizens", "hear me")
    assert enc["input_ids"][0] == tok.cls_token_id and enc["input_ids"][-1] == tok.sep_token_id
    assert enc["input_ids"].count(tok.sep_token_id) == 2
    types = enc["token_type_ids"]
    assert types[0] == 0 and types[-1] == 1 and sorted(set(types)) == [0, 1]
    assert "##" in "".join(tok.get_vocab())  # word pieces exist
    assert tok.decode(tok("the people")["input_ids"], skip_special_tokens=True) == "the people"
    with pytest.raises(ValueError, match="vocab_size"):
        bert.train_wordpiece(["a b"], vocab_size=10)
    with pytest.raises(TypeError, match="texts"):
        bert.train_wordpiece("a b c", vocab_size=200)


def test_fill_mask_matches_the_transformers_pipeline(toy_tokenizer):
    from transformers import pipeline

    model = tiny_mlm(vocab_size=len(toy_tokenizer), seed=1)
    ours = bert.fill_mask(model, toy_tokenizer, "we are accounted [MASK] citizens", top_k=5)
    theirs = pipeline("fill-mask", model=model, tokenizer=toy_tokenizer, top_k=5)(
        "we are accounted [MASK] citizens")
    assert [t for t, _ in ours] == [d["token_str"].replace(" ", "") for d in theirs] or \
        [toy_tokenizer.convert_tokens_to_ids(t) for t, _ in ours] == [d["token"] for d in theirs]
    assert [p for _, p in ours] == pytest.approx([d["score"] for d in theirs], abs=1e-5)
    assert bert_checks.check_top_k_tokens(lambda logits, k: logits.softmax(-1).topk(k)).passed
    with pytest.raises(ValueError, match="exactly one"):
        bert.fill_mask(model, toy_tokenizer, "no mask here")
    with pytest.raises(ValueError, match="top_k"):
        bert.fill_mask(model, toy_tokenizer, "a [MASK]", top_k=0)
    with pytest.raises(TypeError, match="text"):
        bert.fill_mask(model, toy_tokenizer, 3)


def test_fill_mask_cuts_long_text_to_the_model_window_around_the_mask(toy_tokenizer):
    short = tiny_mlm(vocab_size=len(toy_tokenizer), max_positions=8)
    text = "before we proceed any further , hear me [MASK] . you are all resolved rather to die"
    assert len(toy_tokenizer(text)["input_ids"]) > 8
    enc = bert._mask_inputs(short, toy_tokenizer, [text])
    ids = enc["input_ids"][0].tolist()
    assert len(ids) == 8 and ids[0] == toy_tokenizer.cls_token_id and ids[-1] == toy_tokenizer.sep_token_id
    assert toy_tokenizer.mask_token_id in ids
    window = toy_tokenizer.decode(ids[1:-1])
    assert bert.fill_mask(short, toy_tokenizer, text, top_k=3) == bert.fill_mask(short, toy_tokenizer, window, top_k=3)
    # a batch of different lengths is padded, with the attention mask marking real tokens
    enc = bert._mask_inputs(short, toy_tokenizer, [text, "hear me [MASK]"])
    assert enc["input_ids"].shape == (2, 8) and enc["attention_mask"][1].sum() < 8


def test_fill_mask_items_hide_single_token_words(toy_tokenizer):
    lines = [ln for ln in TOY_TEXT.splitlines() if ln and not ln.endswith(":")]
    items = bert.fill_mask_items(lines, [toy_tokenizer], 4, seed=0)
    vocab = toy_tokenizer.get_vocab()
    for item in items:
        assert item.text.count("[MASK]") == 1 and item.answer in vocab
        assert item.text.replace("[MASK]", item.answer).lower() in [ln.lower() for ln in lines]
    model = tiny_mlm(vocab_size=len(toy_tokenizer))
    acc = bert.fill_mask_accuracy(model, toy_tokenizer, items)
    assert 0.0 <= acc["top1"] <= acc["top5"] <= 1.0
    with pytest.raises(ValueError, match="n"):
        bert.fill_mask_items(lines, [toy_tokenizer], 0)


def test_masked_token_accuracy_and_baseline_count_correctly():
    model = tiny_mlm()
    _, masked, labels = masked_toy_batch(20, 16, seed=5)
    with torch.no_grad():
        logits = model(input_ids=masked).logits
    where = labels != -100
    expected = float((logits.argmax(-1)[where] == labels[where]).float().mean())
    acc = bert.masked_token_accuracy(model, masked, labels, batch_size=7)
    assert acc["top1"] == pytest.approx(expected) and acc["positions"] == int(where.sum())
    train_ids = torch.tensor([7, 7, 7, 9, 9, 11])
    token, base = bert.most_frequent_baseline(train_ids, torch.tensor([[7, -100, 9, 7]]))
    assert token == 7 and base == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- encoders and downstream
def test_minilm_masked_lm_trains_only_the_head():
    tokenizer, model = bert.minilm_masked_lm()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("cls.predictions") for n in trainable)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    from genai_lab.models import load_minilm

    _, encoder = load_minilm("encoder")
    enc = tokenizer("to be or not to be", return_tensors="pt")
    with torch.no_grad():
        ours = model.bert(**enc).last_hidden_state
        ref = encoder(**enc).last_hidden_state
    assert torch.allclose(ours, ref, atol=1e-5)  # the pretrained encoder, unchanged


def test_speaker_dataset_is_balanced_and_disjoint():
    text = "\n\n".join(f"{who}:\nline {who} {i}\nmore {i}" for i in range(10) for who in ("A", "B", "C"))
    data = bert_downstream.speaker_dataset(text, n_speakers=3, test_fraction=0.2, seed=0)
    assert len(data.train_texts) == 24 and len(data.test_texts) == 6
    assert torch.bincount(data.test_labels).tolist() == [2, 2, 2]
    assert not set(data.train_texts) & set(data.test_texts)
    with pytest.raises(ValueError, match="n_speakers"):
        bert_downstream.speaker_dataset(text, n_speakers=5)


def test_frozen_classifier_trains_only_the_head_and_learns_a_separable_task(toy_tokenizer):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(toy_tokenizer), hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    words = {0: "citizens people poor", 1: "speak hear word"}
    data = bert_downstream.SpeakerData([words[i % 2] for i in range(40)], torch.tensor([i % 2 for i in range(40)]),
                            [words[i % 2] for i in range(10)], torch.tensor([i % 2 for i in range(10)]),
                            ("A", "B"))
    frozen = bert_downstream.train_speaker_classifier(encoder, toy_tokenizer, data, mode="frozen", steps=60, lr=1e-2,
                                           batch_size=8, max_len=16, progress=False)
    assert frozen.trainable == 32 * 2 + 2 and frozen.accuracy == 1.0
    before = [p.detach().clone() for p in encoder.parameters()]
    tuned = bert_downstream.train_speaker_classifier(encoder, toy_tokenizer, data, mode="finetune", steps=20, lr=1e-3,
                                          batch_size=8, max_len=16, progress=False)
    assert tuned.trainable == tuned.total > frozen.trainable
    assert all(torch.equal(p, q) for p, q in zip(encoder.parameters(), before))  # tuned a copy
    with pytest.raises(ValueError, match="mode"):
        bert_downstream.train_speaker_classifier(encoder, toy_tokenizer, data, mode="lora", steps=1, lr=1e-3)


# --------------------------------------------------------------------------- the bench
@pytest.mark.slow
def test_bench_smoke_clears_the_issue_bar():
    from genai_lab.bench import run_chapter
    from genai_lab.config import LabConfig

    rows = run_chapter("bert", LabConfig(profile="smoke", device=torch.device("cpu")))
    values = {r["metric"]: r["value"] for r in rows}
    barred = [r for r in rows if r["bar"] is not None]
    assert barred and all(r["passed"] is True for r in barred), barred
    assert values["mlm_top1"] >= 2 * values["mlm_most_frequent_baseline"]
    assert values["mlm_top5"] > values["mlm_top1"]


# --------------------------------------------------------------------------- what the cache is keyed by
def _captured_keys(monkeypatch, fn, **kwargs):
    """The checkpoint config ``fn(cfg, **kwargs)`` would be cached under (nothing is trained)."""
    from genai_lab import checkpoints
    from genai_lab.config import LabConfig

    seen = {}

    def fake_load_or_train(name, cfg, config, build, train, **_):
        seen["name"], seen["config"] = name, config
        raise RuntimeError("stop")

    monkeypatch.setattr(checkpoints, "load_or_train", fake_load_or_train)
    monkeypatch.setattr(bert, "shakespeare_wordpiece", lambda vocab_size: bert.train_wordpiece(
        TOY_TEXT.splitlines() * 20, vocab_size=120, min_frequency=1))
    monkeypatch.setattr(bert, "shakespeare_split", lambda: (TOY_TEXT * 30, TOY_TEXT * 30))
    with pytest.raises(RuntimeError, match="stop"):
        fn(LabConfig(profile="smoke", device=torch.device("cpu")), **kwargs)
    return seen


@pytest.mark.parametrize("fn", [bert.pretrain_mlm, bert.pretrain_with_nsp])
def test_every_setting_that_changes_a_pretrained_bert_changes_its_checkpoint_key(monkeypatch, fn):
    from genai_lab.checkpoints import checkpoint_path

    default = _captured_keys(monkeypatch, fn)
    assert default["config"]["masking"] == bert.DEFAULT_MASKING
    paths = {checkpoint_path(default["name"], "smoke", default["config"])}
    for change in ({"mlm_probability": 0.3}, {"mask_fraction": 1.0, "random_fraction": 0.0}, {"steps": 7}):
        seen = _captured_keys(monkeypatch, fn, **change)
        paths.add(checkpoint_path(seen["name"], "smoke", seen["config"]))
    assert len(paths) == 4  # each "Try this" change trains a new model instead of reloading the old one
    assert _captured_keys(monkeypatch, fn, steps=7)["config"]["steps"] == 7


def test_mask_for_follows_the_recipe_it_is_given(toy_tokenizer):
    ids = torch.randint(5, len(toy_tokenizer), (400, 30), generator=torch.Generator().manual_seed(0))
    recipe = bert.masking_recipe(mlm_probability=0.4, mask_fraction=1.0, random_fraction=0.0)
    masked, labels = bert.mask_for(toy_tokenizer, ids, generator=torch.Generator().manual_seed(1), masking=recipe)
    selected = labels != bert.IGNORE_INDEX
    assert abs(selected.float().mean().item() - 0.4) < 0.02
    assert bool((masked[selected] == toy_tokenizer.mask_token_id).all())


@pytest.mark.parametrize("kwargs, word", [
    ({"mlm_probability": 0.0}, "mlm_probability"), ({"mlm_probability": 1.5}, "mlm_probability"),
    ({"mask_fraction": 0.9, "random_fraction": 0.2}, "mask_fraction"), ({"random_fraction": -0.1}, "random_fraction"),
])
def test_masking_recipe_rejects_bad_fractions(kwargs, word):
    with pytest.raises(ValueError, match=word):
        bert.masking_recipe(**kwargs)


def test_pretraining_rejects_bad_steps():
    from genai_lab.config import LabConfig

    for steps in (0, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            bert.pretrain_mlm(LabConfig(profile="smoke", device=torch.device("cpu")), steps=steps)
