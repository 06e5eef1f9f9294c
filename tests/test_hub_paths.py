"""Hub paths cannot rot: the ``gpu`` profile's hub models, as tiny random twins in a real hub cache.

The ``gpu`` profile loads bert-base-uncased, gpt2, CLIP ViT-B/32, Stable Diffusion v1.5 and the
SmolLM2-1.7B reader from the Hugging Face hub; offline (CI, this machine) those branches never run.
Here each model is replaced by a tiny randomly initialised model *of the same classes*, saved as a
snapshot in a Hugging Face cache folder laid out exactly as ``huggingface_hub`` writes one
(``models--org--name/refs/main``, ``snapshots/<commit>/…`` and the cached file list
``trees/<commit>.json``, which names the repository's files that the download skipped).  The tests
point ``huggingface_hub`` at that folder (its ``HF_HUB_CACHE``) and call the functions the notebooks
call (:func:`genai_lab.models.hub_model_path`, ``bert.bert_base_masked_lm``,
``clip.hub_clip_zero_shot``, ``latent.load_stable_diffusion_parts`` + ``latent.generate_from_text``,
``rag.generate.load_reader``), checking that they take the hub branch (the loaded weights are the
snapshot's) and behave: fill-mask top-k from the tiny vocabulary matches transformers' pipeline,
CLIP's accuracy follows the model's own predictions, SD returns images in [0, 1], the reader answers.
No network, no real weights; the whole file runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from genai_lab import models

BERT_ID = "google-bert/bert-base-uncased"
GPT2_ID = "openai-community/gpt2"
CLIP_ID = "openai/clip-vit-base-patch32"
SD_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"

#: Files of the real hub repositories that a download must skip (checked against the hub's listings;
#: each is a duplicate format or a copy the code never loads).  They go into the cached file list, as
#: after a real download, so a lookup that wants them finds the snapshot incomplete.
REMOTE_ONLY = {
    BERT_ID: ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "model.onnx"],
    GPT2_ID: ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "64.tflite",
              "onnx/decoder_model.onnx", "onnx/decoder_model_merged.onnx"],
    CLIP_ID: ["tf_model.h5", "flax_model.msgpack"],
    SD_ID: ["v1-5-pruned.safetensors", "v1-5-pruned-emaonly.safetensors", "v1-5-pruned.ckpt",
            "v1-5-pruned-emaonly.ckpt", "v1-inference.yaml",
            "safety_checker/config.json", "safety_checker/model.safetensors", "safety_checker/model.fp16.safetensors",
            "safety_checker/pytorch_model.bin", "text_encoder/model.fp16.safetensors", "text_encoder/pytorch_model.bin",
            "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.non_ema.safetensors",
            "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.non_ema.bin",
            "vae/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.bin"],
}


# --------------------------------------------------------------------------- the hub cache
def publish(cache: Path, hub_id: str, write, *, remote_only=()) -> Path:
    """Save a snapshot of ``hub_id`` into the Hugging Face cache ``cache`` as a download would.

    ``write(folder)`` writes the files; ``remote_only`` are files the repository holds but the
    download skipped (they appear in the cached file list only)."""
    storage = cache / f"models--{hub_id.replace('/', '--')}"
    commit = hashlib.sha1(hub_id.encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    write(snapshot)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    try:  # huggingface_hub ≥ 2 caches the repository's file list and checks snapshots against it
        from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache
    except ImportError:
        return snapshot
    files = {p.relative_to(snapshot).as_posix(): p.stat().st_size for p in snapshot.rglob("*") if p.is_file()}
    files.update({name: 1 for name in remote_only})
    write_tree_cache(str(storage), commit, {name: TreeCacheEntry(size=size, blob_id=hashlib.sha1(name.encode())
                                                                 .hexdigest()) for name, size in files.items()})
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """An empty Hugging Face cache that ``huggingface_hub`` uses for the tests of this module."""
    from huggingface_hub import constants

    cache = tmp_path_factory.mktemp("hf-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")  # the cache is all there is: a download attempt fails loudly
        yield cache


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small run fastest on one thread (and a busy machine slows many threads a hundredfold)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


# --------------------------------------------------------------------------- tiny tokenizers
def byte_level_vocab(specials: list[str]) -> dict[str, int]:
    """GPT-2's byte-level alphabet (every text encodes, one token per byte) after ``specials``."""
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    return vocab


