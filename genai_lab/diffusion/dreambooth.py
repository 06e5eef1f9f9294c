"""Teaching a text-to-image model a new concept: DreamBooth with LoRA (Ruiz et al. 2023; Hu et al. 2021).

DreamBooth fine-tunes a pretrained text-to-image model on a handful of pictures of one new subject,
all captioned with a *rare identifier* (``"a sks digit"``): a token the model has no meaning for, so
the fine-tuning can bind the subject to it.  Two things go wrong without care, and this module
measures both on the chapter's text-conditioned latent diffusion model:

- the model may *forget* what it knew (asked for an old class, it now draws the new subject); the
  remedy is **prior preservation**: mix in images the base model itself drew for the old prompts
  (regularisation images), so training keeps its old answers while it learns the new one;
- full fine-tuning moves every weight of the UNet; **LoRA** (here through peft's ``LoraConfig`` on
  the UNet's attention projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0``) trains a small
  low-rank update instead, saved as a file of a few kilobytes.

The pieces:

- :func:`held_out_latent_diffusion` — the chapter's latent diffusion trained (once, cached) with
  one class left out: a base model that has never seen the concept;
- :func:`add_unet_lora`, :func:`dreambooth_loss`, :func:`dreambooth_finetune` — the method;
- :func:`compare_dreambooth` — the chapter's table (LoRA / full fine-tuning, with and without prior
  preservation) and the ``diffusion_lora`` bench entry;
- :func:`stable_diffusion_dreambooth_lora` — the same procedure on a diffusers
  ``StableDiffusionPipeline`` (Stable Diffusion v1.5 from the hub in the gpu profile; a tiny one
  built offline by :func:`tiny_stable_diffusion_pipeline` for the tests), saving with
  ``save_lora_weights`` and loading with ``load_lora_weights``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..bench import Metric, register
from . import latent
from .ddpm import DATASETS

#: the rare identifier of the new concept (DreamBooth's paper uses rare tokens such as "sks")
RARE_TOKEN = "sks"
#: the attention projections LoRA adapts in every (self- and cross-) attention layer of the UNet
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
#: the class noun that follows the identifier in the concept's caption
CLASS_NOUNS = {"digits": "digit", "fashion_mnist": "garment"}
#: the class left out of the base model's training (digits: seven)
DEFAULT_HELD_OUT = 7
METHODS = ("lora", "full")
BASE_NAME = "base (never saw it)"


def concept_prompt(dataset: str = "digits", token: str = RARE_TOKEN) -> str:
    """The caption of the new concept: ``"a sks digit"`` (a rare identifier + the class noun)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if not isinstance(token, str) or not token.strip():
        raise ValueError(f"token must be a non-empty str, got {token!r}")
    return f"a {token} {CLASS_NOUNS[dataset]}"


def _check_held_out(held_out) -> None:
    if isinstance(held_out, bool) or not isinstance(held_out, int) or not 0 <= held_out < 10:
        raise ValueError(f"held_out must be a class index 0…9, got {held_out!r}")


# --------------------------------------------------------------------------- the base model
def held_out_latent_diffusion(cfg, dataset: str = "digits", held_out: int = DEFAULT_HELD_OUT, *,
                              text_encoder=None, retrain: bool = False, progress: bool = True,
                              verbose: bool = True):
    """The chapter's text-conditioned latent diffusion, trained (once, cached) without class ``held_out``.

    Same autoencoder (:func:`latent.trained_autoencoder`: it compresses any image, as Stable
    Diffusion's VAE does), same network, captions and settings (:func:`latent.latent_config_for`)
    as :func:`latent.trained_latent_diffusion`; only the images of ``held_out`` (and so its
    captions) are left out, so the UNet has never seen the concept.

    Returns ``(unet, vae, text_encoder, meta)`` like :func:`latent.trained_latent_diffusion`.
    """
    from ..checkpoints import load_or_train
    from ..data import load_images

    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    _check_held_out(held_out)
    vae, vae_meta = latent.trained_autoencoder(cfg, dataset, progress=progress, verbose=verbose)
    text_encoder = text_encoder or latent.load_text_encoder(cfg.device)
    settings, net, key = latent.latent_unet_setup(cfg, dataset, vae, vae_meta, text_encoder)
    key.update(held_out=held_out, version=2)

    def train(model):
        keep = load_images(dataset, cfg).train_y != held_out
        metrics = latent.train_text_diffusion(model, cfg, dataset, vae, text_encoder, settings, keep=keep,
                                              progress=progress, desc=f"latent diffusion without class {held_out}")
        return {**metrics, "held_out": held_out}

    def build():
        with torch.random.fork_rng(devices=[]):  # the same start whatever ran before in this process
            torch.manual_seed(cfg.seed)
            return latent.TextConditionedLatentUNet(net)

    unet, meta = load_or_train(f"latent-diffusion-{dataset}-without-{held_out}", cfg, key, build, train,
                               retrain=retrain, verbose=verbose)
    return unet, vae, text_encoder, meta


