"""Tests for genai_lab.clip: the contrastive loss against a from-scratch reference, the similarity
matrix against torch's cosine similarity, the tokenizer and encoders, a short training run that
beats chance zero-shot by a wide margin, and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from genai_lab import clip


def _reference_infonce(img, txt, temperature):
    """Symmetric InfoNCE written out with explicit sums (no cross_entropy)."""
    img, txt = img / img.norm(dim=1, keepdim=True), txt / txt.norm(dim=1, keepdim=True)
    logits = img @ txt.T / temperature
    b = len(logits)
    rows = sum(-(logits[i, i] - torch.logsumexp(logits[i], 0)) for i in range(b)) / b
    cols = sum(-(logits[i, i] - torch.logsumexp(logits[:, i], 0)) for i in range(b)) / b
    return (rows + cols) / 2


def test_contrastive_loss_matches_reference_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(9, 16, generator=g), torch.randn(9, 16, generator=g)
    for t in (1.0, 0.3, 0.07):
        assert torch.allclose(clip.contrastive_loss(img, txt, t), _reference_infonce(img, txt, t), atol=1e-5)
    assert torch.allclose(clip.contrastive_loss(img, txt, 0.1), clip.contrastive_loss(txt, img, 0.1))


def test_contrastive_loss_limits():
    """Matching pairs at a low temperature → loss ≈ 0; identical rows everywhere → log B."""
    eye = torch.eye(8)
    assert float(clip.contrastive_loss(eye, eye, 0.01)) < 1e-6
    same = torch.ones(8, 4)
    assert float(clip.contrastive_loss(same, same, 0.07)) == pytest.approx(math.log(8), abs=1e-5)
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    # a tensor temperature works and gradients reach it (CLIP learns it)
    temp = torch.tensor(0.5, requires_grad=True)
    clip.contrastive_loss(img, txt, temp).backward()
    assert temp.grad is not None and torch.isfinite(temp.grad)


def test_similarity_matrix_is_cosine_similarity():
    g = torch.Generator().manual_seed(2)
    img, txt = torch.randn(4, 6, generator=g), torch.randn(3, 6, generator=g)
    expected = F.cosine_similarity(img[:, None], txt[None], dim=-1)
    assert torch.allclose(clip.similarity_matrix(img, txt), expected, atol=1e-6)


def test_tokenizer_round_trip_unknown_words_and_padding():
    tok = clip.default_tokenizer()
    ids = tok.encode(["A photo of a T-shirt", "zebra"])
    assert ids.shape == (2, tok.max_len)
    assert tok.decode(ids[0]) == "a photo of a t-shirt"
    assert ids[1, 0] == tok.UNK and ids[1, 1] == tok.EOS and ids[1, 2:].eq(tok.PAD).all()
    long = tok.encode("a " * 40)
    assert long[0, -1] == tok.EOS
    # every training caption is made of known words only
    assert all(tok.UNK not in tok.encode(group).tolist()[0] for group in clip.caption_texts())


def test_text_embedding_does_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    model = clip.SmallCLIP(clip.CLIPConfig(text_layers=1)).eval()
    alone = model.encode_texts(["a photo of a bag"])
    together = model.encode_texts(["a photo of a bag", "a grey running shoe on a black background"])
    assert torch.allclose(alone[0], together[0], atol=1e-5)
    assert torch.allclose(alone.norm(dim=1), torch.ones(1))


def test_captions_are_varied_and_match_their_labels():
    labels = torch.tensor([0, 7, 7, 7, 9])
    caps = clip.sample_captions(labels, torch.Generator().manual_seed(0))
    assert len(caps) == 5
    assert any(w in caps[1] for w in clip.CLASS_WORDS[7])
    assert len(set(clip.sample_captions(torch.full((50,), 3), torch.Generator().manual_seed(1)))) > 10
    # held-out prompt templates never appear in training
    assert not set(clip.PROMPT_TEMPLATES) & set(clip.TRAIN_TEMPLATES)


def test_short_training_beats_chance_zero_shot():
    """80 steps on 1,500 Fashion-MNIST images: zero-shot accuracy ≥ 40 % (chance is 10 %)."""
    from genai_lab.data import load_fashion_mnist

    data = load_fashion_mnist(train_limit=1500, test_limit=500)
    torch.manual_seed(0)
    model = clip.SmallCLIP(clip.CLIPConfig(steps=80, batch_size=64, image_width=8, text_layers=1))
    before = clip.zero_shot_accuracy(model, data.test_x, data.test_y)
    out = clip.train_clip(model, data, progress=False, eval_every=80)
    after = clip.zero_shot_accuracy(model, data.test_x, data.test_y)
    assert out["losses"][-1] < out["losses"][0]
    assert after >= 0.40 and after >= before + 0.2, (before, after)


def test_real_clip_is_skipped_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from genai_lab import models

    monkeypatch.setattr(models, "hub_cached_path", lambda hub_id: None)
    images, labels = torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)
    assert clip.hub_clip_zero_shot(images, labels, ["a", "b"]) is None


def test_bad_input_names_the_argument():
    img = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature"):
        clip.contrastive_loss(img, img, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        clip.contrastive_loss(img, img, "hot")
    with pytest.raises(ValueError, match="batch size"):
        clip.contrastive_loss(img, img[:3], 0.1)
    with pytest.raises(ValueError, match="text_emb"):
        clip.similarity_matrix(img, torch.randn(4))
    with pytest.raises(ValueError, match="share D"):
        clip.similarity_matrix(img, torch.randn(4, 5))
    with pytest.raises(ValueError, match="text_width"):
        clip.CLIPConfig(text_width=30, text_heads=4)
    with pytest.raises(ValueError, match="steps"):
        clip.CLIPConfig(steps=0)
    with pytest.raises(TypeError, match="config"):
        clip.SmallCLIP({"embed_dim": 4})
    with pytest.raises(TypeError, match="text"):
        clip.WordTokenizer.split(3)
    with pytest.raises(ValueError, match="texts"):
        clip.default_tokenizer().encode([])
    model = clip.SmallCLIP(clip.CLIPConfig(text_layers=1))
    with pytest.raises(ValueError, match="query"):
        clip.retrieve(model, "  ", torch.zeros(3, 1, 28, 28))
    with pytest.raises(ValueError, match="k"):
        clip.retrieve(model, "bag", torch.zeros(3, 1, 28, 28), k=4)
    with pytest.raises(ValueError, match="images"):
        clip.zero_shot_accuracy(model, torch.zeros(3, 1, 28, 28), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="templates"):
        clip.prompt_texts(["no placeholder"])


def test_pretrained_clip_path_with_a_tiny_random_transformers_clip():
    """The gpu-profile code path (a transformers CLIPModel + CLIPProcessor) on a tiny random CLIP:
    predictions equal the argmax of cosine similarities computed from the model's own features."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

    words = ["<|startoftext|>", "<|endoftext|>", "a", "photo", "of", "bag", "coat", "."]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<|endoftext|>",
                                        unk_token="<|endoftext|>")
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=1, bos_token_id=0,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=8)).eval()
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    preds = clip.pretrained_clip_predict(model, processor, images, ["Bag", "Coat"], batch_size=4)
    text = processor(text=["a photo of a bag.", "a photo of a coat."], return_tensors="pt", padding=True)
    pixels = processor(images=list((images.repeat(1, 3, 1, 1) * 255).round().to(torch.uint8)),
                       return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(**text, pixel_values=pixels)
    manual = F.normalize(out.image_embeds, dim=-1) @ F.normalize(out.text_embeds, dim=-1).T
    assert torch.equal(preds, manual.argmax(-1))
    with pytest.raises(ValueError, match="class_names"):
        clip.pretrained_clip_predict(model, processor, images, ["Bag"])


def test_temperature_has_its_own_learning_rate_and_loss_by_temperature_matches_the_loss():
    """``temperature_lr`` moves log(1/τ) faster than the network's lr; ``loss_by_temperature`` is the
    contrastive loss of the same training-like batch at each temperature."""
    from genai_lab.data import load_fashion_mnist

    data = load_fashion_mnist(train_limit=300, test_limit=100)
    moved = {}
    for tlr in (None, 0.2):
        torch.manual_seed(0)
        model = clip.SmallCLIP(clip.CLIPConfig(steps=6, batch_size=32, image_width=4, text_layers=1,
                                               temperature_lr=tlr))
        out = clip.train_clip(model, data, progress=False, eval_every=3)
        assert [s for s, _ in out["temperature_trajectory"]] == [-1, 2, 5]
        moved[tlr] = abs(math.log(out["temperature_trajectory"][-1][1] / 0.07))
    assert moved[0.2] > 5 * moved[None] and moved[0.2] > 0.1, moved
    stream = clip.caption_batches(data.train_x, data.train_y, model.tokenizer, batch_size=32,
                                  generator=torch.Generator().manual_seed(3))
    model.eval()
    with torch.no_grad():
        img, txt = model(*next(stream))
    got = clip.loss_by_temperature(model, data.train_x, data.train_y, [0.05, 0.5], batches=1, seed=3)
    assert got == pytest.approx([float(clip.contrastive_loss(img, txt, t)) for t in (0.05, 0.5)], abs=1e-5)
    with pytest.raises(ValueError, match="temperatures"):
        clip.loss_by_temperature(model, data.train_x, data.train_y, [])
    with pytest.raises(ValueError, match="temperature_lr"):
        clip.CLIPConfig(temperature_lr=0.0)
