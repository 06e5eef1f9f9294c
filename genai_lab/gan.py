"""A small DCGAN, its mode collapse measured with a classifier, and one remedy.

A GAN (generative adversarial network, Goodfellow et al. 2014) trains two networks against each
other: the *generator* ``G`` maps a noise vector ``z`` to an image, the *discriminator* ``D``
scores an image as real (high logit) or generated (low logit).  ``D`` learns to tell them apart,
``G`` learns to fool ``D``.  The architecture follows DCGAN (Radford et al. 2016): transposed
convolutions with batch norm in ``G``, strided convolutions with LeakyReLU in ``D``.

*Mode collapse* (モード崩壊): ``G`` finds a few outputs that fool ``D`` and keeps producing them,
so the samples cover only some of the classes.  We measure it the way the book measures every
generator: a classifier (the CNN chapter's) labels many samples, and the entropy of the class
histogram says how many classes are really covered (``log2(10) ≈ 3.32`` bits = all ten equally).

The remedy shown is *packing* (PacGAN, Lin et al. 2018, "PacGAN: The power of two samples in
generative adversarial networks"): ``D`` judges ``m`` samples stacked as channels at once.  Real
packs are varied; a pack from a collapsed generator holds near-identical images, which is easy to
catch, so collapsing no longer pays.  A second remedy, the *minibatch standard deviation* channel
(Karras et al. 2018, "Progressive Growing of GANs", §3), is included for the reader to try.

Images inside the GAN live in ``[-1, 1]`` (``tanh`` output); everything public takes and returns
``[0, 1]`` images ``(N, 1, H, W)`` like :mod:`genai_lab.data`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence


if TYPE_CHECKING:  # pragma: no cover
    import torch

GAN_DATASETS = ("digits", "fashion_mnist")


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class GANConfig:
    """Every hyper-parameter that changes a GAN's weights (the checkpoint key).

    Attributes:
        dataset: ``"digits"`` (8×8) or ``"fashion_mnist"`` (28×28).
        latent_dim: length of the noise vector ``z``.
        width: channels of the first convolution (the others are multiples).
        steps: optimiser steps for each network.
        batch_size: real images per step (and as many generated ones).
        lr_g, lr_d: Adam learning rates of generator and discriminator.
        beta1: Adam's first beta (DCGAN uses 0.5).
        minibatch_std: add a minibatch-standard-deviation channel in ``D`` (a remedy to try).
        pack: PacGAN packing (the chapter's remedy): ``D`` judges ``pack`` images at once.
        generator_batch_norm: batch norm in ``G`` (DCGAN's choice; it mixes batch statistics).
        real_label: target for real images (1.0; 0.9 is "one-sided label smoothing").
        seed: initial weights, noise and batch order.
        snapshots: how many times to save samples of a fixed ``z`` during training.
    """

    dataset: str = "digits"
    latent_dim: int = 16
    width: int = 32
    steps: int = 1500
    batch_size: int = 64
    lr_g: float = 2e-3
    lr_d: float = 2e-4
    beta1: float = 0.5
    minibatch_std: bool = False
    pack: int = 1
    generator_batch_norm: bool = True
    real_label: float = 1.0
    seed: int = 0
    snapshots: int = 5

    def __post_init__(self) -> None:
        if self.dataset not in GAN_DATASETS:
            raise ValueError(f"dataset must be one of {GAN_DATASETS}, got {self.dataset!r}")
        for name in ("latent_dim", "width", "steps", "batch_size", "snapshots", "pack"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.beta1 < 1.0:
            raise ValueError(f"beta1 must be in [0, 1), got {self.beta1!r}")
        if not 0.5 < self.real_label <= 1.0:
            raise ValueError(f"real_label must be in (0.5, 1], got {self.real_label!r}")

    @property
    def image_size(self) -> int:
        return 8 if self.dataset == "digits" else 28


def default_gan_config(cfg, *, remedy: bool = False, dataset: str = "digits") -> GANConfig:
    """The chapter's GAN for the profile.

    The plain GAN is a DCGAN whose generator has *no* batch norm and learns 10× faster than the
    discriminator: on digits it collapses onto one or a few classes (measured in the chapter).
    ``remedy=True`` changes one thing, PacGAN packing (``pack=4``): the discriminator judges four
    samples at once, so four near-identical images are easy to call fake.
    """
    steps = cfg.pick(smoke=1000, cpu=3000, gpu=6000)
    if dataset == "fashion_mnist":
        steps = cfg.pick(smoke=600, cpu=3000, gpu=6000)
    return GANConfig(dataset=dataset, steps=steps, pack=4 if remedy else 1,
                     generator_batch_norm=False, seed=cfg.seed)


# --------------------------------------------------------------------------- networks
def _nn():
    import torch.nn as nn

    return nn


class MinibatchStdDev(_nn().Module):
    """Append one channel holding the batch's average standard deviation (another remedy).

    ``(B, C, H, W) -> (B, C + 1, H, W)``.  Every feature's standard deviation across the batch
    is averaged into one number and broadcast as an extra channel, so the discriminator can see
    "these images are all the same" and penalise a collapsed generator.
    """

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        import torch

        if x.ndim != 4:
            raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
        std = torch.sqrt(x.var(dim=0, unbiased=False) + 1e-8).mean()
        return torch.cat([x, std.expand(x.shape[0], 1, x.shape[2], x.shape[3])], dim=1)


class Generator(_nn().Module):
    """DCGAN generator: ``z (B, latent_dim) -> images (B, 1, S, S)`` in ``[-1, 1]``.

    A linear layer makes a ``(2·width, S/4, S/4)`` feature map; two transposed convolutions
    (kernel 4, stride 2) double it twice to ``S × S``; ``tanh`` squashes the output.
    """

    def __init__(self, latent_dim: int = 16, width: int = 32, image_size: int = 8,
                 batch_norm: bool = True):
        super().__init__()
        nn = _nn()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size!r}")
        self.latent_dim, self.base = latent_dim, image_size // 4
        hidden = 2 * width * self.base ** 2
        norm1 = nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
        norm2 = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        self.project = nn.Sequential(nn.Linear(latent_dim, hidden), norm1, nn.ReLU())
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), norm2, nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: "torch.Tensor") -> "torch.Tensor":
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be (B, {self.latent_dim}), got shape {tuple(z.shape)}")
        h = self.project(z)
        return self.upsample(h.view(len(z), -1, self.base, self.base))


class Discriminator(_nn().Module):
    """DCGAN discriminator: ``images (B, 1, S, S)`` in ``[-1, 1]`` ``-> logits (B / pack,)``
    (real > 0).

    Two strided convolutions with LeakyReLU halve the size twice; with ``minibatch_std`` a
    :class:`MinibatchStdDev` channel is appended before the final linear layer.  With
    ``pack = m`` each group of ``m`` consecutive images is stacked as ``m`` input channels and
    gets one logit (PacGAN).
    """

    def __init__(self, width: int = 32, image_size: int = 8, minibatch_std: bool = False,
                 pack: int = 1):
        super().__init__()
        nn = _nn()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size!r}")
        base = image_size // 4
        self.pack = pack
        self.features = nn.Sequential(
            nn.Conv2d(pack, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2))
        self.batch_std = MinibatchStdDev() if minibatch_std else nn.Identity()
        self.head = nn.Linear((2 * width + int(minibatch_std)) * base ** 2, 1)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"x must be (B, 1, H, W), got shape {tuple(x.shape)}")
        if len(x) % self.pack:
            raise ValueError(f"x must hold a multiple of pack={self.pack} images, got {len(x)}")
        x = x.reshape(len(x) // self.pack, self.pack, *x.shape[2:])
        return self.head(self.batch_std(self.features(x)).flatten(1)).squeeze(1)


class GAN(_nn().Module):
    """Generator and discriminator kept together (one checkpoint)."""

    def __init__(self, config: GANConfig):
        super().__init__()
        if not isinstance(config, GANConfig):
            raise TypeError(f"config must be a GANConfig, got {type(config).__name__}")
        self.config = config
        self.generator = Generator(config.latent_dim, config.width, config.image_size,
                                   config.generator_batch_norm)
        self.discriminator = Discriminator(config.width, config.image_size, config.minibatch_std,
                                           config.pack)


# --------------------------------------------------------------------------- losses and one step
def to_gan_range(images: "torch.Tensor") -> "torch.Tensor":
    """``[0, 1]`` images → ``[-1, 1]`` (the generator's ``tanh`` range)."""
    return images * 2 - 1


def from_gan_range(images: "torch.Tensor") -> "torch.Tensor":
    """``[-1, 1]`` images → ``[0, 1]``."""
    return ((images + 1) / 2).clamp(0, 1)


def discriminator_loss(real_logits: "torch.Tensor", fake_logits: "torch.Tensor", *,
                       real_label: float = 1.0) -> "torch.Tensor":
    """Binary cross-entropy of ``D``: real images → ``real_label``, generated ones → 0.

    ``real_logits (B,)``, ``fake_logits (B,)`` → scalar
    ``BCE(σ(real), real_label) + BCE(σ(fake), 0)``.
    """
    import torch
    import torch.nn.functional as F

    _check_logits(real_logits, "real_logits")
    _check_logits(fake_logits, "fake_logits")
    real_target = torch.full_like(real_logits, float(real_label))
    return (F.binary_cross_entropy_with_logits(real_logits, real_target)
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: "torch.Tensor") -> "torch.Tensor":
    """Non-saturating generator loss ``-mean log σ(D(G(z)))`` = ``BCE(σ(fake), 1)``.

    Goodfellow et al. (2014) suggest it instead of minimising ``log(1 - D(G(z)))``, whose
    gradient vanishes exactly when ``D`` wins early in training.
    """
    import torch
    import torch.nn.functional as F

    _check_logits(fake_logits, "fake_logits")
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def _check_logits(logits, name: str) -> None:
    import torch

    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim != 1 or len(logits) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor (B,), got shape {tuple(logits.shape)}")


def gan_training_step(generator, discriminator, opt_g, opt_d, real: "torch.Tensor",
                      z: "torch.Tensor", *, real_label: float = 1.0) -> dict[str, float]:
    """One GAN step: update ``D`` on real vs generated, then ``G`` to fool the updated ``D``.

    Args:
        generator, discriminator: the two networks (train mode).
        opt_g, opt_d: their optimisers.
        real: real images ``(B, 1, S, S)`` in ``[-1, 1]``.
        z: noise ``(B, latent_dim)``; the same ``z`` makes the fakes for both updates.
        real_label: target for real images in the discriminator loss.
    Returns:
        ``{"d_loss", "g_loss", "d_real", "d_fake"}``: both losses and the mean probability
        ``D`` gives real and generated images (before its update).
    """
    import torch

    if not isinstance(real, torch.Tensor) or real.ndim != 4:
        raise ValueError(f"real must be a (B, 1, H, W) tensor, got {getattr(real, 'shape', type(real))}")
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or len(z) != len(real):
        raise ValueError(f"z must be (B, latent_dim) with B = len(real) = {len(real)}, "
                         f"got {getattr(z, 'shape', type(z))}")
    fake = generator(z)
    # 1) discriminator: fakes are detached so this step does not touch G
    real_logits = discriminator(real)
    fake_logits = discriminator(fake.detach())
    d_loss = discriminator_loss(real_logits, fake_logits, real_label=real_label)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    # 2) generator: gradients flow through D into G; only G's optimiser steps
    g_loss = generator_loss(discriminator(fake))
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()),
            "d_real": float(torch.sigmoid(real_logits.detach()).mean()),
            "d_fake": float(torch.sigmoid(fake_logits.detach()).mean())}


# --------------------------------------------------------------------------- training
def gan_images(dataset: str, cfg=None) -> "torch.Tensor":
    """Training images of ``dataset`` in ``[-1, 1]``, ``(N, 1, S, S)``."""
    from .data import load_images

    if dataset not in GAN_DATASETS:
        raise ValueError(f"dataset must be one of {GAN_DATASETS}, got {dataset!r}")
    return to_gan_range(load_images(dataset, cfg).train_x)


def train_gan(gan: GAN, images: "torch.Tensor", *, device=None, progress: bool = True,
              record_every: int = 10) -> dict[str, Any]:
    """Train ``gan`` on ``images`` (``(N, 1, S, S)`` in ``[-1, 1]``) for ``gan.config.steps`` steps.

    Returns a JSON-friendly dict: ``steps`` and the ``d_loss``/``g_loss``/``d_real``/``d_fake``
    curves (mean over each ``record_every`` steps), ``snapshots`` (``{step: (16, S, S) images in
    [0, 1] as nested lists}`` from one fixed ``z``) and ``seconds``.
    """
    import torch
    from tqdm.auto import tqdm

    from genai_lab.config import show_progress

    from .train import infinite_batches

    if not isinstance(gan, GAN):
        raise TypeError(f"gan must be a GAN, got {type(gan).__name__}")
    c = gan.config
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != c.image_size:
        raise ValueError(f"images must be (N, 1, {c.image_size}, {c.image_size}), got "
                         f"{getattr(images, 'shape', type(images))}")
    device = torch.device(device or next(gan.parameters()).device)
    gan.to(device).train()
    gen = torch.Generator().manual_seed(c.seed)  # batch order, noise: every draw comes from here
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=c.lr_g, betas=(c.beta1, 0.999))
    opt_d = torch.optim.Adam(gan.discriminator.parameters(), lr=c.lr_d, betas=(c.beta1, 0.999))
    batches = infinite_batches(images, batch_size=c.batch_size, generator=gen)
    fixed_z = torch.randn(16, c.latent_dim, generator=gen).to(device)
    snap_at = {round(c.steps * (i + 1) / c.snapshots) - 1 for i in range(c.snapshots)} | {0}
    curves = {k: [] for k in ("d_loss", "g_loss", "d_real", "d_fake")}
    out: dict[str, Any] = {"steps": [], **curves, "snapshots": {}}
    window = {k: 0.0 for k in curves}
    start = time.perf_counter()
    bar = tqdm(range(c.steps), desc="GAN" + (" + minibatch std" if c.minibatch_std else ""),
               leave=False, mininterval=0.5, disable=not (progress and show_progress()))
    for step in bar:
        (real,) = next(batches)
        z = torch.randn(len(real), c.latent_dim, generator=gen)
        stats = gan_training_step(gan.generator, gan.discriminator, opt_g, opt_d, real.to(device),
                                  z.to(device), real_label=c.real_label)
        for k in curves:
            window[k] += stats[k]
        if (step + 1) % record_every == 0 or step == c.steps - 1:
            n = (step % record_every) + 1
            out["steps"].append(step + 1)
            for k in curves:
                out[k].append(round(window[k] / n, 5))
                window[k] = 0.0
            bar.set_postfix(d=f"{out['d_loss'][-1]:.2f}", g=f"{out['g_loss'][-1]:.2f}")
        if step in snap_at:
            out["snapshots"][str(step + 1)] = _sample_fixed(gan.generator, fixed_z)
    bar.close()
    gan.eval()
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def _sample_fixed(generator, z) -> list:
    import torch

    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        imgs = from_gan_range(generator(z))[:, 0].cpu()
    generator.train(was_training)
    return imgs.round(decimals=3).tolist()