# --------------------------------------------------------------------------- LoRA on the UNet
def _core_unet(model):
    """The diffusers ``UNet2DConditionModel`` inside ``model`` (or ``model`` itself)."""
    from diffusers import UNet2DConditionModel

    core = model.unet if isinstance(model, latent.TextConditionedLatentUNet) else model
    if not isinstance(core, UNet2DConditionModel):
        raise TypeError(f"model must be a TextConditionedLatentUNet or a UNet2DConditionModel, got {type(model).__name__}")
    return core


def add_unet_lora(model, r: int = 4, alpha: float | None = None, targets=LORA_TARGETS):
    """Freeze the UNet and attach a peft LoRA adapter to its attention projections (in place).

    ``model``: a :class:`latent.TextConditionedLatentUNet` or a diffusers ``UNet2DConditionModel``.
    Uses diffusers' PEFT integration, ``unet.add_adapter(LoraConfig(r, lora_alpha, target_modules))``,
    as diffusers' own DreamBooth-LoRA script does; ``alpha`` defaults to ``r`` (scaling 1).
    Afterwards only the ``lora_A`` / ``lora_B`` matrices require gradients.  Returns ``model``.
    """
    from peft import LoraConfig

    from ..lora import _check_rank_alpha

    alpha = float(r) if alpha is None and isinstance(r, int) and not isinstance(r, bool) else alpha
    _check_rank_alpha(r, alpha)
    if isinstance(targets, str) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets must be a non-empty list of module names, got {targets!r}")
    core = _core_unet(model)
    core.requires_grad_(False)
    core.add_adapter(LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets)))
    return model


def lora_state_dict(model) -> dict[str, torch.Tensor]:
    """The adapter's weights only (peft's ``get_peft_model_state_dict``): what a LoRA file holds."""
    from peft.utils import get_peft_model_state_dict

    core = _core_unet(model)
    if not getattr(core, "_hf_peft_config_loaded", False):
        raise ValueError("model has no LoRA adapter: call add_unet_lora first")
    return get_peft_model_state_dict(core)


def state_dict_bytes(state: dict[str, torch.Tensor]) -> int:
    """Size in bytes of ``state`` saved as a safetensors file."""
    from safetensors.torch import save

    if not isinstance(state, dict) or not state:
        raise ValueError("state must be a non-empty dict of tensors")
    return len(save({k: v.detach().contiguous().cpu() for k, v in state.items()}))