def tiny_clip_tokenizer(max_length: int):
    """A ``CLIPTokenizer`` (the class of CLIP's and Stable Diffusion's) over single characters."""
    from transformers import CLIPTokenizer

    base = byte_level_vocab(["<|startoftext|>", "<|endoftext|>"])
    vocab = dict(base)
    for ch in list(base)[2:]:
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


# --------------------------------------------------------------------------- bert-base-uncased
BERT_WORDS = "the to be or not that is a question of and in it cat sat on mat dog".split()


@pytest.fixture(scope="module")
def tiny_bert(hub_cache):
    """A 2-layer ``BertForMaskedLM`` with a WordPiece ``BertTokenizer``, as bert-base-uncased's snapshot."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS, *chars, *(f"##{c}" for c in chars)]
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(tokens))})
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=64, pad_token_id=0)).eval()

    def write(folder):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)

    return tok, model, publish(hub_cache, BERT_ID, write, remote_only=REMOTE_ONLY[BERT_ID])


def test_bert_base_masked_lm_loads_the_snapshot_and_fills_masks(tiny_bert):
    from transformers import BertForMaskedLM, pipeline

    from genai_lab import bert

    tok, saved, snapshot = tiny_bert
    assert models.hub_model_path("bert-base-uncased") == snapshot
    assert models.model_source("bert-base-uncased") == f"hub cache: {snapshot}"
    real = bert.bert_base_masked_lm()  # 04_bert: real = bert.bert_base_masked_lm(cfg.device)
    assert real is not None
    tokenizer, model = real
    assert isinstance(model, BertForMaskedLM) and not model.training and same_weights(model, saved)
    assert tokenizer.get_vocab() == tok.get_vocab()

    text = "to be or not to be , that is the [MASK] ."
    preds = bert.fill_mask(model, tokenizer, text, top_k=5)
    assert len(preds) == 5 and all(t in tok.get_vocab() for t, _ in preds)
    assert [p for _, p in preds] == sorted((p for _, p in preds), reverse=True) and sum(p for _, p in preds) <= 1
    reference = pipeline("fill-mask", model=model, tokenizer=tokenizer, top_k=5)(text)
    assert [tokenizer.convert_tokens_to_ids(t) for t, _ in preds] == [r["token"] for r in reference]
    assert [p for _, p in preds] == pytest.approx([r["score"] for r in reference], abs=1e-5)

    # the notebook's explorer and the bench's word-level accuracy run on it too
    import matplotlib.pyplot as plt

    widget = bert.fill_mask_widget({"bert-base-uncased (hub)": real}, text=text)
    assert widget.children
    plt.close("all")
    items = [bert.FillMaskItem("to be or not to be , that is the [MASK] .", "question"),
             bert.FillMaskItem("the cat sat on the [MASK] .", "mat")]
    acc = bert.fill_mask_accuracy(model, tokenizer, items)
    assert set(acc) == {"top1", "top5"} and all(v in (0.0, 0.5, 1.0) for v in acc.values())


def test_attention_chapter_finds_pattern_heads_in_the_hub_bert(tiny_bert):
    from transformers import AutoModel, AutoTokenizer, BertModel

    from genai_lab import attention_maps as maps

    _, saved, _ = tiny_bert
    bert_path = models.hub_model_path("bert-base-uncased")  # 03_attention's gpu cell, verbatim below
    bert_tok = AutoTokenizer.from_pretrained(bert_path)
    bert = AutoModel.from_pretrained(bert_path, attn_implementation="eager").eval()
    assert isinstance(bert, BertModel)
    loaded = bert.state_dict()  # the encoder is the snapshot's (only its unused pooler is new)
    assert all(torch.equal(loaded[k], v) for k, v in saved.bert.state_dict().items())
    rows = maps.best_heads(maps.average_pattern_scores(bert_tok, bert, maps.MINILM_SENTENCES))
    assert {r["pattern"] for r in rows} >= {"previous token", "next token", "[CLS]", "[SEP]"}
    for r in rows:
        assert 0 <= r["layer"] < 2 and 0 <= r["head"] < 2 and 0 < r["score"] <= 1 + 1e-5 and r["uniform"] > 0


# --------------------------------------------------------------------------- gpt2
@pytest.fixture(scope="module")
def tiny_gpt2(hub_cache):
    """A 2-layer ``GPT2LMHeadModel`` with a byte-level BPE ``GPT2Tokenizer`` (a few merges), as gpt2's snapshot."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    vocab = byte_level_vocab(["<|endoftext|>"])
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("i", "n")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = GPT2Tokenizer(vocab=vocab, merges=merges)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()

    def write(folder):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)

    return tok, model, publish(hub_cache, GPT2_ID, write, remote_only=REMOTE_ONLY[GPT2_ID])


