"""Latent diffusion and the Stable Diffusion pipeline, in miniature (Rombach et al. 2022).

Stable Diffusion is not a new kind of network; it is a *pipeline* of three trained parts:

1. a **text encoder** turns the prompt into one vector per token ``(N, L, D)`` (CLIP in
   Stable Diffusion; here the offline all-MiniLM-L6-v2 encoder, frozen, as in SD);
2. a **UNet** (``UNet2DConditionModel``) predicts the noise in a *latent* ``(N, c, h, w)``;
   cross-attention layers mix the text vectors in; it runs once per denoising step;
3. the **decoder** of an autoencoder (``AutoencoderKL``) turns the final latent into pixels.

The autoencoder is trained first (reconstruct the image through a small latent), then the
diffusion is trained on latents, which are smaller than images, so each denoising step costs less.
:func:`generate_from_text` runs that pipeline step by step and works unchanged with the real
Stable Diffusion parts (see :func:`load_stable_diffusion_parts`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .ddpm import DATASETS, classifier_free_guidance, to_image_range, to_model_range
from .schedule import SCHEDULES, alphas_cumprod, beta_schedule, make_scheduler

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_TEMPLATES = {
    "digits": ("a handwritten digit {word}", "the number {word}", "a picture of the digit {index}"),
    "fashion_mnist": ("a photo of a {name}", "a grey picture of a {name}", "a {name}"),
}


def _check_4d(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(value.shape)}")


def captions_for(dataset: str, classes) -> list[list[str]]:
    """The training captions: for each class, a few short sentences naming it."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    out = []
    for i, name in enumerate(classes):
        word = DIGIT_WORDS[i] if dataset == "digits" else str(name).lower()
        out.append([t.format(word=word, index=i, name=str(name).lower()) for t in CAPTION_TEMPLATES[dataset]])
    return out


# --------------------------------------------------------------------------- the autoencoder
@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of the ``AutoencoderKL``: each extra block halves the image side."""

    image_size: int = 8
    channels: int = 1
    latent_channels: int = 1
    block_out_channels: tuple[int, ...] = (32, 64)
    mid_attention: bool = False  # Stable Diffusion's VAE has self-attention in its middle block

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.block_out_channels) - 1)

    @property
    def compression_ratio(self) -> float:
        """Numbers in an image over numbers in its latent (Stable Diffusion: 512·512·3 / 64·64·4 = 48)."""
        return self.channels * self.image_size ** 2 / (self.latent_channels * self.latent_size ** 2)


def build_autoencoder(config: AutoencoderConfig):
    """A small diffusers ``AutoencoderKL`` (the VAE class Stable Diffusion uses).

    ``encode(x (N, C, H, W) in [-1, 1]).latent_dist`` → a Gaussian over ``(N, c, h, w)``;
    ``decode(z).sample`` → ``(N, C, H, W)``.
    """
    from diffusers import AutoencoderKL

    if not isinstance(config, AutoencoderConfig):
        raise TypeError(f"config must be an AutoencoderConfig, got {type(config).__name__}")
    levels = len(config.block_out_channels)
    return AutoencoderKL(in_channels=config.channels, out_channels=config.channels,
                         down_block_types=("DownEncoderBlock2D",) * levels,
                         up_block_types=("UpDecoderBlock2D",) * levels,
                         block_out_channels=tuple(config.block_out_channels), layers_per_block=1,
                         latent_channels=config.latent_channels, norm_num_groups=8,
                         sample_size=config.image_size, mid_block_add_attention=config.mid_attention)


def autoencoder_loss(vae, x: torch.Tensor, *, kl_weight: float = 1e-4,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Reconstruction MSE plus a small KL term that keeps the latent close to ``N(0, I)``.

    ``x``: ``(N, C, H, W)`` in ``[-1, 1]``.
    """
    _check_4d(x, "x")
    posterior = vae.encode(x).latent_dist
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(x.device)
    recon = vae.decode(z).sample
    kl = posterior.kl().mean() / x[0].numel()
    return nn.functional.mse_loss(recon, x) + kl_weight * kl