def trained_gan(cfg, config: GANConfig | None = None, *, remedy: bool = False,
                verbose: bool = True) -> tuple[GAN, dict]:
    """The chapter's trained GAN (cached by profile and config): ``(gan, meta)``.

    ``meta["metrics"]`` holds the loss curves and snapshots of :func:`train_gan`.  The notebook
    and the bench share the checkpoint, so CI trains each GAN once.
    """
    from .checkpoints import load_or_train

    config = config or default_gan_config(cfg, remedy=remedy)
    if not isinstance(config, GANConfig):
        raise TypeError(f"config must be a GANConfig or None, got {type(config).__name__}")

    def build():
        import torch

        torch.manual_seed(config.seed)  # the initial weights
        return GAN(config)

    def train(model):
        return train_gan(model, gan_images(config.dataset, cfg), device=cfg.device)

    name = (f"gan-{config.dataset}" + ("-mbstd" if config.minibatch_std else "")
            + (f"-pac{config.pack}" if config.pack > 1 else ""))
    return load_or_train(name, cfg, asdict(config), build, train, verbose=verbose)


def sample_gan(gan: GAN, n: int, *, seed: int = 0, batch_size: int = 500) -> "torch.Tensor":
    """``n`` generated images ``(n, 1, S, S)`` in ``[0, 1]`` from seeded noise."""
    import torch

    if not isinstance(gan, GAN):
        raise TypeError(f"gan must be a GAN, got {type(gan).__name__}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    gen = torch.Generator().manual_seed(seed)
    device = next(gan.parameters()).device
    gan.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - start), gan.config.latent_dim, generator=gen)
            outs.append(from_gan_range(gan.generator(z.to(device))).cpu())
    return torch.cat(outs)