def test_gpt2_from_the_hub_cache_generates(tiny_gpt2):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

    tok, saved, snapshot = tiny_gpt2
    path = models.hub_model_path("gpt2")
    assert path == snapshot and models.model_source("gpt2") == f"hub cache: {snapshot}"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert isinstance(model, GPT2LMHeadModel) and same_weights(model, saved)
    text = "ROMEO: But soft, what light through the window breaks?"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert tokenizer.decode(ids[0]) == text and "Ġthe" in tokenizer.convert_ids_to_tokens(ids[0])  # merges apply
    out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert out.shape == (1, ids.shape[1] + 6) and torch.equal(out[0, :ids.shape[1]], ids[0])


def test_a_snapshot_without_weights_is_not_a_cached_model(tmp_path, monkeypatch, capsys):
    """``AutoTokenizer.from_pretrained("gpt2")`` caches a snapshot holding only tokenizer files; that is not
    the model, so offline it is skipped (not handed to ``from_pretrained`` to fail)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    publish(tmp_path, GPT2_ID, lambda folder: (folder / "tokenizer_config.json").write_text(json.dumps({})))
    assert models.hub_cached_path(GPT2_ID) is None
    assert models.hub_model_path("gpt2") is None
    assert "not cached" in capsys.readouterr().err
    assert models.model_source("gpt2") == "unavailable offline"


# --------------------------------------------------------------------------- CLIP
@pytest.fixture(scope="module")
def tiny_clip(hub_cache):
    """A ``CLIPModel`` (2+2 layers, 32×32 images) with a ``CLIPProcessor``, as CLIP ViT-B/32's snapshot, whose
    main branch holds the weights as ``pytorch_model.bin`` only (no safetensors)."""
    from safetensors.torch import load_file
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = tiny_clip_tokenizer(max_length=77)
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(vocab_size=len(tok), max_position_embeddings=77, bos_token_id=0,
                                         eos_token_id=1, pad_token_id=1, **layers),
                        vision_config=dict(image_size=32, patch_size=8, **layers), projection_dim=16)
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tok)

    def write(folder):
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        weights = folder / "model.safetensors"
        torch.save(load_file(weights), folder / "pytorch_model.bin")
        weights.unlink()

    return processor, model, publish(hub_cache, CLIP_ID, write, remote_only=REMOTE_ONLY[CLIP_ID])


def test_hub_clip_zero_shot_scores_the_hub_models_own_predictions(tiny_clip):
    from transformers import CLIPModel, CLIPProcessor

    from genai_lab import clip

    _, saved, snapshot = tiny_clip
    assert models.hub_model_path("clip") == snapshot and (snapshot / "pytorch_model.bin").is_file()
    images = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # Fashion-MNIST shaped
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress"]

    # the reference: transformers' own CLIP forward on the snapshot, prompts as the package writes them
    processor, model = CLIPProcessor.from_pretrained(snapshot), CLIPModel.from_pretrained(snapshot).eval()
    assert same_weights(model, saved)
    rgb = [(im.repeat(3, 1, 1) * 255).round().to(torch.uint8) for im in images]
    batch = processor(text=[f"a photo of a {n.lower()}." for n in names], images=rgb, return_tensors="pt",
                      padding=True)
    with torch.no_grad():
        probs = model(**batch).logits_per_image.softmax(-1)  # (12, 4): a distribution over the labels
    assert probs.shape == (12, 4) and torch.allclose(probs.sum(-1), torch.ones(12), atol=1e-5)
    expected = probs.argmax(-1)
    assert torch.equal(clip.pretrained_clip_predict(model, processor, images, names), expected)

    # 08_gan_clip_part2: real_clip_acc = clip.hub_clip_zero_shot(test_x, test_y, classes, device=cfg.device)
    assert clip.hub_clip_zero_shot(images, expected, names) == 1.0
    assert clip.hub_clip_zero_shot(images, (expected + 1) % 4, names) == 0.0
    half = expected.clone()
    half[:6] = (half[:6] + 1) % 4
    assert clip.hub_clip_zero_shot(images, half, names, device="cpu") == pytest.approx(0.5)


# --------------------------------------------------------------------------- Stable Diffusion
@pytest.fixture(scope="module")
def tiny_sd(hub_cache):
    """Stable Diffusion's parts in miniature (``CLIPTextModel``, ``UNet2DConditionModel``, ``AutoencoderKL``,
    ``CLIPTokenizer``, SD v1.5's PNDM scheduler config) in the diffusers layout of SD v1.5's repository:
    latents ``(4, 8, 8)`` decode to images ``(3, 16, 16)``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    tok = tiny_clip_tokenizer(max_length=16)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), latent_channels=4,
                        norm_num_groups=8, sample_size=16).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)  # SD v1.5's
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=CLIPImageProcessor(),
                                   requires_safety_checker=False)

    def write(folder):
        pipe.save_pretrained(folder)
        index = json.loads((folder / "model_index.json").read_text())  # as on the hub: it names a safety checker
        index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
        (folder / "model_index.json").write_text(json.dumps(index))

    return pipe, publish(hub_cache, SD_ID, write, remote_only=REMOTE_ONLY[SD_ID])


