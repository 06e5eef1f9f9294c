"""Checks for the diffusion lab: every exercise is compared with diffusers' own schedulers.

Each check builds fixed, seeded inputs, runs the learner's function and the diffusers reference
(``DDPMScheduler`` / ``DDIMScheduler``) on the same inputs and reports what differed.
"""

from __future__ import annotations

from typing import Callable

from . import Exercise, check_function, describe_difference, expect, name_mistake, run_check


def _ddpm(num_steps: int = 1000, schedule: str = "squaredcos_cap_v2", clip_sample: bool = True):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=num_steps, beta_schedule=schedule, clip_sample=clip_sample)


def check_cosine_beta_schedule(fn: Callable) -> object:
    """``fn(num_steps) -> betas (num_steps,)`` must equal diffusers' ``squaredcos_cap_v2`` betas."""
    cases = [((n,), {}, _ddpm(n).betas) for n in (10, 100, 1000)]
    return check_function(fn, cases, name="cosine_beta_schedule", atol=1e-6)


def check_add_noise(fn: Callable) -> object:
    """``fn(x0, noise, t, alphas_bar) -> x_t`` must equal ``DDPMScheduler.add_noise(x0, noise, t)``."""
    import torch

    sched = _ddpm()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((4, 1, 8, 8), generator=g) * 2 - 1
    noise = torch.randn((4, 1, 8, 8), generator=g)
    cases = []
    for t in (torch.tensor([0, 10, 500, 999]), torch.tensor([250, 250, 250, 250])):
        a = sched.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        mistakes = {"the coefficients are ᾱ_t and 1 − ᾱ_t; they are their square roots":
                    lambda a=a: a * x0 + (1 - a) * noise}
        cases.append(((x0, noise, t, sched.alphas_cumprod.clone()), {},
                      expect(sched.add_noise(x0, noise, t), mistakes, atol=1e-5)))
    return check_function(fn, cases, name="add_noise")


def check_ddpm_reverse_step(fn: Callable) -> object:
    """``fn(noise_pred, t, x_t, betas, noise) -> (x_prev, x0_pred)`` must match ``DDPMScheduler.step``.

    The scheduler draws its noise from a generator; the learner's function receives the very same
    noise tensor, so the two results must agree to float precision at every ``t``.
    """
    import torch

    def body():
        sched = _ddpm()
        g = torch.Generator().manual_seed(1)
        x_t = torch.randn((3, 1, 8, 8), generator=g)
        eps = torch.randn((3, 1, 8, 8), generator=g) * 0.9
        for t in (999, 600, 50, 1, 0):
            noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(100 + t))
            ref = sched.step(eps, t, x_t, generator=torch.Generator().manual_seed(100 + t))
            out = fn(eps, t, x_t, sched.betas.clone(), noise)
            if not isinstance(out, tuple) or len(out) != 2:
                return f"at t={t}: return (x_prev, x0_pred), got {type(out).__name__}"
            for got, want, what in ((out[1], ref.pred_original_sample, "x0_pred"), (out[0], ref.prev_sample, "x_prev")):
                msg = describe_difference(got, want, atol=1e-5, path=what)
                if msg:
                    if what == "x0_pred":
                        a_t = sched.alphas_cumprod[t]
                        unclipped = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
                        msg += name_mistake(got, {"x̂_0 is not clipped to [−1, 1]": lambda: unclipped}, atol=1e-5)
                    return f"at t={t}: {msg}"
        return None

    return run_check("ddpm_reverse_step", body)


def check_ddim_step(fn: Callable) -> object:
    """``fn(noise_pred, t, t_prev, x_t, alphas_bar) -> x_prev`` must match ``DDIMScheduler.step`` (eta=0)."""
    import torch
    from diffusers import DDIMScheduler

    def body():
        sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                              set_alpha_to_one=True, timestep_spacing="trailing")
        sched.set_timesteps(10)
        g = torch.Generator().manual_seed(2)
        x_t = torch.randn((3, 1, 8, 8), generator=g)
        eps = torch.randn((3, 1, 8, 8), generator=g) * 0.9
        steps = [int(t) for t in sched.timesteps]
        for i, t in enumerate(steps):
            t_prev = steps[i + 1] if i + 1 < len(steps) else -1
            ref = sched.step(eps, t, x_t, eta=0.0).prev_sample
            msg = describe_difference(fn(eps, t, t_prev, x_t, sched.alphas_cumprod.clone()), ref, atol=1e-5,
                                      path="x_prev")
            if msg:
                return f"at t={t} → {t_prev}: {msg}"
        return None

    return run_check("ddim_step", body)


def check_guidance(fn: Callable) -> object:
    """``fn(eps_cond, eps_uncond, scale)`` must match :func:`genai_lab.diffusion.classifier_free_guidance`."""
    import torch

    from ..diffusion import classifier_free_guidance

    g = torch.Generator().manual_seed(3)
    cond, uncond = torch.randn((2, 1, 4, 4), generator=g), torch.randn((2, 1, 4, 4), generator=g)
    cases = [((cond, uncond, w), {}, classifier_free_guidance(cond, uncond, w)) for w in (0.0, 1.0, 3.0)]
    return check_function(fn, cases, name="classifier_free_guidance", atol=1e-6)


# --------------------------------------------------------------------------- the lab's exercises
# ``cosine_beta_schedule.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/diffusion.py).
cosine_beta_schedule = Exercise(
    "diffusion", "cosine_beta_schedule", check_cosine_beta_schedule, ("cosine_beta_schedule",),
    "write ᾱ(s) as a small inner function, then build each β from two neighbouring values and cap "
    "it; return float32.")
add_noise = Exercise(
    "diffusion", "add_noise", check_add_noise, ("add_noise",),
    "index alphas_bar with t to get one value per image, give it singleton axes so it broadcasts "
    "over (C, H, W), and remember the square roots: the two coefficients' squares add up to 1.")
ddpm_reverse_step = Exercise(
    "diffusion", "ddpm_reverse_step", check_ddpm_reverse_step, ("ddpm_reverse_step",),
    "derive ᾱ from the betas with a cumulative product, handle t = 0 separately (ᾱ_prev = 1, no "
    "noise) and follow the four steps in order; the clipping of x̂_0 happens before the posterior "
    "mean uses it.")
ddim_step = Exercise(
    "diffusion", "ddim_step", check_ddim_step, ("ddim_step",),
    "two lines: predict x̂_0 from x_t and ε̂, then re-noise it to the level of t_prev with the "
    "same ε̂. The last step (t_prev = -1) uses ᾱ = 1.")
guidance = Exercise(
    "diffusion", "guidance", check_guidance, ("classifier_free_guidance",),
    "start at the unconditional prediction and move w times along the direction towards the "
    "conditional one.")