# --------------------------------------------------------------------------- text-conditioned GAN
class TextConditionedGenerator(_nn().Module):
    """Conditional generator (Mirza & Osindero 2014, with a text embedding as the condition):
    ``z (B, latent_dim)``, ``cond (B, cond_dim)`` → images ``(B, 1, S, S)`` in ``[-1, 1]``.

    An MLP on the concatenation ``[z, cond]`` (batch norm, ReLU) ending in ``tanh``.
    """

    def __init__(self, latent_dim: int, cond_dim: int, hidden: int = 256, image_size: int = 28):
        super().__init__()
        nn = _nn()
        self.latent_dim, self.cond_dim, self.image_size = latent_dim, cond_dim, image_size
        self.net = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * hidden), nn.BatchNorm1d(2 * hidden), nn.ReLU(),
            nn.Linear(2 * hidden, image_size * image_size), nn.Tanh())

    def forward(self, z: "torch.Tensor", cond: "torch.Tensor") -> "torch.Tensor":
        import torch

        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be (B, {self.latent_dim}), got shape {tuple(z.shape)}")
        if cond.shape != (len(z), self.cond_dim):
            raise ValueError(f"cond must be ({len(z)}, {self.cond_dim}), got shape {tuple(cond.shape)}")
        out = self.net(torch.cat([z, cond], dim=1))
        return out.view(len(z), 1, self.image_size, self.image_size)