def test_stable_diffusion_parts_run_the_chapters_pipeline(tiny_sd):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from genai_lab.diffusion import latent
    from genai_lab.train import count_parameters

    pipe, snapshot = tiny_sd
    assert models.hub_model_path("stable-diffusion") == snapshot
    parts = latent.load_stable_diffusion_parts("cpu", None)  # 07_diffusion_latent's gpu cell, below
    assert parts is not None and set(parts) == {"text_encoder", "unet", "vae", "scheduler"}
    assert isinstance(parts["unet"], UNet2DConditionModel) and same_weights(parts["unet"], pipe.unet)
    assert isinstance(parts["vae"], AutoencoderKL) and same_weights(parts["vae"], pipe.vae)
    assert same_weights(parts["text_encoder"].model, pipe.text_encoder)
    assert isinstance(parts["scheduler"], DDIMScheduler)
    assert parts["scheduler"].config.beta_schedule == "scaled_linear"

    sd_prompt = "a watercolor painting of a lighthouse at sunset"
    text_vectors = parts["text_encoder"]([sd_prompt])
    assert text_vectors.shape == (1, 16, 32) and count_parameters(parts["unet"]) > 0
    sd_images, sd_trail = latent.generate_from_text([sd_prompt], latent_shape=(4, 8, 8), steps=25, guidance_scale=7.5,
                                                    generator=torch.Generator().manual_seed(0),
                                                    return_intermediates=True, progress=True, **parts)
    assert sd_images.shape == (1, 3, 16, 16) and sd_images.dtype == torch.float32
    assert 0 <= float(sd_images.min()) and float(sd_images.max()) <= 1 and float(sd_images.std()) > 0
    assert len(sd_trail) == 25 and all(guess is not None and guess.shape == (1, 4, 8, 8) for _, _, guess in sd_trail)
    sd_vae = parts["vae"]
    with torch.no_grad():
        frames = [((sd_vae.decode(s.to(sd_vae.device, sd_vae.dtype) / sd_vae.config.scaling_factor).sample.float()
                    + 1) / 2).clamp(0, 1)[0] for s in (sd_trail[i][2] for i in (0, 8, 16, 24))]
    assert torch.stack(frames).shape == (4, 3, 16, 16)

    # the same seed gives the same picture; the prompt changes it (the UNet reads the text)
    def draw(prompt):
        return latent.generate_from_text([prompt], latent_shape=(4, 8, 8), steps=5, guidance_scale=7.5,
                                         generator=torch.Generator().manual_seed(0), **parts)

    first = draw(sd_prompt)
    assert torch.equal(draw(sd_prompt), first) and not torch.allclose(draw("a red bicycle"), first, atol=1e-4)


