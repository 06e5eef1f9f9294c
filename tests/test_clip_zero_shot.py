"""Tests for genai_lab.clip_zero_shot: the training captions never name an unseen class (the whole
point of the experiment), the frozen text tower, the report's accuracies against a hand count,
a short seeded run that beats chance on classes it never saw, and bad input."""

import math

import pytest
import torch

from genai_lab import clip, clip_zero_shot as zs


def test_training_captions_never_name_an_unseen_class():
    """Every caption the model trains on, scanned for every word (and singular) of every unseen
    class, as a substring: none occurs; the seen classes keep all their captions."""
    captions = zs.seen_caption_texts()
    flat = [t for group in captions for t in group]
    assert len(flat) == sum(len(clip.TRAIN_TEMPLATES) * len(clip.CLASS_WORDS[c]) for c in zs.SEEN_CLASSES)
    assert zs.names_in_texts(flat, zs.UNSEEN_CLASSES) == []
    assert all(captions[c] == [] for c in zs.UNSEEN_CLASSES)
    # the scan does find a leak when there is one (the first CLIP's captions name every class)
    leaks = zs.names_in_texts([t for g in clip.caption_texts() for t in g], zs.UNSEEN_CLASSES)
    assert {w for _, w in leaks} >= {"trouser", "sandal", "bag", "jeans", "purse"}
    # and the prompts used to classify the unseen classes do name them
    prompts = zs.class_prompts()
    for c in zs.UNSEEN_CLASSES:
        assert zs.names_in_texts(prompts[c], [c]) and len(prompts[c]) >= 3
    other = (2, 3)
    assert zs.names_in_texts([t for g in zs.seen_caption_texts(other) for t in g], other) == []
    assert zs.SEEN_CLASSES == (0, 2, 3, 4, 6, 7, 9)


def test_the_model_trains_only_on_seen_images_and_captions(monkeypatch):
    """The batches handed to the loss hold no unseen image; the text tower's input comes only from
    the seen classes' caption embeddings."""
    from genai_lab.data import ImageData
    import genai_lab.train as train

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(6)
    data = ImageData(torch.rand(60, 1, 28, 28, generator=g), labels, torch.rand(30, 1, 28, 28, generator=g),
                     torch.arange(10).repeat(3), tuple(str(i) for i in range(10)))
    caption_emb = [torch.zeros(0, 384) if c in zs.UNSEEN_CLASSES else torch.full((4, 384), float(c))
                   for c in range(10)]
    prompt_emb = [torch.randn(3, 384, generator=g) for _ in range(10)]
    seen_batches = []
    real_loop = train.train_loop

    def spy(model, opt, batches, loss_fn, steps, **kwargs):
        def wrapped():
            for images, sentences in batches:
                seen_batches.append(sentences[:, 0].clone())
                yield images, sentences
        return real_loop(model, opt, wrapped(), loss_fn, steps, **kwargs)

    monkeypatch.setattr(train, "train_loop", spy)
    torch.manual_seed(0)
    model = zs.FrozenTextCLIP(zs.ZeroShotConfig(steps=3, batch_size=16, image_width=4, embed_dim=8, project_text=True))
    out = zs.train_zero_shot_clip(model, data, caption_emb, prompt_emb, progress=False, eval_every=1)
    used = torch.cat(seen_batches).long().unique().tolist()
    assert set(used) <= set(zs.SEEN_CLASSES) and len(used) >= 3
    assert [s for s, _ in out["temperature"]] == [-1, 0, 1, 2]
    assert out["temperature"][0][1] == pytest.approx(0.07)
    with pytest.raises(ValueError, match=r"caption_emb\[1\]"):
        zs.train_zero_shot_clip(model, data, [torch.ones(4, 384)] * 10, prompt_emb, progress=False)