class TextConditionedDiscriminator(_nn().Module):
    """Projection discriminator (Miyato & Koyama 2018): ``images (B, 1, S, S)``, ``cond (B, C)``
    → logits ``(B,)`` = ``ψ(φ(x)) + ⟨W cond, φ(x)⟩``.

    ``φ`` is an MLP on the pixels; the inner-product term is large when image and caption agree,
    so a generator that ignores the caption is easy to catch.
    """

    def __init__(self, cond_dim: int, hidden: int = 256, image_size: int = 28):
        super().__init__()
        nn = _nn()
        self.cond_dim = cond_dim
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(image_size * image_size, 2 * hidden),
                                      nn.LeakyReLU(0.2), nn.Linear(2 * hidden, hidden), nn.LeakyReLU(0.2))
        self.score = nn.Linear(hidden, 1)
        self.project_cond = nn.Linear(cond_dim, hidden, bias=False)

    def forward(self, x: "torch.Tensor", cond: "torch.Tensor") -> "torch.Tensor":
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"x must be (B, 1, H, W), got shape {tuple(x.shape)}")
        if cond.shape != (len(x), self.cond_dim):
            raise ValueError(f"cond must be ({len(x)}, {self.cond_dim}), got shape {tuple(cond.shape)}")
        h = self.features(x)
        return self.score(h).squeeze(1) + (self.project_cond(cond) * h).sum(dim=1)