def test_stable_diffusion_parts_load_in_half_precision(tiny_sd):
    """The gpu profile loads SD in float16; the dtype reaches every part and the images come back float32."""
    from genai_lab.diffusion import latent

    parts = latent.load_stable_diffusion_parts(dtype=torch.float16)  # device None: where it loads
    assert parts["unet"].dtype == parts["vae"].dtype == parts["text_encoder"].model.dtype == torch.float16
    images = latent.generate_from_text(["a lighthouse"], latent_shape=(4, 8, 8), steps=2, guidance_scale=7.5,
                                       generator=torch.Generator().manual_seed(0), **parts)
    assert images.shape == (1, 3, 16, 16) and images.dtype == torch.float32 and torch.isfinite(images).all()


def test_dreambooth_pipeline_loads_without_the_safety_checker(tiny_sd):
    dreambooth = pytest.importorskip("genai_lab.diffusion.dreambooth")
    if not hasattr(dreambooth, "load_stable_diffusion_pipeline"):
        pytest.skip("dreambooth has no hub loader")
    from diffusers import DDIMScheduler

    pipe, _ = tiny_sd
    loaded = dreambooth.load_stable_diffusion_pipeline()
    assert loaded is not None and isinstance(loaded.scheduler, DDIMScheduler) and loaded.safety_checker is None
    assert same_weights(loaded.unet, pipe.unet)
    images = dreambooth.pipeline_images(loaded, "a sks dog", n=1, steps=2, seed=0)
    assert images.shape == (1, 3, 16, 16) and 0 <= float(images.min()) and float(images.max()) <= 1


# --------------------------------------------------------------------------- the RAG reader
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="module")
def tiny_reader(hub_cache):
    """A ``LlamaForCausalLM`` with a byte-level ``GPT2Tokenizer`` and a ChatML chat template: the classes of
    SmolLM2-1.7B-Instruct, the gpu profile's reader."""
    from transformers import GPT2Tokenizer, LlamaConfig, LlamaForCausalLM

    from genai_lab.rag.generate import GPU_READER

    tok = GPT2Tokenizer(vocab=byte_level_vocab(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), merges=[],
                        unk_token="<|endoftext|>", bos_token="<|im_start|>", eos_token="<|im_end|>",
                        pad_token="<|im_end|>", chat_template=CHATML)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=8192, bos_token_id=tok.bos_token_id,
                                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                         tie_word_embeddings=True)).eval()

    def write(folder):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)

    return tok, model, publish(hub_cache, GPU_READER, write)


