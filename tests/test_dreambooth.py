"""DreamBooth with LoRA: peft on the UNet's attention, the prior-preservation loss, the comparison, and
the Stable Diffusion path (save_lora_weights / load_lora_weights) on a tiny pipeline built offline."""

import copy

import pytest
import torch

from genai_lab.diffusion import dreambooth as db
from genai_lab.diffusion import latent


def _tiny_unet(seed=0, text_dim=24):
    torch.manual_seed(seed)
    return latent.TextConditionedLatentUNet(latent.LatentUNetConfig(latent_size=4, latent_channels=1, text_dim=text_dim,
                                                                    block_out_channels=(16, 32)))


def _inputs(n=3, seed=0, text_dim=24):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((n, 1, 4, 4), generator=g), torch.randint(0, 1000, (n,), generator=g),
            torch.randn((n, 5, text_dim), generator=g))


def _attention_projections(unet):
    return sorted(name for name, mod in unet.unet.named_modules()
                  if isinstance(mod, torch.nn.Linear) and name.endswith(db.LORA_TARGETS))


# --------------------------------------------------------------------------- LoRA on the UNet
def test_add_unet_lora_trains_only_lora_matrices_and_starts_as_the_base():
    model = _tiny_unet()
    z, t, text = _inputs()
    targets = _attention_projections(model)
    with torch.no_grad():
        before = model(z, t, text)
    db.add_unet_lora(model, r=2)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # every attention projection (self- and cross-attention, q k v out) got exactly one A and one B
    assert len(trainable) == 2 * len(targets) and len(targets) % 4 == 0
    with torch.no_grad():  # B starts at zero: the adapted model starts exactly as the base
        torch.testing.assert_close(model(z, t, text), before, rtol=0, atol=0)
    # the same count as peft's own get_peft_model on the same UNet
    from peft import LoraConfig, get_peft_model

    ref = get_peft_model(_tiny_unet().unet, LoraConfig(r=2, lora_alpha=2, target_modules=list(db.LORA_TARGETS)))
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad) == ref.get_nb_trainable_parameters()[0]


def test_add_unet_lora_rejects_bad_input():
    with pytest.raises(TypeError, match="model"):
        db.add_unet_lora(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="r must"):
        db.add_unet_lora(_tiny_unet(), r=0)
    with pytest.raises(ValueError, match="targets"):
        db.add_unet_lora(_tiny_unet(), targets="to_q")
    with pytest.raises(ValueError, match="add_unet_lora"):
        db.lora_state_dict(_tiny_unet())