class TextConditionedGAN(_nn().Module):
    """Generator and projection discriminator conditioned on a (frozen) text embedding."""

    def __init__(self, latent_dim: int = 32, cond_dim: int = 64, hidden: int = 256, image_size: int = 28):
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("cond_dim", cond_dim), ("hidden", hidden),
                            ("image_size", image_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.generator = TextConditionedGenerator(latent_dim, cond_dim, hidden, image_size)
        self.discriminator = TextConditionedDiscriminator(cond_dim, hidden, image_size)

    def generate(self, cond: "torch.Tensor", *, seed: int = 0) -> "torch.Tensor":
        """One image per row of ``cond (N, cond_dim)``: ``(N, 1, S, S)`` in ``[0, 1]``."""
        import torch

        gen = torch.Generator().manual_seed(seed)
        device = next(self.parameters()).device
        z = torch.randn(len(cond), self.generator.latent_dim, generator=gen).to(device)
        self.eval()
        with torch.no_grad():
            return from_gan_range(self.generator(z, cond.to(device))).cpu()


def train_text_gan(model: TextConditionedGAN, images: "torch.Tensor", labels: "torch.Tensor",
                   caption_embeddings: "list[torch.Tensor]", *, steps: int, batch_size: int = 64,
                   lr: float = 2e-4, seed: int = 0, device=None, progress: bool = True) -> dict[str, Any]:
    """Train a text-conditioned GAN with the same :func:`gan_training_step` as the plain GAN.

    Each real image ``images (N, 1, S, S)`` in ``[-1, 1]`` gets the embedding of a random caption
    of its class (``caption_embeddings[c]``: ``(K_c, cond_dim)``, frozen); the fakes of the step
    are generated from the same embeddings, so ``D`` must judge image *and* caption together.
    Returns ``{"steps", "d_loss", "g_loss", "seconds"}`` (means over every 10 steps).
    """
    import torch
    from tqdm.auto import tqdm

    from genai_lab.config import show_progress

    from .train import infinite_batches

    if not isinstance(model, TextConditionedGAN):
        raise TypeError(f"model must be a TextConditionedGAN, got {type(model).__name__}")
    if len(images) != len(labels):
        raise ValueError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    device = torch.device(device or next(model.parameters()).device)
    model.to(device).train()
    gen = torch.Generator().manual_seed(seed)
    bank = torch.cat([e.detach().cpu() for e in caption_embeddings])
    sizes = torch.tensor([len(e) for e in caption_embeddings])
    offsets = torch.cumsum(sizes, 0) - sizes
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    out: dict[str, Any] = {"steps": [], "d_loss": [], "g_loss": []}
    window = [0.0, 0.0]
    start = time.perf_counter()
    batches = infinite_batches(images, labels, batch_size=batch_size, generator=gen)
    for step in tqdm(range(steps), desc="text-conditioned GAN", leave=False, mininterval=0.5,
                     disable=not (progress and show_progress())):
        real, y = next(batches)
        cond = bank[offsets[y] + (torch.rand(len(y), generator=gen) * sizes[y]).long()].to(device)
        z = torch.randn(len(y), model.generator.latent_dim, generator=gen).to(device)
        stats = gan_training_step(lambda noise: model.generator(noise, cond),
                                  lambda x: model.discriminator(x, cond), opt_g, opt_d,
                                  real.to(device), z)
        window[0] += stats["d_loss"]
        window[1] += stats["g_loss"]
        if (step + 1) % 10 == 0 or step == steps - 1:
            n = step % 10 + 1
            out["steps"].append(step + 1)
            out["d_loss"].append(round(window[0] / n, 5))
            out["g_loss"].append(round(window[1] / n, 5))
            window = [0.0, 0.0]
    model.eval()
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


# --------------------------------------------------------------------------- measuring diversity
def predict_classes(classifier, images: "torch.Tensor", *, batch_size: int = 500) -> "torch.Tensor":
    """The classifier's label for each of ``images`` (``(N, 1, H, W)`` in ``[0, 1]``): ``(N,)`` int64."""
    return class_probabilities(classifier, images, batch_size=batch_size).argmax(-1)


def class_probabilities(classifier, images: "torch.Tensor", *, batch_size: int = 500) -> "torch.Tensor":
    """The classifier's softmax over classes for each of ``images`` (``(N, 1, H, W)`` in ``[0, 1]``):
    ``(N, classes)`` float32 on the CPU."""
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, 1, H, W) tensor, got "
                         f"{getattr(images, 'shape', type(images))}")
    if not isinstance(classifier, torch.nn.Module):
        raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    with torch.no_grad():
        preds = [classifier(images[s:s + batch_size].to(device)).softmax(-1).float().cpu()
                 for s in range(0, len(images), batch_size)]
    classifier.train(was_training)
    return torch.cat(preds)