class WordHashModel:
    """A deterministic stand-in sentence embedder (hashed bag of words, unit vectors)."""

    def get_embedding_dimension(self):
        return 64

    def encode(self, texts, **kwargs):
        import zlib

        import numpy as np

        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split() or ["empty"]:
                out[i, zlib.crc32(word.encode()) % 64] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_gpu_reader_comes_from_the_hub_and_answers(tiny_reader, tmp_path):
    from transformers import LlamaForCausalLM

    from genai_lab.config import LabConfig
    from genai_lab.rag.embed import Embedder
    from genai_lab.rag.generate import GPU_READER, answer_question, build_messages, generate_reply, load_reader
    from genai_lab.rag.index import RagIndex
    from genai_lab.rag.stores import MemoryStore

    _, saved, snapshot = tiny_reader
    assert models.hub_model_path(GPU_READER) == snapshot
    cfg = LabConfig(profile="gpu", device=torch.device("cpu"), seed=0)
    tok, model, name = load_reader(cfg)  # 09_rag_generation: tok, model, reader_name = load_reader(cfg)
    assert name == GPU_READER and isinstance(model, LlamaForCausalLM) and not model.training
    assert same_weights(model, saved)

    messages = build_messages("What is in the iris dataset?")
    reply = generate_reply(tok, model, messages, max_new_tokens=8)
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert enc["input_ids"][0, 0] == tok.convert_tokens_to_ids("<|im_start|>")  # the template's special tokens
    with torch.no_grad():
        out = saved.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert reply == tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "iris.md").write_text("# Iris\n\nThe iris dataset has 150 flowers of three species.\n")
    (docs / "wine.md").write_text("# Wine\n\nThe wine dataset has 178 samples from three cultivars.\n")
    index = RagIndex(MemoryStore(), Embedder(WordHashModel(), cache_path=False, name="wordhash"))
    index.update(docs)
    answer = answer_question(index, "How many flowers are in the iris dataset?", tok, model, k=2,
                             min_similarity=-1.0, max_new_tokens=8)
    assert not answer.abstained and answer.hits and isinstance(answer.text, str)
    assert answer.context_tokens == 8192 and 0 < answer.prompt_tokens <= 8192 - 8


# --------------------------------------------------------------------------- the cache lookup itself
def test_downloads_fetch_only_what_the_code_loads():
    """The registered file patterns, applied to the real repositories' files, pick one copy of the weights."""
    from huggingface_hub.utils import filter_repo_objects

    wanted = {"bert-base-uncased": (BERT_ID, ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt"]),
              "gpt2": (GPT2_ID, ["config.json", "model.safetensors", "vocab.json", "merges.txt"]),
              "clip": (CLIP_ID, ["config.json", "pytorch_model.bin", "preprocessor_config.json", "vocab.json",
                                 "merges.txt"]),
              "stable-diffusion": (SD_ID, ["model_index.json", "scheduler/scheduler_config.json",
                                           "tokenizer/vocab.json", "tokenizer/merges.txt", "text_encoder/config.json",
                                           "text_encoder/model.safetensors", "unet/config.json",
                                           "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                                           "vae/diffusion_pytorch_model.safetensors",
                                           "feature_extractor/preprocessor_config.json"])}
    for name, (hub_id, needed) in wanted.items():
        picked = set(filter_repo_objects(needed + REMOTE_ONLY[hub_id], allow_patterns=models.hub_files(name)))
        assert picked == set(needed), name
        assert models.hub_files(hub_id) == models.hub_files(name)


def test_cached_lookup_uses_the_download_patterns(tiny_bert, capsys):
    """The cache remembers the repository's whole file list: a lookup for every file finds the snapshot
    incomplete (the weights in other formats were never fetched); the download's patterns find it whole."""
    _, _, snapshot = tiny_bert
    assert models.hub_cached_path(BERT_ID) == snapshot
    assert models.hub_cached_path(BERT_ID, ["*.json", "*.txt", "*.safetensors"]) == snapshot
    try:
        from huggingface_hub._tree_cache import write_tree_cache  # noqa: F401
    except ImportError:
        return
    assert models.hub_cached_path(BERT_ID, ["*"]) is None
    assert models.hub_model_path("bert-base-uncased", allow_patterns=["*"]) is None
    assert "not cached" in capsys.readouterr().err
    assert not models.hub_reachable()  # everything above came from the cache