@torch.no_grad()
def encode_images(vae, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """``[0, 1]`` images ``(N, C, H, W)`` → scaled latents ``(N, c, h, w)`` (posterior mean · scaling_factor)."""
    _check_4d(images, "images")
    device = next(vae.parameters()).device
    out = [vae.encode(to_model_range(chunk).to(device)).latent_dist.mean.cpu() for chunk in images.split(batch_size)]
    return torch.cat(out) * vae.config.scaling_factor


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents ``(N, c, h, w)`` → images ``(N, C, H, W)`` in ``[0, 1]`` on the CPU."""
    _check_4d(latents, "latents")
    device = next(vae.parameters()).device
    return to_image_range(vae.decode(latents.to(device) / vae.config.scaling_factor).sample.cpu())


def autoencoder_config_for(cfg, dataset: str) -> tuple[AutoencoderConfig, dict]:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset == "digits":
        net = AutoencoderConfig(image_size=8, latent_channels=1, block_out_channels=cfg.pick(
            smoke=(16, 32), cpu=(32, 64), gpu=(64, 128)), mid_attention=cfg.pick(smoke=False, cpu=True, gpu=True))
        train = dict(steps=cfg.pick(smoke=400, cpu=2000, gpu=3000), batch_size=64, lr=3e-3)
    else:
        # cpu: three levels (28 → 7) with two channels, so the latent UNet steps on 7×7 instead of 14×14
        # (about five times cheaper per step on 2 cores, which keeps the cpu build within its budget)
        net = AutoencoderConfig(image_size=28, latent_channels=cfg.pick(smoke=1, cpu=2, gpu=1), block_out_channels=cfg.pick(
            smoke=(16, 32), cpu=(16, 32, 32), gpu=(64, 128)), mid_attention=cfg.pick(smoke=False, cpu=False, gpu=True))
        train = dict(steps=cfg.pick(smoke=300, cpu=1500, gpu=6000), batch_size=cfg.pick(smoke=32, cpu=32, gpu=128),
                     lr=2e-3)
    return net, train


def trained_autoencoder(cfg, dataset: str = "digits", *, retrain: bool = False, progress: bool = True,
                        verbose: bool = True):
    """The chapter's ``AutoencoderKL`` for ``dataset``, trained once and cached.

    Returns ``(vae, meta)``; ``vae.config.scaling_factor`` is set to ``1 / std`` of the training
    latents (Stable Diffusion's 0.18215 was found the same way), and ``meta["metrics"]`` holds
    ``test_mse`` (on ``[0, 1]`` pixels), ``compression_ratio``, ``latent_shape`` and the losses.
    """
    from ..checkpoints import load_or_train
    from ..data import load_images
    from ..train import infinite_batches, train_loop

    net, settings = autoencoder_config_for(cfg, dataset)
    key = {"net": asdict(net), **settings, "dataset": dataset, "seed": cfg.seed, "version": 1}

    def train(vae):
        data = load_images(dataset, cfg)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(vae.parameters(), lr=settings["lr"])
        batches = infinite_batches(to_model_range(data.train_x), batch_size=settings["batch_size"],
                                   generator=gen, device=cfg.device)
        hist = train_loop(vae, opt, batches, lambda m, b: autoencoder_loss(m, b[0], generator=gen),
                          settings["steps"], clip_grad=1.0, progress=progress, desc="autoencoder training")
        vae.eval()
        vae.register_to_config(scaling_factor=1.0)
        latents = encode_images(vae, data.train_x)
        recon = decode_latents(vae, encode_images(vae, data.test_x))
        return {"scaling_factor": float(1.0 / latents.std()), "test_mse": float(((recon - data.test_x) ** 2).mean()),
                "compression_ratio": net.compression_ratio,
                "latent_shape": [net.latent_channels, net.latent_size, net.latent_size],
                "losses": [round(v, 5) for v in hist.losses[::10]], "train_seconds": hist.seconds}

    vae, meta = load_or_train(f"vae-{dataset}", cfg, key, lambda: build_autoencoder(net), train, retrain=retrain,
                              verbose=verbose)
    vae.register_to_config(scaling_factor=meta["metrics"]["scaling_factor"])
    return vae.requires_grad_(False), meta


# --------------------------------------------------------------------------- the text encoder
class FrozenTextEncoder:
    """A tokenizer + transformer encoder that maps prompts to per-token vectors ``(N, L, D)``.

    Wraps any Hugging Face ``(tokenizer, model)`` pair whose output has ``last_hidden_state``
    (CLIP's text model in Stable Diffusion, MiniLM here).  Prompts are padded to ``max_length``
    tokens, as Stable Diffusion pads to 77.
    """

    def __init__(self, tokenizer, model, max_length: int = 12) -> None:
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int ≥ 2, got {max_length!r}")
        self.tokenizer, self.model, self.max_length = tokenizer, model.eval().requires_grad_(False), max_length

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """Prompts → token ids ``(N, max_length)``."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a list of str")
        return self.tokenizer(list(prompts), padding="max_length", max_length=self.max_length,
                              truncation=True, return_tensors="pt").input_ids

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        """Prompts → hidden states ``(N, max_length, hidden_size)`` on the encoder's device."""
        ids = self.tokenize(prompts).to(next(self.model.parameters()).device)
        return self.model(ids).last_hidden_state


def load_text_encoder(device=None, max_length: int = 12) -> FrozenTextEncoder:
    """The offline text encoder used here: all-MiniLM-L6-v2 (a 6-layer BERT, 384-wide), frozen."""
    from ..models import load_minilm

    tok, model = load_minilm("encoder", attn_implementation="sdpa", device=device)
    return FrozenTextEncoder(tok, model, max_length)


# --------------------------------------------------------------------------- the latent UNet
#: clip the predicted clean latent to ±LATENT_CLIP while sampling (latents are scaled to unit spread)
LATENT_CLIP = 4.0


@dataclass(frozen=True)
class LatentUNetConfig:
    latent_size: int = 4
    latent_channels: int = 2
    text_dim: int = 384
    block_out_channels: tuple[int, ...] = (64, 128)
    num_train_timesteps: int = 1000
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")


class TextConditionedLatentUNet(nn.Module):
    """``UNet2DConditionModel`` that predicts the noise in a latent, reading the prompt via cross-attention.

    ``forward(z_t (N, c, h, w), t (N,), text (N, L, D)) -> ε̂ (N, c, h, w)``.
    """

    def __init__(self, config: LatentUNetConfig | None = None) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.config = config or LatentUNetConfig()
        c = self.config
        levels = len(c.block_out_channels)
        self.unet = UNet2DConditionModel(
            sample_size=c.latent_size, in_channels=c.latent_channels, out_channels=c.latent_channels,
            down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
            block_out_channels=tuple(c.block_out_channels), layers_per_block=1, norm_num_groups=8,
            cross_attention_dim=c.text_dim, attention_head_dim=16)
        self.register_buffer("alphas_bar", alphas_cumprod(beta_schedule(c.schedule, c.num_train_timesteps)),
                             persistent=False)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.unet(z_t, t, encoder_hidden_states=text).sample

    def scheduler(self, kind: str = "ddim"):
        """A diffusers scheduler with this model's betas.

        The scaled latents have unit spread, so the predicted clean latent is clipped to ±4 (not
        the ±1 of images): without any clipping the first steps, where ``ᾱ_t ≈ 0``, blow it up.
        """
        return make_scheduler(kind, num_train_timesteps=self.config.num_train_timesteps, schedule=self.config.schedule,
                              clip_sample=True, clip_range=LATENT_CLIP)


def latent_diffusion_loss(model: TextConditionedLatentUNet, z0: torch.Tensor, text: torch.Tensor, *,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """DDPM loss on latents ``z0 (N, c, h, w)`` with prompt vectors ``text (N, L, D)``."""
    _check_4d(z0, "z0")
    if not isinstance(text, torch.Tensor) or text.ndim != 3 or text.shape[0] != z0.shape[0]:
        raise ValueError(f"text must be a tensor (N={z0.shape[0]}, L, D), got "
                         f"{tuple(text.shape) if isinstance(text, torch.Tensor) else type(text).__name__}")
    n = z0.shape[0]
    t = torch.randint(0, model.config.num_train_timesteps, (n,), generator=generator).to(z0.device)
    noise = torch.randn(z0.shape, generator=generator).to(z0.device)
    a = model.alphas_bar[t].view(n, 1, 1, 1)
    return nn.functional.mse_loss(model(a.sqrt() * z0 + (1 - a).sqrt() * noise, t, text), noise)


def latent_config_for(cfg, dataset: str) -> dict:
    """Training settings of the text-conditioned latent UNet for ``dataset`` at ``cfg``'s profile."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return dict(steps=cfg.pick(smoke=500, cpu=1000, gpu=10000), batch_size=cfg.pick(smoke=64, cpu=64, gpu=256),
                lr=2e-3, p_uncond=0.1, block_out_channels=cfg.pick(smoke=(16, 32), cpu=(32, 64), gpu=(64, 128)))


def latent_unet_setup(cfg, dataset: str, vae, vae_meta: dict, text_encoder) -> tuple[dict, LatentUNetConfig, dict]:
    """``(settings, UNet config, cache key)`` of a text-conditioned UNet in ``vae``'s latent space.

    The key holds everything that changes the weights; the UNet only fits the exact autoencoder it
    was trained with, so the key includes a digest of the autoencoder's weights.
    """
    settings = latent_config_for(cfg, dataset)
    shape = vae_meta["metrics"]["latent_shape"]
    net = LatentUNetConfig(latent_size=shape[1], latent_channels=shape[0], text_dim=text_encoder.hidden_size,
                           block_out_channels=settings["block_out_channels"])
    vae_digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in vae.state_dict().values()))
    key = {"net": asdict(net), **settings, "vae": vae_meta["config"], "vae_sha256": vae_digest.hexdigest()[:16],
           "dataset": dataset, "seed": cfg.seed, "max_length": text_encoder.max_length}
    return settings, net, key


def train_text_diffusion(model, cfg, dataset: str, vae, text_encoder, settings: dict, *, keep=None,
                         progress: bool = True, desc: str = "latent diffusion training") -> dict:
    """Train ``model`` (a :class:`TextConditionedLatentUNet`) on ``dataset``'s training images.

    Each image gets one of its class's captions (:func:`captions_for`), or the empty prompt with
    probability ``settings["p_uncond"]``. ``keep``: optional bool mask ``(N,)`` of the training
    images to use (e.g. all but one class). Returns the metrics stored with the checkpoint.
    """
    from ..data import load_images
    from ..train import infinite_batches, train_loop

    data = load_images(dataset, cfg)
    images, labels = (data.train_x, data.train_y) if keep is None else (data.train_x[keep], data.train_y[keep])
    latents = encode_images(vae, images)
    captions = captions_for(dataset, data.classes)
    per_class = len(captions[0])
    table = text_encoder([c for group in captions for c in group] + [""]).to(cfg.device)  # (10·k + 1, L, D)
    gen = torch.Generator().manual_seed(cfg.seed)
    batches = infinite_batches(latents, labels, batch_size=settings["batch_size"], generator=gen, device=cfg.device)

    def loss_fn(m, batch):
        z0, y = batch
        pick = y * per_class + torch.randint(0, per_class, y.shape, generator=gen).to(y.device)
        drop = torch.rand(y.shape, generator=gen).to(y.device) < settings["p_uncond"]
        pick = torch.where(drop, torch.full_like(pick, len(table) - 1), pick)
        return latent_diffusion_loss(m, z0, table[pick], generator=gen)

    opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"])
    hist = train_loop(model, opt, batches, loss_fn, settings["steps"], clip_grad=1.0, progress=progress, desc=desc)
    return {"losses": [round(v, 5) for v in hist.losses[::10]], "final_loss": hist.final_loss,
            "train_seconds": hist.seconds, "classes": list(data.classes), "train_images": len(labels)}


def trained_latent_diffusion(cfg, dataset: str = "digits", *, text_encoder: FrozenTextEncoder | None = None,
                             retrain: bool = False, progress: bool = True, verbose: bool = True):
    """Train (once, cached) a text-conditioned diffusion model in the latent space of :func:`trained_autoencoder`.

    Each training image gets one of its class's captions (:func:`captions_for`), or the empty
    prompt with probability ``p_uncond`` (for classifier-free guidance).

    Returns ``(unet, vae, text_encoder, meta)``.
    """
    from ..checkpoints import load_or_train

    vae, vae_meta = trained_autoencoder(cfg, dataset, progress=progress, verbose=verbose)
    text_encoder = text_encoder or load_text_encoder(cfg.device)
    settings, net, key = latent_unet_setup(cfg, dataset, vae, vae_meta, text_encoder)
    key["version"] = 1

    def train(model):
        return train_text_diffusion(model, cfg, dataset, vae, text_encoder, settings, progress=progress,
                                    desc="latent diffusion training")

    unet, meta = load_or_train(f"latent-diffusion-{dataset}", cfg, key, lambda: TextConditionedLatentUNet(net), train,
                               retrain=retrain, verbose=verbose)
    return unet, vae, text_encoder, meta


# --------------------------------------------------------------------------- the pipeline
@torch.no_grad()
def generate_from_text(prompts: list[str], *, text_encoder, unet, vae, scheduler, latent_shape: tuple[int, int, int],
                       steps: int = 25, guidance_scale: float = 3.0, generator: torch.Generator | None = None,
                       negative_prompt: str = "", return_intermediates: bool = False, progress: bool = False):
    """Text → image, the Stable Diffusion way, one stage at a time.

    1. ``text = text_encoder(prompts)`` → ``(N, L, D)``; the same for the empty (negative) prompt;
    2. ``z_T ~ N(0, I)`` of shape ``(N, *latent_shape)`` (times the scheduler's initial sigma);
    3. ``steps`` times: the UNet predicts the noise for the prompt and for the empty prompt,
       guidance mixes them ``ε̂ = ε̂_∅ + w (ε̂_text − ε̂_∅)``, the scheduler steps ``z_t → z_{t−1}``;
    4. the VAE decoder turns ``z_0 / scaling_factor`` into pixels.

    ``unet(z, t, encoder_hidden_states=…)`` may be a diffusers ``UNet2DConditionModel`` (real SD) or
    a :class:`TextConditionedLatentUNet`.  Returns images ``(N, C, H, W)`` in ``[0, 1]`` (CPU) and,
    if asked, the list of ``(t, latent z_t, predicted clean latent ẑ_0 or None)`` after each step.
    """
    from tqdm.auto import tqdm

    from genai_lab.config import show_progress

    if isinstance(prompts, str) or not prompts:
        raise TypeError("prompts must be a non-empty list of str")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be ≥ 0, got {guidance_scale!r}")
    core = unet.unet if isinstance(unet, TextConditionedLatentUNet) else unet
    device = next(core.parameters()).device
    dtype = next(core.parameters()).dtype
    text = text_encoder(list(prompts)).to(device, dtype)
    empty = text_encoder([negative_prompt] * len(prompts)).to(device, dtype)
    scheduler.set_timesteps(steps)
    z = torch.randn((len(prompts), *latent_shape), generator=generator).to(device, dtype) * scheduler.init_noise_sigma
    trail = []
    for t in tqdm(scheduler.timesteps, desc="denoising", disable=not (progress and show_progress()), leave=False):
        model_in = scheduler.scale_model_input(torch.cat([z, z]), t)
        eps = core(model_in, t, encoder_hidden_states=torch.cat([text, empty])).sample
        eps_text, eps_empty = eps.chunk(2)
        eps = classifier_free_guidance(eps_text, eps_empty, float(guidance_scale))
        # a clipping DDIM scheduler re-derives ε̂ from the clipped ẑ_0, so the step stays consistent
        clipping = type(scheduler).__name__ == "DDIMScheduler" and scheduler.config.get("clip_sample", False)
        out = scheduler.step(eps, t, z, **({"use_clipped_model_output": True} if clipping else {}))
        z = out.prev_sample
        if return_intermediates:
            guess = getattr(out, "pred_original_sample", None)
            trail.append((int(t), z.float().cpu(), None if guess is None else guess.float().cpu()))
    images = vae.decode(z / vae.config.scaling_factor).sample.float().cpu()
    images = ((images + 1) / 2).clamp(0, 1)
    return (images, trail) if return_intermediates else images


def load_stable_diffusion_parts(device=None, dtype=None):
    """The real Stable Diffusion v1.5 parts from the hub, or ``None`` when it is not reachable.

    Returns ``{"text_encoder" (a FrozenTextEncoder over CLIP's tokenizer and text model, 77 tokens),
    "unet", "vae", "scheduler" (DDIM)}`` — the keyword arguments of :func:`generate_from_text`, the
    same interface as the small parts trained here.
    """
    from ..models import hub_model_path

    path = hub_model_path("stable-diffusion")
    if path is None:
        return None
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    kw = {"torch_dtype": dtype} if dtype is not None else {}
    tok = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
    text_model = CLIPTextModel.from_pretrained(path, subfolder="text_encoder",
                                               **({"dtype": dtype} if dtype is not None else {})).to(device)
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw).to(device)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw).to(device)
    scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler")
    return {"text_encoder": FrozenTextEncoder(tok, text_model, max_length=tok.model_max_length),
            "unet": unet.eval(), "vae": vae.eval(), "scheduler": scheduler}


# --------------------------------------------------------------------------- cost
@torch.no_grad()
def seconds_per_step(step_fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall seconds of ``step_fn()`` over ``repeats`` calls (after ``warmup`` calls)."""
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable, got {type(step_fn).__name__}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    for _ in range(warmup):
        step_fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        step_fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