def class_histogram(classifier, images: "torch.Tensor", n_classes: int = 10) -> "torch.Tensor":
    """How many of ``images`` (``(N, 1, H, W)`` in ``[0, 1]``) the classifier puts in each class.

    Returns int64 counts ``(n_classes,)`` summing to ``N``.
    """
    import torch

    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be an int ≥ 2, got {n_classes!r}")
    return torch.bincount(predict_classes(classifier, images), minlength=n_classes)[:n_classes]


def entropy_bits(counts) -> float:
    """Shannon entropy (bits) of a histogram: 0 = one class only, ``log2(K)`` = all K equally."""
    import torch

    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.ndim != 1 or len(counts) == 0:
        raise ValueError(f"counts must be a non-empty 1-D histogram, got shape {tuple(counts.shape)}")
    if (counts < 0).any() or counts.sum() <= 0:
        raise ValueError("counts must be non-negative with a positive total")
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log2()).sum()) + 0.0  # + 0.0 turns the -0.0 of a single class into 0.0


def diversity_report(classifier, images: "torch.Tensor", n_classes: int = 10) -> dict[str, Any]:
    """What a classifier says about a set of samples.

    Returns ``counts`` (class histogram), ``entropy_bits`` and ``max_entropy_bits``,
    ``top_class_share``, ``classes_covered`` (classes with at least 2 % of the samples) and
    ``within_class_distance``: the mean L2 distance between two samples given the same class
    (:func:`genai_lab.diffusion.quality.diversity`), which falls towards 0 when a generator
    repeats one image per class; and ``mean_confidence``: the classifier's mean probability for
    the class it chose.  A histogram alone cannot tell a real digit from a blob the classifier
    happens to call a "5"; a low confidence is the warning sign.
    """
    import torch

    from .diffusion.quality import diversity

    probs = class_probabilities(classifier, images)
    confidence, labels = probs.max(-1)
    counts = torch.bincount(labels, minlength=n_classes)[:n_classes]
    share = counts.double() / counts.sum()
    return {"counts": counts.tolist(), "entropy_bits": round(entropy_bits(counts), 4),
            "max_entropy_bits": round(math.log2(n_classes), 4),
            "top_class_share": round(float(share.max()), 4),
            "classes_covered": int((share >= 0.02).sum()),
            "within_class_distance": round(diversity(images, labels)["pairwise_distance"], 4),
            "mean_confidence": round(float(confidence.mean()), 4)}


