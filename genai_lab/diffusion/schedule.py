"""The forward (noising) process and one reverse step, written out by hand.

Everything here follows Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (DDPM):

- a *beta schedule* ``β_1 … β_T`` says how much noise step ``t`` adds;
- ``ᾱ_t = ∏_{s≤t} (1 − β_s)`` is how much of the clean image survives after ``t`` steps;
- the closed form ``q(x_t | x_0) = N(√ᾱ_t · x_0, (1 − ᾱ_t) · I)`` jumps to any ``t`` at once;
- one reverse step (their eq. 7 and Algorithm 2) turns a noise prediction into ``x_{t−1}``.

Timesteps are 0-based as in diffusers: ``betas[0]`` is the first step, ``t = T − 1`` the last.
The functions match ``diffusers.DDPMScheduler`` (tested in ``tests/test_diffusion.py``).
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("linear", "cosine")
#: our schedule names → diffusers' ``beta_schedule`` names
DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def _check_positive_int(value, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def beta_schedule(kind: str, num_steps: int = 1000, *, beta_start: float = 1e-4,
                  beta_end: float = 0.02, max_beta: float = 0.999) -> torch.Tensor:
    """The noise added at each forward step, ``betas`` of shape ``(num_steps,)`` (float32).

    Args:
        kind: ``"linear"`` — evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020);
            ``"cosine"`` — chosen so that ``ᾱ_t = cos²((t/T + s)/(1 + s) · π/2)`` with
            ``s = 0.008``, each beta capped at ``max_beta`` (Nichol & Dhariwal 2021).
        num_steps: ``T``, the number of forward steps.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"kind must be one of {SCHEDULES}, got {kind!r}")
    _check_positive_int(num_steps, "num_steps")
    if kind == "linear":
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, "
                             f"got {beta_start!r}, {beta_end!r}")
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float32)

    def alpha_bar(fraction: float) -> float:
        return math.cos((fraction + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
             for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float32)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``ᾱ_t = ∏_{s≤t} (1 − β_s)``, shape ``(T,)``: the share of the clean signal left at step t."""
    _check_tensor(betas, "betas")
    if betas.ndim != 1 or not len(betas):
        raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
    return torch.cumprod(1.0 - betas, dim=0)


def signal_to_noise(alphas_bar: torch.Tensor) -> torch.Tensor:
    """``SNR_t = ᾱ_t / (1 − ᾱ_t)``, shape ``(T,)``: signal power over noise power at step t."""
    _check_tensor(alphas_bar, "alphas_bar")
    return alphas_bar / (1.0 - alphas_bar)


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` reshaped to ``(N, 1, 1, …)`` so it broadcasts over ``like`` ``(N, …)``."""
    out = values.to(like.device)[t.to(like.device)].to(like.dtype)
    return out.reshape(out.shape + (1,) * (like.ndim - out.ndim))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int,
              alphas_bar: torch.Tensor) -> torch.Tensor:
    """Closed-form forward process: ``x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε``.

    Args:
        x0: clean images ``(N, C, H, W)`` (any shape ``(N, …)`` works), scaled to ``[-1, 1]``.
        noise: ``ε ~ N(0, I)``, same shape as ``x0``.
        t: timesteps ``(N,)`` (int64, 0-based) or one int for the whole batch.
        alphas_bar: ``ᾱ`` of shape ``(T,)`` from :func:`alphas_cumprod`.
    Returns:
        ``x_t``, same shape as ``x0``. Same result as ``DDPMScheduler.add_noise(x0, noise, t)``.
    """
    _check_tensor(x0, "x0")
    _check_tensor(noise, "noise")
    _check_tensor(alphas_bar, "alphas_bar")
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    if isinstance(t, int) and not isinstance(t, bool):
        t = torch.full((x0.shape[0],), t, dtype=torch.long)
    _check_tensor(t, "t")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must be an integer tensor of timesteps (int64), got dtype {t.dtype}: "
                        "round or .long() it yourself, add_noise does not truncate")
    if t.ndim != 1 or len(t) != x0.shape[0]:
        raise ValueError(f"t must have shape ({x0.shape[0]},), got {tuple(t.shape)}")
    if int(t.min()) < 0 or int(t.max()) >= len(alphas_bar):
        raise ValueError(f"t must lie in [0, {len(alphas_bar) - 1}], got values {int(t.min())}…{int(t.max())}")
    a = _per_sample(alphas_bar, t.long(), x0)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise


def noise_step_by_step(x0: torch.Tensor, t: int, betas: torch.Tensor, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Run the forward chain one step at a time: ``x_s = √(1 − β_s) · x_{s−1} + √β_s · ε_s``.

    Fresh noise every step; after steps ``0 … t`` the result is distributed like
    :func:`add_noise` at ``t`` — the point of the closed form is that you need not loop.

    Args:
        x0: clean images ``(N, …)``.
        t: the last step to apply (0-based, so ``t + 1`` steps run).
        betas: ``(T,)`` from :func:`beta_schedule`.
    Returns:
        ``x_t`` with the shape of ``x0``.
    """
    _check_tensor(x0, "x0")
    _check_tensor(betas, "betas")
    if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < len(betas):
        raise ValueError(f"t must be an int in [0, {len(betas) - 1}], got {t!r}")
    x = x0.clone()
    for s in range(t + 1):
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = (1.0 - betas[s]).sqrt() * x + betas[s].sqrt() * eps
    return x


def compare_closed_form(x0: torch.Tensor, t: int, betas: torch.Tensor, *, num_samples: int = 2000,
                        generator: torch.Generator | None = None) -> dict[str, float]:
    """Check ``q(x_t | x_0)`` numerically: noise one image ``num_samples`` times step by step and
    compare the per-pixel mean and standard deviation with the closed form ``√ᾱ_t x_0`` and ``√(1 − ᾱ_t)``.

    Args:
        x0: one clean image ``(C, H, W)`` (or any shape) in ``[-1, 1]``.
    Returns:
        ``max_mean_error``, ``max_std_error`` (worst pixel), and ``mean_standard_error``
        ``= √((1 − ᾱ_t) / num_samples)``, the sampling error to expect — errors of a few standard
        errors mean the two agree.
    """
    _check_tensor(x0, "x0")
    _check_positive_int(num_samples, "num_samples")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples!r}")
    batch = x0.unsqueeze(0).expand(num_samples, *x0.shape)
    x_t = noise_step_by_step(batch, t, betas, generator=generator)
    a = alphas_cumprod(betas)[t]
    mean_err = (x_t.mean(0) - a.sqrt() * x0).abs().max()
    std_err = (x_t.std(0) - (1 - a).sqrt()).abs().max()
    return {"max_mean_error": float(mean_err), "max_std_error": float(std_err),
            "mean_standard_error": float(((1 - a) / num_samples).sqrt())}


def ddpm_reverse_step(noise_pred: torch.Tensor, t: int, x_t: torch.Tensor, betas: torch.Tensor, *,
                      noise: torch.Tensor | None = None, clip_sample: float | None = 1.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDPM reverse step ``x_t → x_{t−1}`` from a noise prediction (Ho et al. 2020, eq. 7).

    1. predicted clean image ``x̂_0 = (x_t − √(1 − ᾱ_t) · ε̂) / √ᾱ_t`` (clipped to ``±clip_sample``);
    2. posterior mean ``μ = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x̂_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t``;
    3. ``x_{t−1} = μ + σ_t · z`` with ``σ_t² = β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t`` and no
       noise at ``t = 0``.

    Args:
        noise_pred: the network's ``ε̂`` ``(N, C, H, W)``.
        t: the current step (0-based int).
        x_t: the current noisy sample, shape of ``noise_pred``.
        betas: ``(T,)``.
        noise: ``z ~ N(0, I)`` (shape of ``x_t``); required when ``t > 0``.
        clip_sample: clip ``x̂_0`` to ``[-clip_sample, clip_sample]``; ``None`` = no clipping.
    Returns:
        ``(x_{t−1}, x̂_0)``. Matches ``DDPMScheduler(variance_type="fixed_small").step``.
    """
    _check_tensor(noise_pred, "noise_pred")
    _check_tensor(x_t, "x_t")
    _check_tensor(betas, "betas")
    if noise_pred.shape != x_t.shape:
        raise ValueError(f"noise_pred must have the shape of x_t {tuple(x_t.shape)}, got {tuple(noise_pred.shape)}")
    if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < len(betas):
        raise ValueError(f"t must be an int in [0, {len(betas) - 1}], got {t!r}")
    if t > 0:
        if noise is None:
            raise ValueError("noise must be given when t > 0 (the step adds fresh noise)")
        _check_tensor(noise, "noise")
        if noise.shape != x_t.shape:
            raise ValueError(f"noise must have the shape of x_t {tuple(x_t.shape)}, got {tuple(noise.shape)}")
    a_bar = alphas_cumprod(betas)
    a_bar_t = a_bar[t]
    a_bar_prev = a_bar[t - 1] if t > 0 else torch.tensor(1.0)
    beta_t = 1 - a_bar_t / a_bar_prev
    x0_pred = (x_t - (1 - a_bar_t).sqrt() * noise_pred) / a_bar_t.sqrt()
    if clip_sample is not None:
        x0_pred = x0_pred.clamp(-clip_sample, clip_sample)
    mean = (a_bar_prev.sqrt() * beta_t / (1 - a_bar_t)) * x0_pred \
        + ((1 - beta_t).sqrt() * (1 - a_bar_prev) / (1 - a_bar_t)) * x_t
    if t == 0:
        return mean, x0_pred
    variance = torch.clamp((1 - a_bar_prev) / (1 - a_bar_t) * beta_t, min=1e-20)
    return mean + variance.sqrt() * noise, x0_pred


def ddim_step(noise_pred: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor, alphas_bar: torch.Tensor, *,
              clip_sample: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step ``x_t → x_{t_prev}`` (Song et al. 2021, eq. 12 with η = 0).

    ``x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t`` and ``x_{t_prev} = √ᾱ_{t_prev} x̂_0 + √(1 − ᾱ_{t_prev}) ε̂``:
    keep the predicted clean image, re-noise it to the *earlier* level with the *same* noise.
    ``t_prev`` may be many steps back (that is why DDIM needs few steps); ``t_prev = -1`` means
    "the end" (``ᾱ = 1``).  Returns ``(x_{t_prev}, x̂_0)``; matches
    ``DDIMScheduler(clip_sample=False, set_alpha_to_one=True).step`` with ``eta=0``.
    """
    _check_tensor(noise_pred, "noise_pred")
    _check_tensor(x_t, "x_t")
    _check_tensor(alphas_bar, "alphas_bar")
    if noise_pred.shape != x_t.shape:
        raise ValueError(f"noise_pred must have the shape of x_t {tuple(x_t.shape)}, got {tuple(noise_pred.shape)}")
    if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < len(alphas_bar):
        raise ValueError(f"t must be an int in [0, {len(alphas_bar) - 1}], got {t!r}")
    if not isinstance(t_prev, int) or isinstance(t_prev, bool) or not -1 <= t_prev < t:
        raise ValueError(f"t_prev must be an int in [-1, t), got {t_prev!r}")
    a_t = alphas_bar[t]
    a_prev = alphas_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0_pred = (x_t - (1 - a_t).sqrt() * noise_pred) / a_t.sqrt()
    if clip_sample is not None:
        x0_pred = x0_pred.clamp(-clip_sample, clip_sample)
    return a_prev.sqrt() * x0_pred + (1 - a_prev).sqrt() * noise_pred, x0_pred


def make_scheduler(kind: str = "ddpm", *, num_train_timesteps: int = 1000, schedule: str = "cosine",
                   clip_sample: bool = True, clip_range: float = 1.0):
    """A diffusers scheduler for sampling: ``"ddpm"`` (``DDPMScheduler``) or ``"ddim"`` (``DDIMScheduler``).

    Both use the same betas as :func:`beta_schedule` ``(schedule, num_train_timesteps)``, so a
    network trained with one can be sampled with the other (DDIM skips steps; Song et al. 2021).
    ``clip_sample`` clips the predicted clean sample ``x̂_0`` to ``±clip_range`` at every step: at
    the noisiest steps ``ᾱ_t`` is tiny and ``x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t`` would blow up.
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    _check_positive_int(num_train_timesteps, "num_train_timesteps")
    if not isinstance(clip_range, (int, float)) or clip_range <= 0:
        raise ValueError(f"clip_range must be a positive number, got {clip_range!r}")
    common = dict(num_train_timesteps=num_train_timesteps, beta_schedule=DIFFUSERS_SCHEDULE[schedule],
                  clip_sample=clip_sample, clip_sample_range=float(clip_range), prediction_type="epsilon")
    if kind == "ddpm":
        return DDPMScheduler(**common)
    if kind == "ddim":
        return DDIMScheduler(**common, set_alpha_to_one=True, timestep_spacing="trailing")
    raise ValueError(f"kind must be 'ddpm' or 'ddim', got {kind!r}")