# --------------------------------------------------------------------------- DreamBooth training
def dreambooth_loss(model, concept_z: torch.Tensor, concept_text: torch.Tensor, prior_z: torch.Tensor | None = None,
                    prior_text: torch.Tensor | None = None, *, prior_weight: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """DreamBooth's loss: the diffusion loss on the concept, plus ``prior_weight`` × the loss on prior images.

    ``concept_z (n, c, h, w)`` with ``concept_text (n, L, D)``; optional ``prior_z (m, c, h, w)``
    with ``prior_text (m, L, D)`` (regularisation images of old classes with their captions).
    """
    loss = latent.latent_diffusion_loss(model, concept_z, concept_text, generator=generator)
    if prior_z is None:
        return loss
    if prior_text is None:
        raise ValueError("prior_text must be given with prior_z")
    if not prior_weight >= 0:
        raise ValueError(f"prior_weight must be ≥ 0, got {prior_weight!r}")
    return loss + prior_weight * latent.latent_diffusion_loss(model, prior_z, prior_text, generator=generator)


@dataclass(frozen=True)
class DreamBoothSettings:
    """Everything that shapes one DreamBooth comparison (sizes per profile: :func:`dreambooth_settings`)."""

    n_examples: int = 10          # pictures of the new concept
    steps: int = 150              # optimiser steps of every method
    lr: float = 5e-3              # learning rate of LoRA
    full_lr: float = 5e-4         # learning rate of full fine-tuning (a tenth, as in chapter 6)
    r: int = 4                    # LoRA rank
    prior_per_class: int = 10     # regularisation images per old class, drawn by the base model
    prior_batch_size: int = 18    # prior images per step (next to all concept images)
    prior_weight: float = 1.0
    sample_steps: int = 20        # DDIM steps when sampling
    guidance_scale: float = 3.0
    eval_concept: int = 100       # samples of the concept prompt to judge
    eval_per_class: int = 20      # samples per old class (and of the held-out class's own name) to judge

    def __post_init__(self) -> None:
        for name in ("n_examples", "steps", "r", "prior_per_class", "prior_batch_size", "sample_steps",
                     "eval_concept", "eval_per_class"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("lr", "full_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


def dreambooth_settings(cfg) -> DreamBoothSettings:
    """The profile's sizes (the notebook and the bench use the same)."""
    return DreamBoothSettings(steps=cfg.pick(smoke=150, cpu=200, gpu=200),
                              prior_per_class=cfg.pick(smoke=10, cpu=20, gpu=20),
                              sample_steps=cfg.pick(smoke=20, cpu=30, gpu=30),
                              eval_concept=cfg.pick(smoke=100, cpu=200, gpu=200),
                              eval_per_class=cfg.pick(smoke=10, cpu=40, gpu=100))


def dreambooth_finetune(base, concept_z: torch.Tensor, concept_text: torch.Tensor, *, method: str = "lora",
                        prior_z: torch.Tensor | None = None, prior_text: torch.Tensor | None = None,
                        steps: int = 150, lr: float = 5e-3, r: int = 4, prior_batch_size: int = 18,
                        prior_weight: float = 1.0, seed: int = 0, progress: bool = False):
    """Copy ``base`` and fine-tune it DreamBooth-style; ``base`` itself is left untouched.

    ``method``: ``"lora"`` (:func:`add_unet_lora`, rank ``r``) or ``"full"`` (every UNet weight).
    Every step sees all concept latents ``concept_z (n, c, h, w)`` with ``concept_text (n, L, D)``
    and, with prior preservation, ``prior_batch_size`` random rows of ``prior_z``/``prior_text``;
    AdamW at ``lr``, decayed to 0 along a cosine over the ``steps``.

    Returns ``(model, info)``; ``info``: ``trainable``, ``total`` (parameters), ``seconds``
    (training wall time), ``losses``.
    """
    from ..lora import count_trainable
    from ..train import train_loop

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(base, latent.TextConditionedLatentUNet):
        raise TypeError(f"base must be a TextConditionedLatentUNet, got {type(base).__name__}")
    latent._check_4d(concept_z, "concept_z")
    if not isinstance(concept_text, torch.Tensor) or concept_text.ndim != 3 or len(concept_text) != len(concept_z):
        raise ValueError("concept_text must be a tensor (n, L, D) with one row per concept latent")
    if (prior_z is None) != (prior_text is None):
        raise ValueError("prior_z and prior_text must be given together")
    if prior_z is not None and len(prior_z) != len(prior_text):
        raise ValueError(f"prior_text must have one row per prior latent, got {len(prior_text)} and {len(prior_z)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    model = copy.deepcopy(base).train()
    torch.manual_seed(seed)  # LoRA's A starts random: the same start whatever ran before
    if method == "lora":
        add_unet_lora(model, r=r)
    else:
        model.requires_grad_(True)
    trainable, total = count_trainable(model)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    concept_z, concept_text = concept_z.to(device), concept_text.to(device)

    def batches():
        while True:
            if prior_z is None:
                yield (None,)
            else:
                idx = torch.randint(0, len(prior_z), (min(prior_batch_size, len(prior_z)),), generator=gen)
                yield (prior_z[idx].to(device), prior_text[idx].to(device))

    def loss_fn(m, batch):
        return dreambooth_loss(m, concept_z, concept_text, *batch, prior_weight=prior_weight, generator=gen)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    # the rate decays to 0 along a cosine: from a handful of pictures the last steps otherwise leave
    # the model wherever the final noisy updates push it
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    hist = train_loop(model, opt, batches(), loss_fn, steps, scheduler=decay, clip_grad=1.0, progress=progress,
                      desc=f"DreamBooth ({method})")
    return model.eval(), {"trainable": trainable, "total": total, "seconds": hist.seconds, "losses": hist.losses}


# --------------------------------------------------------------------------- sampling and judging
def sample_prompts(model, vae, text_encoder, prompts: list[str], *, steps: int = 20, guidance_scale: float = 3.0,
                   seed: int = 0) -> torch.Tensor:
    """Images ``(N, C, H, W)`` in ``[0, 1]`` for ``prompts`` (DDIM, classifier-free guidance), seeded."""
    shape = (model.config.latent_channels, model.config.latent_size, model.config.latent_size)
    return latent.generate_from_text(list(prompts), text_encoder=text_encoder, unet=model, vae=vae,
                                     scheduler=model.scheduler("ddim"), latent_shape=shape, steps=steps,
                                     guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed))


def old_class_prompts(dataset: str, classes, held_out: int, per_class: int) -> tuple[list[str], torch.Tensor]:
    """Each old class's first training caption, ``per_class`` times: ``(prompts, labels (9·per_class,))``."""
    from .quality import balanced_labels

    _check_held_out(held_out)
    labels = balanced_labels(len(classes), per_class)
    labels = labels[labels != held_out]
    captions = latent.captions_for(dataset, classes)
    return [captions[int(k)][0] for k in labels], labels


@torch.no_grad()
def judge_model(model, vae, text_encoder, classifier, *, dataset: str, classes, held_out: int,
                settings: DreamBoothSettings, seed: int = 1000) -> dict:
    """The CNN judge's agreement on the new concept and on the old classes.

    ``concept``: share of ``eval_concept`` samples of :func:`concept_prompt` that the classifier
    puts in class ``held_out``; ``old``: share of samples of the old classes' captions classified
    as requested; ``name``: share of ``eval_per_class`` samples of the held-out class's own caption
    (``"a handwritten digit seven"``, which the base model never saw either) put in that class.
    Same starting noise for every model.
    """
    from .quality import judge_samples

    n = settings.eval_concept
    concept = sample_prompts(model, vae, text_encoder, [concept_prompt(dataset)] * n, steps=settings.sample_steps,
                             guidance_scale=settings.guidance_scale, seed=seed)
    prompts, labels = old_class_prompts(dataset, classes, held_out, settings.eval_per_class)
    old = sample_prompts(model, vae, text_encoder, prompts, steps=settings.sample_steps,
                         guidance_scale=settings.guidance_scale, seed=seed + 1)
    k = settings.eval_per_class
    by_name = sample_prompts(model, vae, text_encoder, [latent.captions_for(dataset, classes)[held_out][0]] * k,
                             steps=settings.sample_steps, guidance_scale=settings.guidance_scale, seed=seed + 2)
    return {"concept": judge_samples(classifier, concept, torch.full((n,), held_out))["class_agreement"],
            "old": judge_samples(classifier, old, labels)["class_agreement"],
            "name": judge_samples(classifier, by_name, torch.full((k,), held_out))["class_agreement"],
            "concept_images": concept[:10], "old_images": old}


def prior_preservation_set(base, vae, text_encoder, *, dataset: str, classes, held_out: int, per_class: int,
                           steps: int = 20, guidance_scale: float = 3.0, seed: int = 500):
    """Regularisation data: the base model's own samples of every old class, with their captions.

    Returns ``(images (m, C, H, W), prior_z (m, c, h, w), prior_text (m, L, D), prompts)``, ``m = 9 · per_class``;
    the captions cycle through each class's training captions.  Drawn with another seed than
    :func:`judge_model` uses, so the evaluation never sees these exact samples.
    """
    _, labels = old_class_prompts(dataset, classes, held_out, per_class)
    captions = latent.captions_for(dataset, classes)
    prompts = [captions[int(k)][i % len(captions[int(k)])] for i, k in enumerate(labels)]
    images = sample_prompts(base, vae, text_encoder, prompts, steps=steps, guidance_scale=guidance_scale, seed=seed)
    return images, latent.encode_images(vae, images), text_encoder(prompts).cpu(), prompts


# --------------------------------------------------------------------------- the comparison
def concept_examples(dataset: str, cfg, held_out: int, n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` training images ``(n, 1, H, W)`` of class ``held_out``, chosen at random (seeded)."""
    from ..data import load_images

    _check_held_out(held_out)
    data = load_images(dataset, cfg)
    pool = data.train_x[data.train_y == held_out]
    if not 1 <= n <= len(pool):
        raise ValueError(f"n must be in 1…{len(pool)}, got {n!r}")
    return pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]]


def prepare_dreambooth(cfg, dataset: str = "digits", held_out: int = DEFAULT_HELD_OUT, *,
                       settings: DreamBoothSettings | None = None, progress: bool = True, verbose: bool = False) -> dict:
    """Everything the methods share: the held-out base model, the judge, the concept and prior data.

    Returns a dict: ``base``, ``vae``, ``text_encoder``, ``classifier``, ``base_meta``, ``classes``,
    ``examples (n, 1, H, W)``, ``concept_z``, ``concept_text``, ``prior_images``, ``prior_z``,
    ``prior_text``, ``prior_prompts``, ``settings``, ``dataset``, ``held_out``.
    """
    from ..cnn import trained_classifier
    from ..data import load_images

    settings = settings or dreambooth_settings(cfg)
    if not isinstance(settings, DreamBoothSettings):
        raise TypeError(f"settings must be a DreamBoothSettings, got {type(settings).__name__}")
    base, vae, text_encoder, base_meta = held_out_latent_diffusion(cfg, dataset, held_out, progress=progress,
                                                                  verbose=verbose)
    classifier, _ = trained_classifier(cfg, dataset, verbose=verbose)
    classes = load_images(dataset, cfg).classes
    examples = concept_examples(dataset, cfg, held_out, settings.n_examples, seed=cfg.seed)
    prior_images, prior_z, prior_text, prior_prompts = prior_preservation_set(
        base, vae, text_encoder, dataset=dataset, classes=classes, held_out=held_out,
        per_class=settings.prior_per_class, steps=settings.sample_steps, guidance_scale=settings.guidance_scale)
    return {"base": base, "vae": vae, "text_encoder": text_encoder, "classifier": classifier, "base_meta": base_meta,
            "classes": classes, "examples": examples, "concept_z": latent.encode_images(vae, examples),
            "concept_text": text_encoder([concept_prompt(dataset)] * len(examples)).cpu(),
            "prior_images": prior_images, "prior_z": prior_z, "prior_text": prior_text,
            "prior_prompts": prior_prompts, "settings": settings, "dataset": dataset, "held_out": held_out,
            "seed": cfg.seed}


def method_name(method: str, prior: bool) -> str:
    """``"LoRA"``, ``"LoRA + prior"``, ``"full fine-tuning"``, ``"full fine-tuning + prior"``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return ("LoRA" if method == "lora" else "full fine-tuning") + (" + prior" if prior else "")


def judge_row(prep: dict, model, name: str, *, trainable: int = 0, seconds: float = 0.0) -> dict:
    """One row of the comparison: :func:`judge_model`'s numbers for ``model`` and its bookkeeping."""
    scores = judge_model(model, prep["vae"], prep["text_encoder"], prep["classifier"], dataset=prep["dataset"],
                         classes=prep["classes"], held_out=prep["held_out"], settings=prep["settings"])
    return {"method": name, "trainable": trainable, "total": sum(p.numel() for p in model.parameters()),
            "seconds": seconds, **scores}


def run_method(prep: dict, method: str = "lora", prior: bool = True, *, progress: bool = False):
    """Fine-tune ``prep["base"]`` one way (:func:`dreambooth_finetune`) and judge it: ``(model, row)``.

    LoRA trains at ``settings.lr``, full fine-tuning at ``settings.full_lr``; everything else
    (steps, concept images, prior images, seed) is the same for every method.
    """
    s = prep["settings"]
    model, info = dreambooth_finetune(
        prep["base"], prep["concept_z"], prep["concept_text"], method=method,
        prior_z=prep["prior_z"] if prior else None, prior_text=prep["prior_text"] if prior else None,
        steps=s.steps, lr=s.lr if method == "lora" else s.full_lr, r=s.r, prior_batch_size=s.prior_batch_size,
        prior_weight=s.prior_weight, seed=prep["seed"], progress=progress)
    return model, judge_row(prep, model, method_name(method, prior), trainable=info["trainable"],
                            seconds=info["seconds"])


def compare_dreambooth(cfg, dataset: str = "digits", held_out: int = DEFAULT_HELD_OUT, *,
                       settings: DreamBoothSettings | None = None, progress: bool = True, verbose: bool = False) -> dict:
    """The chapter's experiment: teach the held-out base model the concept four ways and judge each.

    LoRA and full fine-tuning, each without and with prior preservation (:func:`run_method`).
    Returns ``{"rows": [base row, then one per method], "models": {name: model}, "adapter_bytes",
    "unet_bytes", "prep"}``; a row holds ``method``, ``concept``, ``old``, ``name`` (agreements),
    ``trainable``, ``total``, ``seconds``.
    """
    prep = prepare_dreambooth(cfg, dataset, held_out, settings=settings, progress=progress, verbose=verbose)
    rows, models = [judge_row(prep, prep["base"], BASE_NAME)], {}
    for method in METHODS:
        for prior in (False, True):
            model, row = run_method(prep, method, prior, progress=progress)
            rows.append(row)
            models[row["method"]] = model
    return {"rows": rows, "models": models, "prep": prep,
            "adapter_bytes": state_dict_bytes(lora_state_dict(models["LoRA + prior"])),
            "unet_bytes": state_dict_bytes(dict(prep["base"].state_dict()))}


def plot_forgetting(rows: list[dict], ax=None, title: str = "What DreamBooth learned and what it forgot"):
    """Grouped bars per method: the judge's agreement on the new concept and on the old classes."""
    import matplotlib.pyplot as plt

    if not rows or not all({"method", "concept", "old"} <= set(r) for r in rows):
        raise ValueError("rows must be a non-empty list of dicts with 'method', 'concept' and 'old'")
    ax = ax or plt.subplots(figsize=(8, 4))[1]
    x = torch.arange(len(rows)).float()
    width = 0.38
    ax.bar(x - width / 2, [r["concept"] for r in rows], width, label=f"new concept ({rows[0].get('prompt', 'sks')})")
    ax.bar(x + width / 2, [r["old"] for r in rows], width, label="old classes")
    ax.set_xticks(x.tolist(), [r["method"].replace(" + ", "\n+ ").replace(" (", "\n(") for r in rows], fontsize=8)
    ax.set(title=title, xlabel="model", ylabel="judged class agreement", ylim=(0, 1.05))
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    return ax


# --------------------------------------------------------------------------- Stable Diffusion (hub path)
def tiny_clip_tokenizer(max_length: int = 32):
    """A character-level ``CLIPTokenizer`` built offline (byte-level alphabet, no merges).

    Stable Diffusion's tokenizer has 49,408 BPE tokens; this one knows only single characters, which
    is all a tiny, randomly initialised pipeline needs to run the same code.
    """
    from transformers import CLIPTokenizer

    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 4:
        raise ValueError(f"max_length must be an int ≥ 4, got {max_length!r}")
    chars = [chr(c) for c in range(ord("!"), ord("~") + 1)] + [chr(c) for c in range(ord("¡"), ord("¬") + 1)]
    chars += [chr(c) for c in range(ord("®"), ord("ÿ") + 1)] + [chr(256 + i) for i in range(68)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_stable_diffusion_pipeline(seed: int = 0, image_size: int = 32):
    """A ``StableDiffusionPipeline`` of the same classes as Stable Diffusion v1.5, tiny and random, offline.

    ``UNet2DConditionModel`` (cross-attention, 4 latent channels), ``AutoencoderKL`` (image
    ``(3, image_size, image_size)`` → latent ``(4, image_size/2, image_size/2)``), ``CLIPTextModel``
    (32 wide), :func:`tiny_clip_tokenizer` and a DDIM scheduler with Stable Diffusion's betas.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8 or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 (≥ 8), got {image_size!r}")
    tokenizer = tiny_clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                    attention_head_dim=8, norm_num_groups=8)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), latent_channels=4,
                            norm_num_groups=8, sample_size=image_size)
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                                    num_hidden_layers=2, num_attention_heads=4,
                                                    max_position_embeddings=tokenizer.model_max_length,
                                                    bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_stable_diffusion_pipeline(device=None):
    """Stable Diffusion v1.5 as a ``StableDiffusionPipeline`` (float32, for training), or ``None``
    when the hub is not reachable (the same test as :func:`latent.load_stable_diffusion_parts`)."""
    from ..models import hub_model_path

    path = hub_model_path("stable-diffusion")
    if path is None:
        return None
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device) if device is not None else pipe


@torch.no_grad()
def pipeline_images(pipe, prompt: str, n: int = 4, *, steps: int = 25, guidance_scale: float = 7.5,
                    seed: int = 0) -> torch.Tensor:
    """``n`` images ``(n, 3, H, W)`` in ``[0, 1]`` (CPU) from a ``StableDiffusionPipeline``, seeded."""
    if not isinstance(prompt, str) or not prompt:
        raise TypeError("prompt must be a non-empty str")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe([prompt] * n, num_inference_steps=steps, guidance_scale=guidance_scale, generator=gen,
               output_type="pt")
    return out.images.float().cpu()


def stable_diffusion_dreambooth_lora(pipe, images: torch.Tensor, prompt: str, *, r: int = 4, steps: int = 300,
                                     lr: float = 1e-4, batch_size: int = 1, prior_images: torch.Tensor | None = None,
                                     prior_prompt: str | None = None, prior_weight: float = 1.0, seed: int = 0,
                                     save_directory: str | Path | None = None, progress: bool = True) -> dict:
    """DreamBooth with LoRA on a diffusers ``StableDiffusionPipeline`` (in place: ``pipe.unet`` gets the adapter).

    ``images (N, 3, H, W)`` in ``[0, 1]`` at the pipeline's resolution show the concept named by
    ``prompt`` (e.g. ``"a photo of sks dog"``); optional ``prior_images`` with ``prior_prompt``
    are the regularisation images.  The UNet is frozen and gets ``LoraConfig`` on its attention
    projections (``unet.add_adapter``); the loss follows the scheduler's ``prediction_type``.
    With ``save_directory`` the adapter is written by ``save_lora_weights`` (load it into another
    pipeline with ``pipe.load_lora_weights(save_directory)``).

    Returns ``{"trainable", "total", "seconds", "losses", "adapter_bytes", "path"}``.
    """
    from diffusers import DDPMScheduler
    from diffusers.utils import convert_state_dict_to_diffusers
    from tqdm.auto import tqdm

    from ..config import show_progress
    from ..lora import count_trainable

    latent._check_4d(images, "images")
    if images.shape[1] != 3:
        raise ValueError(f"images must be RGB (N, 3, H, W), got {tuple(images.shape)}")
    if not isinstance(prompt, str) or not prompt:
        raise TypeError("prompt must be a non-empty str")
    if (prior_images is None) != (prior_prompt is None):
        raise ValueError("prior_images and prior_prompt must be given together")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    unet, vae = pipe.unet, pipe.vae
    device, dtype = unet.device, unet.dtype
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)

    @torch.no_grad()
    def encode(x, text):
        z = vae.encode((x * 2 - 1).to(device, vae.dtype)).latent_dist.mean * vae.config.scaling_factor
        emb = pipe.encode_prompt(text, device, 1, False)[0]
        return z.to(dtype), emb.to(dtype)

    concept_z, concept_emb = encode(images, prompt)
    prior = encode(prior_images, prior_prompt) if prior_images is not None else None
    torch.manual_seed(seed)
    add_unet_lora(unet, r=r)
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:  # train the adapter in float32 even when the UNet runs in half precision
        p.data = p.data.float()
    trainable, total = count_trainable(unet)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)

    def loss_on(z0, emb):
        idx = torch.randint(0, len(z0), (min(batch_size, len(z0)),), generator=gen)
        z0 = z0[idx.to(z0.device)]
        noise = torch.randn(z0.shape, generator=gen).to(device, dtype)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(z0),), generator=gen).to(device)
        target = noise if noise_scheduler.config.prediction_type == "epsilon" else noise_scheduler.get_velocity(z0, noise, t)
        pred = unet(noise_scheduler.add_noise(z0, noise, t), t, encoder_hidden_states=emb.expand(len(z0), -1, -1)).sample
        return nn.functional.mse_loss(pred.float(), target.float())

    unet.train()
    losses, start = [], time.perf_counter()
    for _ in tqdm(range(steps), desc="DreamBooth LoRA (Stable Diffusion)", disable=not (progress and show_progress()),
                  leave=False):
        loss = loss_on(concept_z, concept_emb)
        if prior is not None:
            loss = loss + prior_weight * loss_on(*prior)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    unet.eval()
    info = {"trainable": trainable, "total": total, "seconds": time.perf_counter() - start, "losses": losses,
            "adapter_bytes": state_dict_bytes(lora_state_dict(unet)), "path": None}
    if save_directory is not None:
        type(pipe).save_lora_weights(str(save_directory),
                                     unet_lora_layers=convert_state_dict_to_diffusers(lora_state_dict(unet)))
        info["path"] = str(save_directory)
    return info


# --------------------------------------------------------------------------- bench
@register("diffusion_lora", "DreamBooth-LoRA on the held-out latent diffusion model: new concept vs forgetting")
def bench_diffusion_lora(cfg) -> list[Metric]:
    """Teach the base model (trained without one class) that class from a handful of pictures."""
    start = time.perf_counter()
    out = compare_dreambooth(cfg, progress=False)
    by = {r["method"]: r for r in out["rows"]}
    base, lora, lora_prior = by[BASE_NAME], by["LoRA"], by["LoRA + prior"]
    full, full_prior = by["full fine-tuning"], by["full fine-tuning + prior"]
    return [
        Metric("base_concept_agreement", base["concept"], False, bar=0.25),
        Metric("lora_prior_concept_agreement", lora_prior["concept"], True, bar=0.80),
        Metric("lora_prior_old_drop", base["old"] - lora_prior["old"], False, bar=0.10),
        Metric("lora_concept_agreement", lora["concept"], True),
        Metric("lora_old_drop", base["old"] - lora["old"], False),
        Metric("full_ft_concept_agreement", full["concept"], True),
        Metric("full_ft_old_drop", base["old"] - full["old"], False),
        Metric("full_ft_prior_concept_agreement", full_prior["concept"], True),
        Metric("full_ft_prior_old_drop", base["old"] - full_prior["old"], False),
        Metric("base_old_agreement", base["old"], True),
        Metric("lora_trainable_share", lora["trainable"] / lora["total"], False),
        Metric("lora_adapter_bytes", out["adapter_bytes"], False, unit="bytes"),
        Metric("lora_prior_train_seconds", lora_prior["seconds"], False, unit="s"),
        Metric("bench_seconds", time.perf_counter() - start, False, unit="s"),
    ]