# --------------------------------------------------------------------------- pictures
def plot_gan_history(metrics: dict, title: str = "GAN", axes=None):
    """Two panels from :func:`train_gan`'s record: both losses, and ``D``'s mean belief that real
    and generated images are real.  Returns the axes."""
    import matplotlib.pyplot as plt

    for key in ("steps", "d_loss", "g_loss", "d_real", "d_fake"):
        if key not in metrics:
            raise ValueError(f"metrics must hold {key!r} (the dict train_gan returns)")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    axes[0].plot(metrics["steps"], metrics["d_loss"], label="discriminator loss")
    axes[0].plot(metrics["steps"], metrics["g_loss"], label="generator loss")
    axes[0].axhline(2 * math.log(2), ls=":", c="grey", label="D loss when D outputs 0.5 (2 ln 2)")
    axes[0].set(title=f"{title}: losses", xlabel="training step", ylabel="loss (mean of 10 steps)")
    axes[1].plot(metrics["steps"], metrics["d_real"], label="D(real image)")
    axes[1].plot(metrics["steps"], metrics["d_fake"], label="D(generated image)")
    axes[1].set(title=f"{title}: what the discriminator believes", xlabel="training step",
                ylabel="mean probability of 'real'", ylim=(0, 1))
    for ax in axes:
        ax.legend(fontsize=8)
    axes[0].figure.tight_layout()
    return axes