def test_report_counts_by_hand():
    """A model whose image embedding is the label's one-hot direction in a 2-class toy: the report's
    accuracies are what a hand count gives."""
    torch.manual_seed(0)
    model = zs.FrozenTextCLIP(zs.ZeroShotConfig(embed_dim=10, image_width=4, project_text=True)).eval()
    # project prompts so that class c's prompts point along axis c
    with torch.no_grad():
        model.text_projection.weight.copy_(torch.eye(10, 384))
    prompt_emb = [torch.eye(384)[c].repeat(2, 1) for c in range(10)]
    labels = torch.tensor([1, 5, 8, 8, 0, 2, 7, 9])
    wrong = torch.tensor([False, False, False, True, False, False, True, False])
    target = torch.where(wrong, torch.tensor([5, 5, 5, 1, 5, 5, 0, 5]), labels)
    fake = torch.eye(10)[target]
    model.image_encoder.forward = lambda images: fake[: len(images)]
    report = zs.zero_shot_report(model, torch.zeros(8, 1, 28, 28), labels, prompt_emb)
    assert report["unseen_accuracy"] == pytest.approx(3 / 4)   # image 4 (an 8) was sent to 1
    assert report["unseen_chance"] == pytest.approx(1 / 3)
    assert report["unseen_se"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert report["seen_accuracy"] == pytest.approx(3 / 4)     # image 7 (a 7) was sent to 0
    assert report["seen_accuracy_all"] == pytest.approx(3 / 4)
    assert report["unseen_predictions_all"].tolist() == [1, 5, 8, 1]
    # among the seen classes only: an image pointing at an unseen class cannot be predicted unseen
    assert zs.classify(fake, torch.eye(10), [0, 2]).tolist() == [0, 0, 0, 0, 0, 2, 0, 0]


@pytest.mark.slow
def test_frozen_minilm_embeddings_are_cached_unit_vectors_and_know_synonyms(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path))
    texts = ["a photo of a sandal", "a photo of a flip-flop", "a photo of a coat"]
    emb = zs.sentence_embeddings(texts)
    assert emb.shape == (3, 384) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])  # the pretrained tower knows the words
    assert (tmp_path / "rag" / "embeddings.sqlite").is_file()  # the RAG chapter's embedding cache
    assert torch.equal(zs.sentence_embeddings(texts), emb)    # second call: from the cache
    parts = zs.grouped_embeddings([texts[:1], texts[1:]])
    assert [len(p) for p in parts] == [1, 2] and torch.allclose(torch.cat(parts), emb)


@pytest.mark.slow
def test_short_training_beats_chance_on_unseen_classes():
    """Three seeds of a short run on the seven seen classes: the three unseen classes, classified
    from their names alone, beat chance (1/3) on average by more than 0.05 and by more than the
    standard error over seeds; the seen classes are far easier; the untrained models sit near chance."""
    from genai_lab.data import load_fashion_mnist

    data = load_fashion_mnist(train_limit=3000, test_limit=1000)
    unseen, before = [], []
    for seed in (0, 1, 2):
        config = zs.ZeroShotConfig(steps=150, batch_size=64, image_width=8, seed=seed)
        caption_emb, prompt_emb = zs.zero_shot_texts(config)
        torch.manual_seed(seed)
        model = zs.FrozenTextCLIP(config)
        out = zs.train_zero_shot_clip(model, data, caption_emb, prompt_emb, progress=False, eval_every=150)
        report = zs.zero_shot_report(model, data.test_x, data.test_y, prompt_emb)
        assert report["seen_accuracy"] > 0.6, (seed, report)
        unseen.append(report["unseen_accuracy"])
        before.append(out["before"]["unseen_accuracy"])
    values = torch.tensor(unseen)
    mean, se = float(values.mean()), float(values.std() / math.sqrt(len(values)))
    assert mean > 1 / 3 + 0.05 and mean - 1 / 3 > se, (unseen, se)
    assert abs(sum(before) / 3 - 1 / 3) < 0.1, before


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="unseen"):
        zs.ZeroShotConfig(unseen=(1,))
    with pytest.raises(ValueError, match="unseen"):
        zs.seen_caption_texts((1, 1, 5))
    with pytest.raises(ValueError, match="unseen"):
        zs.ZeroShotConfig(unseen=(1, 10))
    with pytest.raises(TypeError, match="unseen"):
        zs.seen_caption_texts("158")
    with pytest.raises(ValueError, match="temperature_lr"):
        zs.ZeroShotConfig(temperature_lr=0.0)
    with pytest.raises(ValueError, match="init_temperature"):
        zs.ZeroShotConfig(init_temperature=0.0)
    with pytest.raises(ValueError, match="steps"):
        zs.ZeroShotConfig(steps=0)
    with pytest.raises(ValueError, match="embed_dim"):
        zs.FrozenTextCLIP(zs.ZeroShotConfig(embed_dim=64))
    with pytest.raises(TypeError, match="config"):
        zs.FrozenTextCLIP({"embed_dim": 8})
    with pytest.raises(ValueError, match="templates"):
        zs.class_prompts(["no placeholder"])
    with pytest.raises(ValueError, match="texts"):
        zs.sentence_embeddings([])
    model = zs.FrozenTextCLIP(zs.ZeroShotConfig(embed_dim=8, image_width=4, project_text=True))
    with pytest.raises(ValueError, match="sentence_emb"):
        model.encode_sentences(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="among"):
        zs.classify(torch.zeros(2, 8), torch.zeros(3, 8), [0, 3])
    with pytest.raises(ValueError, match="prompt_emb"):
        zs.class_embeddings(model, [])
    prompt_emb = [torch.zeros(1, 384)] * 10
    with pytest.raises(ValueError, match="both seen and unseen"):
        zs.zero_shot_report(model, torch.zeros(2, 1, 28, 28), torch.tensor([0, 2]), prompt_emb)
    with pytest.raises(ValueError, match="same length"):
        zs.zero_shot_report(model, torch.zeros(2, 1, 28, 28), torch.tensor([0]), prompt_emb)
