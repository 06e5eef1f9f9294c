"""Reference solutions of `labs/07_diffusion_lab.ipynb`: 7. Diffusion — lab.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.diffusion`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

import math

import torch
from peft import LoraConfig


def cosine_beta_schedule(num_steps: int) -> torch.Tensor:
    """Betas (num_steps,) float32 of the cosine schedule (Nichol & Dhariwal 2021)."""
    def alpha_bar(s):
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), 0.999)
             for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float32)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_bar: torch.Tensor) -> torch.Tensor:
    """x0, noise (N, C, H, W); t (N,) int64; alphas_bar (T,) -> x_t (N, C, H, W)."""
    a = alphas_bar[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def ddpm_reverse_step(noise_pred, t: int, x_t, betas, noise):
    """noise_pred, x_t, noise (N, C, H, W); t int; betas (T,) -> (x_prev, x0_pred)."""
    alphas_bar = torch.cumprod(1 - betas, 0)
    a_t = alphas_bar[t]
    a_prev = alphas_bar[t - 1] if t > 0 else torch.tensor(1.0)
    beta_t = 1 - a_t / a_prev
    x0_pred = ((x_t - (1 - a_t).sqrt() * noise_pred) / a_t.sqrt()).clamp(-1, 1)
    mean = a_prev.sqrt() * beta_t / (1 - a_t) * x0_pred + (1 - beta_t).sqrt() * (1 - a_prev) / (1 - a_t) * x_t
    if t == 0:
        return mean, x0_pred
    variance = (1 - a_prev) / (1 - a_t) * beta_t
    return mean + variance.sqrt() * noise, x0_pred


def ddim_step(noise_pred, t: int, t_prev: int, x_t, alphas_bar):
    """noise_pred, x_t (N, C, H, W); t, t_prev ints (t_prev = -1 at the end); alphas_bar (T,) -> x_prev."""
    a_t = alphas_bar[t]
    a_prev = alphas_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0_pred = (x_t - (1 - a_t).sqrt() * noise_pred) / a_t.sqrt()
    return a_prev.sqrt() * x0_pred + (1 - a_prev).sqrt() * noise_pred


def classifier_free_guidance(eps_cond, eps_uncond, scale: float):
    """eps_cond, eps_uncond (N, C, H, W); scale w -> guided noise prediction (N, C, H, W)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def lora_training_step(unet, z0, text, t, noise, alphas_bar, r: int = 4, lr: float = 1e-3) -> float:
    """Attach LoRA (rank r, lora_alpha=r) to unet's to_q, to_k, to_v, to_out.0, freeze the rest, take one AdamW
    step on the noise-prediction MSE; return the loss before the step (float).
    unet: diffusers UNet2DConditionModel; z0, noise (N, c, h, w); text (N, L, D); t (N,) int64; alphas_bar (T,)."""
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=r, lora_alpha=r, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    a = alphas_bar[t].reshape(-1, 1, 1, 1)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
    loss = torch.nn.functional.mse_loss(unet(z_t, t, encoder_hidden_states=text).sample, noise)
    optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=lr)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())