def show_snapshots(metrics: dict, title: str = "Samples during training"):
    """One row per saved step, the same 16 noise vectors in every row (from :func:`train_gan`)."""
    import matplotlib.pyplot as plt
    import numpy as np

    snaps = metrics.get("snapshots")
    if not snaps:
        raise ValueError("metrics must hold 'snapshots' (the dict train_gan returns)")
    steps = sorted(snaps, key=int)
    rows = [np.concatenate([np.pad(np.asarray(img), 1, constant_values=1) for img in snaps[s]], axis=1)
            for s in steps]
    grid = np.concatenate(rows, axis=0)
    size = grid.shape[0] // len(steps)
    fig, ax = plt.subplots(figsize=(10, 0.7 * len(steps) + 1))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([size * (i + 0.5) for i in range(len(steps))], labels=steps)
    ax.set_xticks([])
    ax.set(title=title, xlabel="the same 16 noise vectors z in every row", ylabel="training step")
    fig.tight_layout()
    return fig


def plot_class_histograms(reports: dict[str, dict], class_names: Sequence[str] | None = None, *,
                          title: str = "Which classes do the samples belong to?", ax=None):
    """Grouped bars: the share of samples per class for each named :func:`diversity_report`."""
    import matplotlib.pyplot as plt
    import numpy as np

    if not reports:
        raise ValueError("reports must name at least one diversity_report")
    n_classes = len(next(iter(reports.values()))["counts"])
    names = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.8 / len(reports)
    for i, (label, rep) in enumerate(reports.items()):
        counts = np.asarray(rep["counts"], dtype=float)
        ax.bar(np.arange(n_classes) + (i - (len(reports) - 1) / 2) * width, counts / counts.sum(),
               width, label=f"{label} (entropy {rep['entropy_bits']:.2f} bits)")
    ax.axhline(1 / n_classes, ls=":", c="grey", label="uniform (1/10 each)")
    ax.set_xticks(range(n_classes), labels=names)
    ax.set(title=title, xlabel="class the CNN chapter's classifier assigns", ylabel="share of samples")
    ax.legend(fontsize=8)
    return ax


def judge_classifier(cfg, dataset: str = "digits"):
    """The CNN chapter's classifier that labels generated images: ``(model, meta)``.

    Uses ``genai_lab.cnn.trained_classifier`` (cached checkpoint, trained once).
    """
    if dataset not in GAN_DATASETS:
        raise ValueError(f"dataset must be one of {GAN_DATASETS}, got {dataset!r}")
    from .cnn import trained_classifier

    return trained_classifier(cfg, dataset)


def diffusion_samples(cfg, n: int, *, seed: int = 0, steps: int | None = None) -> "torch.Tensor":
    """``n`` *unconditional* samples ``(n, 1, 8, 8)`` in ``[0, 1]`` from the diffusion chapter's
    digits DDPM (:func:`genai_lab.diffusion.trained_ddpm`, cached).

    The DDPM is class-conditional with a learned "no label" embedding; guidance scale 0 uses only
    that unconditional prediction, so, like the GAN, it gets pure noise and no class request.
    """
    import torch

    from .diffusion import sample_class_conditional, trained_ddpm

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    steps = steps or cfg.pick(smoke=25, cpu=50, gpu=50)
    model, _meta = trained_ddpm(cfg, dataset="digits", progress=False, verbose=False)
    gen = torch.Generator().manual_seed(seed)
    return sample_class_conditional(model, torch.zeros(n, dtype=torch.long), steps=steps,
                                    guidance_scale=0.0, generator=gen)