def test_dreambooth_loss_is_concept_loss_plus_weighted_prior_loss():
    model = _tiny_unet()
    z, _, text = _inputs(3)
    pz, _, ptext = _inputs(4, seed=1)
    got = db.dreambooth_loss(model, z, text, pz, ptext, prior_weight=0.5, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    want = (latent.latent_diffusion_loss(model, z, text, generator=g)
            + 0.5 * latent.latent_diffusion_loss(model, pz, ptext, generator=g))
    torch.testing.assert_close(got, want)
    alone = db.dreambooth_loss(model, z, text, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(alone, latent.latent_diffusion_loss(model, z, text,
                                                                   generator=torch.Generator().manual_seed(7)))
    with pytest.raises(ValueError, match="prior_text"):
        db.dreambooth_loss(model, z, text, pz)
    with pytest.raises(ValueError, match="prior_weight"):
        db.dreambooth_loss(model, z, text, pz, ptext, prior_weight=-1.0)


@pytest.mark.parametrize("method", db.METHODS)
def test_finetune_copies_the_base_and_moves_only_what_it_should(method):
    base = _tiny_unet()
    original = {k: v.clone() for k, v in base.state_dict().items()}
    z, t, text = _inputs(4)
    pz, _, ptext = _inputs(6, seed=1)
    model, info = db.dreambooth_finetune(base, z, text, method=method, prior_z=pz, prior_text=ptext, steps=5,
                                         lr=1e-2, r=2, prior_batch_size=3)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in original.items()), "the base must stay untouched"
    with torch.no_grad():
        assert not torch.allclose(model(z, t, text), base(z, t, text)), "training must change the model"
    if method == "lora":
        state = model.unet.state_dict()
        for k, v in base.unet.state_dict().items():  # peft keeps the frozen weight under base_layer
            assert torch.equal(state.get(k, state.get(k.replace(".weight", ".base_layer.weight").replace(
                ".bias", ".base_layer.bias"))), v), k
        assert info["trainable"] < 0.2 * info["total"]
    else:
        assert info["trainable"] == info["total"]
    assert len(info["losses"]) == 5 and all(torch.isfinite(torch.tensor(info["losses"])))


def test_finetune_rejects_bad_input():
    base = _tiny_unet()
    z, _, text = _inputs(2)
    with pytest.raises(ValueError, match="method"):
        db.dreambooth_finetune(base, z, text, method="dora")
    with pytest.raises(TypeError, match="base"):
        db.dreambooth_finetune(base.unet, z, text)
    with pytest.raises(ValueError, match="concept_text"):
        db.dreambooth_finetune(base, z, text[:1])
    with pytest.raises(ValueError, match="together"):
        db.dreambooth_finetune(base, z, text, prior_z=z)
    with pytest.raises(ValueError, match="steps"):
        db.dreambooth_finetune(base, z, text, steps=0)


def test_prompts_settings_and_bad_input():
    assert db.concept_prompt("digits") == "a sks digit"
    assert db.concept_prompt("fashion_mnist", token="zwx") == "a zwx garment"
    prompts, labels = db.old_class_prompts("digits", [str(i) for i in range(10)], 7, 2)
    assert len(prompts) == 18 and 7 not in labels.tolist() and prompts[0] == "a handwritten digit zero"
    with pytest.raises(ValueError, match="dataset"):
        db.concept_prompt("cifar")
    with pytest.raises(ValueError, match="held_out"):
        db.old_class_prompts("digits", [str(i) for i in range(10)], 10, 2)
    with pytest.raises(ValueError, match="steps"):
        db.DreamBoothSettings(steps=0)
    with pytest.raises(ValueError, match="full_lr"):
        db.DreamBoothSettings(full_lr=0.0)
    with pytest.raises(ValueError, match="method"):
        db.method_name("qlora", True)
    with pytest.raises(ValueError, match="state"):
        db.state_dict_bytes({})


def test_adapter_is_a_small_file_that_restores_the_model():
    from peft import set_peft_model_state_dict

    model = db.add_unet_lora(_tiny_unet(), r=2)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    state = db.lora_state_dict(model)
    assert state and all("lora" in k for k in state)
    assert db.state_dict_bytes(state) < 0.2 * db.state_dict_bytes(dict(_tiny_unet().state_dict()))
    fresh = db.add_unet_lora(_tiny_unet(), r=2)
    set_peft_model_state_dict(fresh.unet, state)
    z, t, text = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(fresh(z, t, text), model(z, t, text))


# --------------------------------------------------------------------------- Stable Diffusion, offline
def test_tiny_clip_tokenizer_encodes_characters():
    tok = db.tiny_clip_tokenizer(max_length=16)
    ids = tok(["a sks dog"], padding="max_length", max_length=16, truncation=True).input_ids[0]
    assert len(ids) == 16 and ids[0] == tok.bos_token_id and tok.eos_token_id in ids
    assert tok.unk_token_id not in ids[1:ids.index(tok.eos_token_id)]
    with pytest.raises(ValueError, match="max_length"):
        db.tiny_clip_tokenizer(2)


@pytest.mark.slow
def test_stable_diffusion_lora_round_trip_through_save_and_load(tmp_path):
    """Train LoRA on a tiny StableDiffusionPipeline, save with save_lora_weights, load the file into a
    fresh pipeline with load_lora_weights: the loaded pipeline draws exactly what the trained one draws,
    and that differs from the base pipeline's images."""
    pipe = db.tiny_stable_diffusion_pipeline(seed=0)
    base_images = db.pipeline_images(pipe, "a sks dog", 2, steps=4, seed=3)
    concept = torch.rand((3, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    prior = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    info = db.stable_diffusion_dreambooth_lora(pipe, concept, "a sks dog", r=4, steps=8, lr=5e-2, batch_size=2,
                                               prior_images=prior, prior_prompt="a dog", save_directory=tmp_path,
                                               progress=False)
    assert (tmp_path / "pytorch_lora_weights.safetensors").is_file()
    assert 0 < info["trainable"] < 0.2 * info["total"] and len(info["losses"]) == 8
    assert info["adapter_bytes"] < 0.2 * 4 * info["total"]
    trained = db.pipeline_images(pipe, "a sks dog", 2, steps=4, seed=3)
    assert (trained - base_images).abs().max() > 1e-3, "the adapter must change the output"
    fresh = db.tiny_stable_diffusion_pipeline(seed=0)
    torch.testing.assert_close(db.pipeline_images(fresh, "a sks dog", 2, steps=4, seed=3), base_images)
    fresh.load_lora_weights(str(tmp_path))
    torch.testing.assert_close(db.pipeline_images(fresh, "a sks dog", 2, steps=4, seed=3), trained,
                               atol=1e-5, rtol=1e-4)


def test_stable_diffusion_lora_rejects_bad_input():
    pipe = db.tiny_stable_diffusion_pipeline(seed=0)
    with pytest.raises(ValueError, match="RGB"):
        db.stable_diffusion_dreambooth_lora(pipe, torch.rand(2, 1, 32, 32), "a sks dog")
    with pytest.raises(TypeError, match="prompt"):
        db.stable_diffusion_dreambooth_lora(pipe, torch.rand(2, 3, 32, 32), "")
    with pytest.raises(ValueError, match="together"):
        db.stable_diffusion_dreambooth_lora(pipe, torch.rand(2, 3, 32, 32), "a sks dog", prior_prompt="a dog")
    with pytest.raises(ValueError, match="image_size"):
        db.tiny_stable_diffusion_pipeline(image_size=20)


# --------------------------------------------------------------------------- the experiment at smoke
@pytest.mark.slow
def test_held_out_base_never_sees_the_class(cfg):
    from genai_lab.data import load_images

    _, _, _, meta = db.held_out_latent_diffusion(cfg, "digits", db.DEFAULT_HELD_OUT, progress=False, verbose=False)
    data = load_images("digits", cfg)
    assert meta["metrics"]["train_images"] == int((data.train_y != db.DEFAULT_HELD_OUT).sum())
    assert meta["config"]["held_out"] == db.DEFAULT_HELD_OUT


@pytest.mark.slow
def test_bench_clears_the_issue_bars_at_smoke(cfg):
    from genai_lab import bench

    rows = bench.run_chapter("diffusion_lora", cfg, store=False)
    by = {r["metric"]: r for r in rows}
    for name in ("base_concept_agreement", "lora_prior_concept_agreement", "lora_prior_old_drop"):
        assert by[name]["passed"] is True, by[name]
    assert all(r["passed"] is not False for r in rows)


def test_save_lora_weights_file_loads_back_with_load_lora_adapter(tmp_path):
    """The chapter's own UNet: its adapter written by StableDiffusionPipeline.save_lora_weights (diffusers key
    names) and read into a fresh copy of the base with unet.load_lora_adapter gives the fine-tuned model back."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from safetensors.torch import load_file

    base = _tiny_unet()
    model = db.add_unet_lora(copy.deepcopy(base), r=2)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    StableDiffusionPipeline.save_lora_weights(str(tmp_path),
                                              unet_lora_layers=convert_state_dict_to_diffusers(db.lora_state_dict(model)))
    saved = load_file(tmp_path / "pytorch_lora_weights.safetensors")
    assert all(k.startswith("unet.") and (".lora.down." in k or ".lora.up." in k) for k in saved)
    restored = copy.deepcopy(base)
    restored.unet.load_lora_adapter(str(tmp_path), prefix="unet", weight_name="pytorch_lora_weights.safetensors")
    z, t, text = _inputs()
    with torch.no_grad():
        assert (model(z, t, text) - base(z, t, text)).abs().max() > 1e-3
        torch.testing.assert_close(restored(z, t, text), model(z, t, text))


# --------------------------------------------------------------------------- the lab's exercise 6 and its check
def _lab_step(unet, z0, text, t, noise, alphas_bar, r=4, lr=1e-3, *, freeze="before", targets=db.LORA_TARGETS,
              sqrt=True, target="noise", step=True):
    from peft import LoraConfig

    if freeze == "before":
        unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=r, lora_alpha=r, target_modules=list(targets)))
    if freeze in ("after", "everything"):  # after: the LoRA matrices freeze too; everything: all weights train
        unet.requires_grad_(freeze == "everything")
    a = alphas_bar[t].reshape(-1, 1, 1, 1)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise if sqrt else a * z0 + (1 - a) * noise
    loss = torch.nn.functional.mse_loss(unet(z_t, t, encoder_hidden_states=text).sample,
                                        noise if target == "noise" else z0)
    if step:
        opt = torch.optim.AdamW(list(unet.parameters()), lr=lr)
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_lab_solution_passes_and_the_check_names_each_mistake():
    from functools import partial

    from genai_lab import checks
    from genai_lab.checks.diffusion import check_lora_training_step as check
    from genai_lab.solutions import diffusion as solutions

    assert check(solutions.lora_training_step).status == checks.PASSED
    assert check(_lab_step).status == checks.PASSED
    wrong = {"train everything": (dict(freeze="everything"), "still require gradients"),
             "freeze after add_adapter": (dict(freeze="after"), "before add_adapter"),
             "targets": (dict(targets=("to_q", "to_v")), "wrong layers"),
             "sqrt": (dict(sqrt=False), "square roots"),
             "target": (dict(target="z0"), "predicts the noise"),
             "step": (dict(step=False), "still zero")}
    for name, (kwargs, message) in wrong.items():
        result = check(partial(_lab_step, **kwargs))
        assert result.status == checks.FAILED and message in result.message, (name, result.message)
    assert check(lambda *a, **k: "loss").status == checks.FAILED
