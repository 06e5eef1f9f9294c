"""Reference solutions of `labs/06_lora_lab.ipynb`: Lab 6. LoRA from scratch.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.lora`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (alpha / r) · B A. Input (..., in) → (..., out)."""

    def __init__(self, base: nn.Linear, r: int = 4, alpha: float = 8.0):
        """Freeze base; lora_A (r, in) Kaiming-uniform, lora_B (out, r) zeros; scaling = alpha / r; merged = False."""
        super().__init__()
        self.base, self.r, self.alpha = base, r, alpha
        self.scaling = alpha / r
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """base(x) + scaling · x Aᵀ Bᵀ (just base(x) once merged)."""
        y = self.base(x)
        if self.merged:
            return y
        return y + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """W ← W + scaling · B A."""
        if not self.merged:
            self.base.weight += self.scaling * self.lora_B @ self.lora_A
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W ← W − scaling · B A."""
        if self.merged:
            self.base.weight -= self.scaling * self.lora_B @ self.lora_A
            self.merged = False


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts of model."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def add_lora(model: nn.Module, r: int = 4, alpha: float = 8.0, targets=("c_attn", "c_proj", "c_fc")) -> nn.Module:
    """Freeze model, then replace each nn.Linear whose last name part is in targets by LoRALinear(it, r, alpha)."""
    for p in model.parameters():
        p.requires_grad_(False)
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.split(".")[-1] in targets]
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(module, r=r, alpha=alpha))
    return model


def train_lora(model: nn.Module, windows: torch.Tensor, steps: int = 60, lr: float = 1e-2,
               batch_size: int = 8, generator=None) -> list[float]:
    """AdamW on the parameters that require gradients only; next-token loss on windows (N, T+1); the losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    losses = []
    for _ in range(steps):
        batch = windows[torch.randint(len(windows), (batch_size,), generator=generator)]
        logits = model(batch[:, :-1]).logits
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def peft_lora(model: nn.Module, r: int = 4, alpha: float = 8.0, targets=("c_attn", "c_proj", "c_fc")):
    """The same LoRA with peft: model wrapped by get_peft_model (rank r, lora_alpha alpha, no dropout)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0)
    return get_peft_model(model, config)
