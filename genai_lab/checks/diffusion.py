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


def _tiny_text_unet(seed: int = 0):
    """A small diffusers ``UNet2DConditionModel`` (latent (1, 4, 4), text width 24), seeded."""
    import torch

    from ..diffusion.latent import LatentUNetConfig, TextConditionedLatentUNet

    torch.manual_seed(seed)
    return TextConditionedLatentUNet(LatentUNetConfig(latent_size=4, latent_channels=1, text_dim=24,
                                                      block_out_channels=(16, 32))).unet


LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def check_lora_training_step(fn: Callable) -> object:
    """``fn(unet, z0, text, t, noise, alphas_bar, r, lr) -> loss``: LoRA on the attention projections, one step.

    Checked on a small ``UNet2DConditionModel``: a LoRA pair of rank ``r`` on every ``to_q``,
    ``to_k``, ``to_v``, ``to_out.0`` and nowhere else; only LoRA matrices require gradients; every
    base weight is unchanged after the step; the step moved the LoRA matrices; the returned loss is
    finite and equals the base model's loss on the same inputs (``lora_B`` starts at zero).
    """
    import copy

    import torch

    def body():
        unet = _tiny_text_unet()
        reference = copy.deepcopy(unet).eval().requires_grad_(False)
        before = {k: v.detach().clone() for k, v in unet.state_dict().items()}
        g = torch.Generator().manual_seed(4)
        z0, noise = torch.randn((3, 1, 4, 4), generator=g), torch.randn((3, 1, 4, 4), generator=g)
        text = torch.randn((3, 6, 24), generator=g)
        t = torch.tensor([10, 400, 900])
        alphas_bar = _ddpm().alphas_cumprod.clone()
        a = alphas_bar[t].reshape(-1, 1, 1, 1)
        with torch.no_grad():
            run = lambda z_t, target: float(torch.nn.functional.mse_loss(  # noqa: E731
                reference(z_t, t, encoder_hidden_states=text).sample, target))
            expected = run(a.sqrt() * z0 + (1 - a).sqrt() * noise, noise)
            mistakes = {"the coefficients are ᾱ_t and 1 − ᾱ_t; they are their square roots":
                        lambda: run(a * z0 + (1 - a) * noise, noise),
                        "the target is the clean latent z0; the UNet predicts the noise":
                        lambda: run(a.sqrt() * z0 + (1 - a).sqrt() * noise, z0)}
        try:
            loss = fn(unet, z0, text, t, noise, alphas_bar, r=2, lr=1e-2)
        except RuntimeError as exc:
            if "does not require grad" not in str(exc):
                raise
            return ("backward found nothing to train: freeze the UNet before add_adapter (requires_grad_(False) "
                    "after it freezes the LoRA matrices too)")
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            loss = float(loss.detach())
        if not isinstance(loss, (int, float)):
            return f"return the loss as a float, got {type(loss).__name__}"
        if not torch.isfinite(torch.tensor(float(loss))):
            return f"the loss is not finite ({loss})"
        params = dict(unet.named_parameters())
        lora = [n for n in params if ".lora_A." in n or ".lora_B." in n]
        if not lora:
            return "no LoRA matrices in the UNet: attach an adapter with unet.add_adapter(LoraConfig(...))"
        wanted = {n for n, m in reference.named_modules() if isinstance(m, torch.nn.Linear) and n.endswith(LORA_TARGETS)}
        adapted = {n.split(".lora_")[0] for n in lora}
        if adapted != wanted:
            missing, extra = sorted(wanted - adapted), sorted(adapted - wanted)
            return (f"LoRA sits on the wrong layers: missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
                    f"unexpected {extra[:3]}{'…' if len(extra) > 3 else ''} (target_modules names the four projections)")
        ranks = {params[n].shape[0] for n in lora if ".lora_A." in n}
        if ranks != {2}:
            return f"lora_A should have r = 2 rows (the rank passed in), got {sorted(ranks)}"
        trainable = [n for n, p in params.items() if p.requires_grad and n not in lora]
        if trainable:
            return (f"{len(trainable)} base parameters still require gradients (e.g. {trainable[0]}): "
                    "freeze the UNet so only the LoRA matrices train")
        state = unet.state_dict()
        for k, v in before.items():
            now = state.get(k)
            if now is None:
                now = state.get(k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias"))
            if now is None or not torch.equal(now, v):
                return f"the base weight {k} changed during the step: only the LoRA matrices may move"
        if all(float(params[n].detach().abs().max()) == 0.0 for n in lora if ".lora_B." in n):
            return "every lora_B is still zero: the optimizer step did not happen (or did not see the LoRA matrices)"
        if abs(float(loss) - expected) > 1e-5 * max(1.0, abs(expected)):
            return (f"the loss is {float(loss):.6g}, expected {expected:.6g} (the base model's loss on the same "
                    f"inputs: lora_B starts at zero){name_mistake(float(loss), mistakes)}")
        return None

    return run_check("lora_training_step", body)


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
lora_training_step = Exercise(
    "diffusion", "lora_training_step", check_lora_training_step, ("lora_training_step",),
    "first make every weight of the UNet untrainable, then hand add_adapter a peft config that names the four "
    "projection layers (rank and alpha both r). Noise z0 exactly as in exercise 2, compare the UNet's .sample "
    "with the noise, and give AdamW only the parameters that still require a gradient.")
