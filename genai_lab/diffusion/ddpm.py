"""A class-conditional DDPM built from diffusers parts: ``UNet2DModel`` + ``DDPMScheduler``/``DDIMScheduler``.

- :class:`ClassConditionalDDPM` — *the network*: a small UNet that predicts the noise ``ε`` in
  ``x_t`` given the timestep and a class label (label ``num_classes`` means "no label", which
  classifier-free guidance needs).
- :func:`diffusion_loss` / :func:`train_ddpm` — *how it learns*: noise a clean image to a random
  ``t`` in closed form, ask the UNet for the noise, take the mean squared error.
- :func:`sample_class_conditional` — *how it samples*: start from pure noise, let a diffusers
  scheduler take ``steps`` reverse steps, mixing conditional and unconditional predictions
  with classifier-free guidance (Ho & Salimans 2022).
- :func:`trained_ddpm` — train once per profile and dataset, cached by
  :func:`genai_lab.checkpoints.load_or_train` (the GAN/CLIP chapter reuses it).

Images go in and come out in ``[0, 1]``; inside, the diffusion works on ``[-1, 1]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .schedule import SCHEDULES, alphas_cumprod, beta_schedule, make_scheduler

DATASETS = ("digits", "fashion_mnist")


@dataclass(frozen=True)
class DDPMConfig:
    """Everything that shapes the network and its noise schedule (part of the checkpoint key)."""

    image_size: int = 8
    channels: int = 1
    num_classes: int = 10
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    num_train_timesteps: int = 1000
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("image_size", "channels", "num_classes", "layers_per_block", "num_train_timesteps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.image_size % 2 ** (len(self.block_out_channels) - 1):
            raise ValueError(f"image_size {self.image_size} must be divisible by "
                             f"2**{len(self.block_out_channels) - 1} (one halving per extra block)")


class ClassConditionalDDPM(nn.Module):
    """A noise-predicting UNet with a class embedding added to its timestep embedding.

    ``forward(x_t (N, C, H, W), t (N,), labels (N,)) -> ε̂ (N, C, H, W)``; a label equal to
    ``num_classes`` is the learned "no label" embedding used for unconditional predictions.
    """

    def __init__(self, config: DDPMConfig | None = None) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.config = config or DDPMConfig()
        c = self.config
        levels = len(c.block_out_channels)
        self.unet = UNet2DModel(
            sample_size=c.image_size, in_channels=c.channels, out_channels=c.channels,
            block_out_channels=tuple(c.block_out_channels), layers_per_block=c.layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            norm_num_groups=8, attention_head_dim=16, num_class_embeds=c.num_classes + 1)
        self.register_buffer("betas", beta_schedule(c.schedule, c.num_train_timesteps), persistent=False)
        self.register_buffer("alphas_bar", alphas_cumprod(self.betas), persistent=False)

    @property
    def null_label(self) -> int:
        """The label index meaning "no class" (unconditional)."""
        return self.config.num_classes

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, class_labels=labels).sample

    def scheduler(self, kind: str = "ddim"):
        """A fresh diffusers scheduler (``"ddpm"`` or ``"ddim"``) with this model's betas."""
        return make_scheduler(kind, num_train_timesteps=self.config.num_train_timesteps,
                              schedule=self.config.schedule)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` images → ``[-1, 1]`` (what the diffusion works on)."""
    return images * 2.0 - 1.0


def to_image_range(x: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` samples → ``[0, 1]`` images, clipped."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def diffusion_loss(model: ClassConditionalDDPM, x0: torch.Tensor, labels: torch.Tensor, *,
                   p_uncond: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """The DDPM training loss ``E ‖ε − ε̂(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t, y)‖²`` on one batch.

    Args:
        x0: clean images ``(N, C, H, W)`` in ``[-1, 1]``.
        labels: ``(N,)`` int64 classes; a random ``p_uncond`` share is replaced by the null
            label so the same network also learns the unconditional prediction (for guidance).
    """
    if not isinstance(model, ClassConditionalDDPM):
        raise TypeError(f"model must be a ClassConditionalDDPM, got {type(model).__name__}")
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond!r}")
    if x0.ndim != 4 or labels.shape != (x0.shape[0],):
        raise ValueError(f"x0 must be (N, C, H, W) and labels (N,), got {tuple(x0.shape)} and {tuple(labels.shape)}")
    device = x0.device
    n = x0.shape[0]
    t = torch.randint(0, model.config.num_train_timesteps, (n,), generator=generator).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    drop = torch.rand(n, generator=generator).to(device) < p_uncond
    labels = torch.where(drop, torch.full_like(labels, model.null_label), labels)
    a = model.alphas_bar[t].view(n, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    return nn.functional.mse_loss(model(x_t, t, labels), noise)


def train_ddpm(model: ClassConditionalDDPM, images: torch.Tensor, labels: torch.Tensor, *, steps: int,
               batch_size: int = 64, lr: float = 2e-3, p_uncond: float = 0.1, seed: int = 0,
               max_seconds: float | None = None, progress: bool = True):
    """Train ``model`` on ``images (N, C, H, W)`` in ``[0, 1]`` with ``labels (N,)``; returns a ``History``.

    AdamW with a short warm-up and cosine decay of the learning rate.
    """
    from ..train import infinite_batches, train_loop

    if images.ndim != 4 or images.shape[1:] != (model.config.channels, model.config.image_size,
                                                 model.config.image_size):
        c = model.config
        raise ValueError(f"images must be (N, {c.channels}, {c.image_size}, {c.image_size}), got {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * i / steps)).item()))
    batches = infinite_batches(to_model_range(images), labels, batch_size=batch_size, generator=gen, device=device)
    loss_fn = lambda m, batch: diffusion_loss(m, batch[0], batch[1], p_uncond=p_uncond, generator=gen)  # noqa: E731
    return train_loop(model, opt, batches, loss_fn, steps, scheduler=sched, clip_grad=1.0,
                      max_seconds=max_seconds, progress=progress, desc="DDPM training")


def classifier_free_guidance(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Mix two noise predictions: ``ε̂ = ε̂_∅ + w · (ε̂_y − ε̂_∅)`` (Ho & Salimans 2022, eq. 6).

    ``w = 0`` ignores the condition, ``w = 1`` is the plain conditional prediction, ``w > 1``
    extrapolates away from the unconditional one.  Tensors of any (equal) shape.
    """
    if not isinstance(eps_cond, torch.Tensor) or not isinstance(eps_uncond, torch.Tensor):
        raise TypeError("eps_cond and eps_uncond must be torch.Tensors")
    if eps_cond.shape != eps_uncond.shape:
        raise ValueError(f"eps_cond and eps_uncond must have the same shape, got {tuple(eps_cond.shape)} "
                         f"and {tuple(eps_uncond.shape)}")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise TypeError(f"scale must be a number, got {type(scale).__name__}")
    return eps_uncond + scale * (eps_cond - eps_uncond)


def guided_noise(model: nn.Module, x_t: torch.Tensor, t, labels: torch.Tensor, guidance_scale: float,
                 null_label: int) -> torch.Tensor:
    """Classifier-free guidance: ``ε̂ = ε̂_∅ + w · (ε̂_y − ε̂_∅)`` (one batched UNet call).

    ``w = 1`` is plain conditional sampling, ``w = 0`` ignores the label, ``w > 1`` pushes
    samples further towards what makes them look like their class.
    """
    if not isinstance(x_t, torch.Tensor) or x_t.ndim != 4:
        raise ValueError("x_t must be a tensor of shape (N, C, H, W)")
    if not isinstance(labels, torch.Tensor) or labels.shape != (x_t.shape[0],):
        raise ValueError(f"labels must be a tensor of shape ({x_t.shape[0]},)")
    n = x_t.shape[0]
    t_batch = torch.full((n,), int(t), dtype=torch.long, device=x_t.device)
    if guidance_scale == 1.0:
        return model(x_t, t_batch, labels)
    if guidance_scale == 0.0:
        return model(x_t, t_batch, torch.full_like(labels, null_label))
    both = model(torch.cat([x_t, x_t]), torch.cat([t_batch, t_batch]),
                 torch.cat([labels, torch.full_like(labels, null_label)]))
    cond, uncond = both.chunk(2)
    return classifier_free_guidance(cond, uncond, guidance_scale)


@torch.no_grad()
def sample_class_conditional(model: ClassConditionalDDPM, labels, steps: int = 50, guidance_scale: float = 2.0,
                             generator: torch.Generator | None = None, *, scheduler: str = "ddim",
                             return_intermediates: bool = False, progress: bool = False):
    """Generate one image per label, starting from pure noise.

    Args:
        model: a (trained) :class:`ClassConditionalDDPM`.
        labels: ``(N,)`` class indices (a tensor or a list of ints).
        steps: number of reverse steps (``≤ num_train_timesteps``).
        guidance_scale: classifier-free guidance weight ``w`` (see :func:`guided_noise`).
        generator: a CPU ``torch.Generator`` for the starting noise and the DDPM noise.
        scheduler: ``"ddim"`` (deterministic, good with few steps) or ``"ddpm"``.
        return_intermediates: also return the list of ``(t, x_t in [0, 1], x̂_0 in [0, 1])``
            after every step (for pictures of the denoising).
    Returns:
        images ``(N, C, H, W)`` in ``[0, 1]`` on the CPU (and the intermediates if asked).
    """
    from tqdm.auto import tqdm

    from genai_lab.config import show_progress

    if not isinstance(model, ClassConditionalDDPM):
        raise TypeError(f"model must be a ClassConditionalDDPM, got {type(model).__name__}")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.ndim != 1 or not len(labels):
        raise ValueError(f"labels must be a non-empty 1-D sequence of class indices, got shape {tuple(labels.shape)}")
    if int(labels.min()) < 0 or int(labels.max()) >= model.config.num_classes:
        raise ValueError(f"labels must lie in [0, {model.config.num_classes - 1}]")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= model.config.num_train_timesteps:
        raise ValueError(f"steps must be an int in [1, {model.config.num_train_timesteps}], got {steps!r}")
    if not isinstance(guidance_scale, (int, float)) or guidance_scale < 0:
        raise ValueError(f"guidance_scale must be a number ≥ 0, got {guidance_scale!r}")
    sched = model.scheduler(scheduler)
    sched.set_timesteps(steps)
    device = next(model.parameters()).device
    c = model.config
    was_training = model.training
    model.eval()
    x = torch.randn((len(labels), c.channels, c.image_size, c.image_size), generator=generator).to(device)
    labels = labels.to(device)
    trail = []
    for t in tqdm(sched.timesteps, desc=f"{scheduler.upper()} sampling", disable=not (progress and show_progress()), leave=False):
        eps = guided_noise(model, x, t, labels, float(guidance_scale), model.null_label)
        # DDIM: after clipping x̂_0 to [-1, 1], re-derive ε̂ from it, so the step stays consistent
        # (without this, strong guidance drifts into washed-out images over many steps)
        kwargs = {"generator": generator} if scheduler == "ddpm" else {"use_clipped_model_output": True}
        out = sched.step(eps, t, x, **kwargs)
        x = out.prev_sample
        if return_intermediates:
            trail.append((int(t), to_image_range(x.cpu()), to_image_range(out.pred_original_sample.cpu())))
    model.train(was_training)
    images = to_image_range(x.cpu())
    return (images, trail) if return_intermediates else images


def ddpm_config_for(cfg, dataset: str = "digits") -> tuple[DDPMConfig, dict]:
    """The network config and training settings the book uses for ``dataset`` at ``cfg``'s profile."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset == "digits":
        net = DDPMConfig(image_size=8, block_out_channels=cfg.pick(smoke=(16, 32), cpu=(32, 64), gpu=(64, 128)))
        train = dict(steps=cfg.pick(smoke=1000, cpu=3000, gpu=6000), batch_size=cfg.pick(smoke=64, cpu=64, gpu=256),
                     lr=3e-3)
    else:
        net = DDPMConfig(image_size=28, block_out_channels=cfg.pick(smoke=(16, 32, 32), cpu=(16, 32, 32),
                                                                   gpu=(64, 128, 128)))
        train = dict(steps=cfg.pick(smoke=300, cpu=3000, gpu=6000), batch_size=cfg.pick(smoke=32, cpu=32, gpu=256),
                     lr=2e-3)
    return net, train


def default_dataset(cfg) -> str:
    """The dataset the chapter's reverse-process experiment uses: digits in smoke, Fashion-MNIST otherwise."""
    return cfg.pick(smoke="digits", cpu="fashion_mnist", gpu="fashion_mnist")


def trained_ddpm(cfg, dataset: str = "digits", *, retrain: bool = False, progress: bool = True,
                 verbose: bool = True) -> tuple[ClassConditionalDDPM, dict]:
    """The chapter's class-conditional DDPM for ``dataset``, trained once and cached.

    Returns ``(model, meta)``: ``model`` is a :class:`ClassConditionalDDPM` on ``cfg.device`` in
    eval mode (sample it with :func:`sample_class_conditional`); ``meta["metrics"]`` holds
    ``loss_steps``/``losses`` (the loss curve, every 10th step), ``final_loss``, ``classes`` and
    ``train_seconds``.
    """
    from ..checkpoints import load_or_train
    from ..data import load_images

    net, settings = ddpm_config_for(cfg, dataset)
    key = {"net": asdict(net), **settings, "dataset": dataset, "seed": cfg.seed, "version": 1}

    def train(model):
        data = load_images(dataset, cfg)
        hist = train_ddpm(model, data.train_x, data.train_y, seed=cfg.seed, progress=progress, **settings)
        return {"loss_steps": hist.steps[::10], "losses": [round(v, 5) for v in hist.losses[::10]],
                "final_loss": hist.final_loss, "classes": list(data.classes), "train_seconds": hist.seconds}

    return load_or_train(f"ddpm-{dataset}", cfg, key, lambda: ClassConditionalDDPM(net), train, retrain=retrain,
                         verbose=verbose)
