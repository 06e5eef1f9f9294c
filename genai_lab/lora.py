"""Adapting a pretrained model: full fine-tuning, head-only training and LoRA (from scratch and peft).

LoRA (Hu et al., 2021) freezes a pretrained weight ``W`` (out × in) and learns a low-rank update:

    y = x Wᵀ + b + (α / r) · x Aᵀ Bᵀ,     A: (r × in), B: (out × r), r ≪ min(in, out)

``B`` starts at zero, so the adapted model starts *exactly* as the base model; only ``A`` and
``B`` are trained.  After training, ``(α / r) · B A`` can be added into ``W`` ("merged"), so the
adapted model runs as fast as the original.  :class:`LoRALinear` uses peft's layout
(``lora_A`` is (r, in), ``lora_B`` is (out, r), scaling α / r) and is tested against peft.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from .bench import Metric, register

DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")


def _check_rank_alpha(r, alpha) -> None:
    """``r`` a positive int, ``alpha`` a finite positive number (NaN or ∞ would poison every output)."""
    if isinstance(r, bool) or not isinstance(r, int):
        raise TypeError(f"r must be a positive int, got {type(r).__name__} {r!r}")
    if r < 1:
        raise ValueError(f"r must be a positive int, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a positive number, got {type(alpha).__name__} {alpha!r}")
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite positive number, got {alpha!r}")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / r) · B A``.

    Args:
        base: the pretrained layer (its weight and bias are frozen, not copied).
        r: rank of the update (positive int).
        alpha: scaling numerator; the update is multiplied by ``alpha / r``.
    Shapes: input (..., in_features) → output (..., out_features).
    """

    def __init__(self, base: nn.Linear, r: int = 4, alpha: float = 8.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {type(base).__name__}")
        _check_rank_alpha(r, alpha)
        self.base, self.r, self.alpha = base, r, float(alpha)
        self.scaling = self.alpha / r
        for p in self.base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft and nn.Linear do
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) · B A`` as a dense (out_features, in_features) matrix."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update into the base weight (forward then costs one matmul, same outputs)."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update again, restoring the original base weight (up to rounding)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


def add_lora(model: nn.Module, r: int = 4, alpha: float = 8.0,
             targets: Iterable[str] = DEFAULT_TARGETS) -> nn.Module:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose name ends with one of ``targets``.

    Works in place and returns the model; afterwards only the LoRA matrices are trainable.
    Every argument is checked before anything changes: an error leaves ``model`` as it was.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_rank_alpha(r, alpha)
    if isinstance(targets, str):
        raise TypeError(f"targets must be a list of layer names, not one str {targets!r}")
    targets = tuple(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets must be non-empty names of layers, got {targets!r}")
    found = [(name, mod) for name, mod in model.named_modules()
             if isinstance(mod, nn.Linear) and name.split(".")[-1] in targets]
    if not found:
        raise ValueError(f"targets {targets} match no nn.Linear of the model")
    for p in model.parameters():
        p.requires_grad_(False)
    for name, mod in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(mod, r=r, alpha=alpha))
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    """Every :class:`LoRALinear` inside ``model``."""
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA update into its base weight (in place)."""
    for layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora` (in place)."""
    for layer in lora_layers(model):
        layer.unmerge()
    return model


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (a tied weight counted once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    params = list(model.parameters())  # parameters() yields shared tensors once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# --------------------------------------------------------------------------- why B = 0 and A random

LORA_INITS = ("random", "zero")


def init_lora_factors(layer: LoRALinear, A: str = "random", B: str = "zero", *, seed: int = 0) -> LoRALinear:
    """Set a LoRA layer's factors, each to ``"random"`` or ``"zero"`` (in place; returns ``layer``).

    ``"random"`` draws kaiming-uniform values, as peft (and ``nn.Linear``) initialise ``A``:
    uniform in ±1/√fan_in, where fan_in is the matrix's input size (``in_features`` for ``A``,
    ``r`` for ``B``).  LoRA's own choice is ``A="random", B="zero"``.
    """
    if not isinstance(layer, LoRALinear):
        raise TypeError(f"layer must be a LoRALinear, got {type(layer).__name__}")
    for name, how in (("A", A), ("B", B)):
        if how not in LORA_INITS:
            raise ValueError(f"{name} must be one of {LORA_INITS}, got {how!r}")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p, how in ((layer.lora_A, A), (layer.lora_B, B)):
            if how == "zero":
                p.zero_()
            else:
                bound = 1.0 / math.sqrt(p.shape[1])
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype).mul_(2 * bound).sub_(bound))
    return layer


def lora_init_problem(A: str = "random", B: str = "zero", *, in_features: int = 32, out_features: int = 16,
                      r: int = 4, alpha: float = 8.0, n: int = 128, seed: int = 0):
    """A frozen linear layer with LoRA attached, and a task it can learn only through LoRA.

    The target is the frozen layer's output plus a hidden rank-``r`` change ``x ΔWᵀ``, so a
    rank-``r`` update can fit it exactly.  Seeded; the global random state is left untouched.

    Returns:
        ``(layer, x, target)``: a :class:`LoRALinear` (A and B set by :func:`init_lora_factors`),
        inputs float32 (n, in_features) and targets float32 (n, out_features).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = nn.Linear(in_features, out_features)
        layer = LoRALinear(base, r=r, alpha=alpha)
        x = torch.randn(n, in_features)
        delta = torch.randn(out_features, r) @ torch.randn(r, in_features) / math.sqrt(r * in_features)
        with torch.no_grad():
            target = base(x) + x @ delta.t()
    return init_lora_factors(layer, A, B, seed=seed + 1), x, target


def lora_init_experiment(A: str = "random", B: str = "zero", *, steps: int = 40, lr: float = 1e-2,
                         seed: int = 0, **sizes) -> dict:
    """Train LoRA from one initialisation of ``A`` and ``B`` and record what happens.

    On :func:`lora_init_problem` (``sizes`` go there): the output change at the start, the
    gradients of the first backward pass, then ``steps`` AdamW steps of mean-squared error.

    Returns:
        dict with ``A``, ``B``; ``output_change`` (max |adapted − frozen output| before training);
        ``grad_A``, ``grad_B`` (norms of the first gradient); ``A_moved``, ``B_moved`` (‖A − A₀‖,
        ‖B − B₀‖ after training); ``losses`` (``steps + 1`` values, the first before training).
    """
    import torch.nn.functional as F

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    layer, x, target = lora_init_problem(A, B, seed=seed, **sizes)
    A0, B0 = layer.lora_A.detach().clone(), layer.lora_B.detach().clone()
    with torch.no_grad():
        output_change = float((layer(x) - layer.base(x)).abs().max())
    opt = torch.optim.AdamW([layer.lora_A, layer.lora_B], lr=lr, weight_decay=0.0)
    losses, grads = [], None
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(layer(x), target)
        loss.backward()
        if grads is None:
            grads = float(layer.lora_A.grad.norm()), float(layer.lora_B.grad.norm())
        losses.append(loss.item())
        opt.step()
    with torch.no_grad():
        losses.append(float(F.mse_loss(layer(x), target)))
    return {"A": A, "B": B, "output_change": output_change, "grad_A": grads[0], "grad_B": grads[1],
            "A_moved": float((layer.lora_A.detach() - A0).norm()), "B_moved": float((layer.lora_B.detach() - B0).norm()),
            "losses": losses}


def prepare_head_only(model: nn.Module) -> nn.Module:
    """Train only the output side of a :class:`~genai_lab.gpt.TinyGPT`: final LayerNorm + output layer.

    The GPT's output layer shares its weight with the input embedding, so it is first given its
    own copy (untied); everything else is frozen.  In place; returns the model.
    """
    if not hasattr(model, "lm_head") or not hasattr(model, "transformer"):
        raise TypeError("model must be a TinyGPT (with .transformer and .lm_head)")
    model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in list(model.lm_head.parameters()) + list(model.transformer.ln_f.parameters()):
        p.requires_grad_(True)
    return model


# --------------------------------------------------------------------------- data for adaptation


@dataclass
class ShiftedData:
    """One speaker's lines (new distribution) and everyone else's (old), all unseen in training.

    Built from the *validation* split of Tiny Shakespeare (the tiny GPT never trained on it):
    ``new_train`` / ``new_val`` are the first 80 % / last 20 % of ``speaker``'s speeches;
    ``old_val`` is the rest of the validation text.  All int64 (N,).
    """

    speaker: str
    new_train: torch.Tensor
    new_val: torch.Tensor
    old_val: torch.Tensor
    new_train_text: str
    new_val_text: str


def speaker_split(speaker: str = "PETRUCHIO", train_fraction: float = 0.8) -> ShiftedData:
    """Split the validation text into ``speaker``'s speeches and everyone else's."""
    from .text import shakespeare_chars

    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    corpus = shakespeare_chars()
    speeches = [b.strip("\n") + "\n\n" for b in corpus.val_text.split("\n\n") if b.strip()]
    mine = [s for s in speeches if s.startswith(speaker + ":\n")]
    if not mine:
        raise ValueError(f"speaker {speaker!r} has no speech in the validation split")
    others = "".join(s for s in speeches if not s.startswith(speaker + ":\n"))
    cut = int(len(mine) * train_fraction)
    train_text, val_text = "".join(mine[:cut]), "".join(mine[cut:])
    enc = lambda t: torch.tensor(corpus.tokenizer.encode(t), dtype=torch.long)  # noqa: E731
    return ShiftedData(speaker, enc(train_text), enc(val_text), enc(others), train_text, val_text)


# --------------------------------------------------------------------------- the comparison


def adaptation_methods(ranks: Iterable[int]) -> list[tuple[str, dict]]:
    """Names and settings of the compared methods: full fine-tuning, head-only, LoRA at each rank."""
    methods = [("full fine-tuning", {"kind": "full", "lr": 3e-4}), ("head only", {"kind": "head", "lr": 3e-3})]
    methods += [(f"LoRA r={r}", {"kind": "lora", "r": r, "lr": 3e-3}) for r in ranks]
    return methods


def adapt(base: nn.Module, method: dict, data: ShiftedData, *, steps: int, batch_size: int,
          seed: int = 0, progress: bool = False) -> tuple[nn.Module, dict]:
    """Copy ``base``, prepare it per ``method`` and train it on ``data.new_train``.

    ``method``: ``{"kind": "full" | "head" | "lora", "lr": float, "r": int}``.
    Returns the adapted model and a row with ``trainable``, ``total``, ``new_val``, ``old_val``
    (nats/char), ``seconds`` (training wall time).
    """
    from .gpt import TrainSettings, evaluate_loss, train_gpt

    kind = method.get("kind")
    if kind not in ("full", "head", "lora"):
        raise ValueError(f"method['kind'] must be 'full', 'head' or 'lora', got {kind!r}")
    model = copy.deepcopy(base).train()
    torch.manual_seed(seed)  # LoRA's A is initialised randomly: same start whatever ran before
    if kind == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif kind == "head":
        prepare_head_only(model)
    else:
        add_lora(model, r=method["r"], alpha=2.0 * method["r"])
    trainable, total = count_trainable(model)
    settings = TrainSettings(steps=steps, batch_size=batch_size, lr=method["lr"], warmup=max(1, steps // 10),
                             weight_decay=0.0)
    hist = train_gpt(model, data.new_train, settings, generator=torch.Generator().manual_seed(seed),
                     progress=progress, desc=kind)
    model.eval()
    row = {"trainable": trainable, "total": total,
           "new_val": evaluate_loss(model, data.new_val), "old_val": evaluate_loss(model, data.old_val),
           "seconds": round(hist.seconds, 2)}
    return model, row


def adaptation_steps(data: ShiftedData, block_size: int, *, batch_size: int = 16, epochs: float = 8.0) -> int:
    """Optimiser steps that show the model each character of ``data.new_train`` about ``epochs`` times.

    The new data are small (one speaker, ~19k characters), so the step count must follow the
    data and the context length: a fixed count over-trains the long-context models of the
    ``cpu``/``gpu`` profiles (measured on the ``gpu`` model: 1,500 steps of 16×256 characters,
    about 320 passes, made full fine-tuning *worse* than no training, 3.23 vs 1.30 nats/char).
    """
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an int ≥ 2, got {block_size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not epochs > 0:
        raise ValueError(f"epochs must be positive, got {epochs!r}")
    return max(20, round(epochs * len(data.new_train) / (batch_size * block_size)))


def compare_adaptation(cfg, *, ranks: Iterable[int] | None = None, steps: int | None = None,
                       batch_size: int = 16, speaker: str = "PETRUCHIO", progress: bool = True,
                       known: dict[str, dict] | None = None) -> list[dict]:
    """The chapter's table: base model vs full fine-tuning vs head-only vs LoRA at several ranks.

    Every method starts from the chapter-5 tiny GPT (:func:`genai_lab.gpt.trained_tiny_gpt`),
    trains the same number of steps on ``speaker``'s lines, and is evaluated on held-out lines of
    the speaker (``new_val``) and on everyone else's lines (``old_val``, forgetting).
    ``known`` maps a method name (e.g. ``"full fine-tuning"``) to a row :func:`adapt` already
    returned with the same steps and batch, so it is not trained twice.
    """
    from .gpt import evaluate_loss, trained_tiny_gpt

    ranks = list(ranks) if ranks is not None else cfg.pick(smoke=[1, 4, 16], cpu=[1, 2, 4, 8, 16, 32])
    base, _ = trained_tiny_gpt(cfg)
    data = speaker_split(speaker)
    steps = steps if steps is not None else adaptation_steps(data, base.config.block_size, batch_size=batch_size)
    rows = [{"method": "base (no training)", "trainable": 0, "total": count_trainable(base)[1],
             "new_val": evaluate_loss(base, data.new_val), "old_val": evaluate_loss(base, data.old_val),
             "seconds": 0.0}]
    for name, method in adaptation_methods(ranks):
        if known and name in known:
            rows.append(dict(known[name], method=name))
            continue
        start = time.perf_counter()
        _, row = adapt(base, method, data, steps=steps, batch_size=batch_size, seed=cfg.seed, progress=progress)
        row["method"] = name
        row["wall_seconds"] = round(time.perf_counter() - start, 2)
        rows.append(row)
    return rows


def method_settings(name: str, lr: float | None = None) -> dict:
    """The settings of a compared method by its table name, optionally at another learning rate.

    ``name``: ``"full fine-tuning"``, ``"head only"`` or ``"LoRA r=<rank>"``; ``lr`` replaces the
    method's own rate from :func:`adaptation_methods` (the rates a sweep compares at).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a method name such as 'LoRA r=4', got {type(name).__name__}")
    if name.startswith("LoRA r="):
        rank = name[len("LoRA r="):]
        if not rank.isdigit() or int(rank) < 1:
            raise ValueError(f"name must be 'LoRA r=<positive int>', got {name!r}")
        settings = dict(adaptation_methods([int(rank)]))[name]
    else:
        known = dict(adaptation_methods([]))
        if name not in known:
            raise ValueError(f"name must be 'full fine-tuning', 'head only' or 'LoRA r=<rank>', got {name!r}")
        settings = known[name]
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a finite positive number, got {lr!r}")
        settings = dict(settings, lr=float(lr))
    return dict(settings)


def learning_rate_sweep(base: nn.Module, data: ShiftedData, lrs: Iterable[float],
                        methods: Iterable[str] = ("full fine-tuning", "head only", "LoRA r=4"), *,
                        steps: int, batch_size: int = 16, seed: int = 0,
                        known: dict[tuple[str, float], dict] | None = None) -> list[dict]:
    """Train every method at every learning rate: same steps, batch, data and seed; only the rate varies.

    A method trained at a higher rate moves its weights further, which changes both its gain on the
    new data and its forgetting, so methods can only be ranked at matched rates (or along their
    whole gain-vs-forgetting curve).

    Args:
        base: the pretrained model (not modified).
        data: the :class:`ShiftedData` to adapt to.
        lrs: the learning rates, each a finite positive number.
        methods: names as in :func:`method_settings`.
        steps, batch_size, seed: as :func:`adapt`.
        known: ``{(method, lr): row}`` rows :func:`adapt` already returned with the same steps, batch
            and seed (not trained again).
    Returns:
        One dict per (method, lr), methods in order, rates ascending: ``method``, ``lr``,
        ``trainable``, ``new_val``, ``old_val``, ``gain`` (base new_val − new_val, nats/char) and
        ``forgetting`` (old_val − base old_val, nats/char).
    """
    from .gpt import evaluate_loss

    lrs = sorted(float(lr) for lr in lrs)
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    methods = list(methods)
    if not methods:
        raise ValueError("methods must name at least one method")
    settings = {(name, lr): method_settings(name, lr) for name in methods for lr in lrs}  # validates both
    base_new, base_old = evaluate_loss(base, data.new_val), evaluate_loss(base, data.old_val)
    rows = []
    for (name, lr), method in settings.items():
        row = (known or {}).get((name, lr))
        if row is None:
            _, row = adapt(base, method, data, steps=steps, batch_size=batch_size, seed=seed)
        rows.append({"method": name, "lr": lr, "trainable": row["trainable"], "new_val": row["new_val"],
                     "old_val": row["old_val"], "gain": base_new - row["new_val"],
                     "forgetting": row["old_val"] - base_old})
    return rows


# --------------------------------------------------------------------------- peft on SmolLM2


def token_blocks(tokenizer, text: str, block_size: int, n_blocks: int) -> torch.Tensor:
    """The first ``n_blocks`` consecutive windows of ``block_size`` tokens of ``text``: int64 (n, block)."""
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an int ≥ 2, got {block_size!r}")
    if not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive int, got {n_blocks!r}")
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
    if len(ids) < block_size * n_blocks:
        raise ValueError(f"text has {len(ids)} tokens, fewer than block_size × n_blocks = {block_size * n_blocks}")
    return ids[: block_size * n_blocks].view(n_blocks, block_size)


@torch.no_grad()
def causal_lm_loss(model, blocks: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats/token) of a causal LM on ``blocks`` (n, T)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for s in range(0, len(blocks), batch_size):
        b = blocks[s:s + batch_size].to(device)
        total += float(model(input_ids=b, labels=b).loss) * len(b)
    model.train(was_training)
    return total / len(blocks)


def peft_lora_finetune(model, train_blocks: torch.Tensor, *, r: int = 8, alpha: float = 16.0,
                       steps: int = 30, batch_size: int = 4, lr: float = 2e-3, seed: int = 0,
                       target_modules: tuple[str, ...] = ("q_proj", "v_proj"), progress: bool = True):
    """Wrap a transformers causal LM with peft LoRA and train it on ``train_blocks`` (n, T).

    Returns ``(peft_model, history)``; the base weights stay frozen (only LoRA matrices train).
    """
    from peft import LoraConfig, get_peft_model

    from .train import infinite_batches, train_loop

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(target_modules),
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    device = next(peft_model.parameters()).device
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    batches = infinite_batches(train_blocks, batch_size=batch_size, generator=torch.Generator().manual_seed(seed),
                               device=device)
    hist = train_loop(peft_model, opt, batches, lambda m, b: m(input_ids=b[0], labels=b[0]).loss, steps,
                      progress=progress, desc="peft LoRA")
    return peft_model.eval(), hist


# --------------------------------------------------------------------------- bench


@register("lora", "LoRA vs full fine-tuning vs head-only on the tiny GPT (one speaker's lines)")
def bench_lora(cfg) -> list[Metric]:
    """Adapt the chapter-5 tiny GPT to one speaker; report losses, trainable shares and merge error."""
    rows = compare_adaptation(cfg, ranks=cfg.pick(smoke=[4], cpu=[4, 16]), progress=False)
    by = {r["method"]: r for r in rows}
    base, lora = by["base (no training)"], by["LoRA r=4"]
    full = by["full fine-tuning"]
    # the same three methods at matched learning rates (the table's runs reused): the chapter's sweep
    from .gpt import trained_tiny_gpt

    gpt_model, _ = trained_tiny_gpt(cfg)
    data = speaker_split()
    steps = adaptation_steps(data, gpt_model.config.block_size, batch_size=16)
    names = ("full fine-tuning", "head only", "LoRA r=4")
    own = {name: method_settings(name)["lr"] for name in names}
    sweep = learning_rate_sweep(gpt_model, data, sorted(set(own.values())), names, steps=steps, batch_size=16,
                                seed=cfg.seed, known={(name, own[name]): by[name] for name in names})
    best = {name: max((r for r in sweep if r["method"] == name), key=lambda r: r["gain"]) for name in names}
    gains = {(r["method"], r["lr"]): r["gain"] for r in sweep}
    lora_head_gap = max(abs(gains["LoRA r=4", lr] - gains["head only", lr]) for lr in own.values())
    # merging must not change the function
    from .gpt import GPTConfig, TinyGPT

    torch.manual_seed(cfg.seed)
    net = add_lora(TinyGPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32)), r=4)
    for layer in lora_layers(net):
        nn.init.normal_(layer.lora_B, std=0.02)
    idx = torch.randint(0, 65, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = net(idx).logits
        merge_lora(net)
        after = net(idx).logits
    return [
        Metric("lora_r4_new_val_nats_per_char", lora["new_val"], higher_is_better=False, unit="nats/char"),
        Metric("lora_r4_gain_over_base", base["new_val"] - lora["new_val"], unit="nats/char"),
        Metric("full_ft_new_val_nats_per_char", full["new_val"], higher_is_better=False, unit="nats/char"),
        Metric("lora_r4_old_val_change", lora["old_val"] - base["old_val"], higher_is_better=False, unit="nats/char"),
        Metric("full_ft_old_val_change", full["old_val"] - base["old_val"], higher_is_better=False, unit="nats/char"),
        Metric("lora_r4_trainable_share", lora["trainable"] / lora["total"], higher_is_better=False),
        Metric("lora_merge_max_abs_diff", float((before - after).abs().max()), higher_is_better=False, bar=1e-4),
        Metric("matched_lr_full_ft_best_gain", best["full fine-tuning"]["gain"], unit="nats/char"),
        Metric("matched_lr_full_ft_best_lr", best["full fine-tuning"]["lr"]),
        Metric("matched_lr_full_ft_forgetting_at_best", best["full fine-tuning"]["forgetting"],
               higher_is_better=False, unit="nats/char"),
        Metric("matched_lr_lora_r4_best_gain", best["LoRA r=4"]["gain"], unit="nats/char"),
        Metric("matched_lr_lora_r4_best_lr", best["LoRA r=4"]["lr"]),
        Metric("matched_lr_lora_r4_forgetting_at_best", best["LoRA r=4"]["forgetting"],
               higher_is_better=False, unit="nats/char"),
        Metric("matched_lr_head_best_gain", best["head only"]["gain"], unit="nats/char"),
        Metric("matched_lr_lora_r4_vs_head_max_gain_gap", lora_head_gap, higher_is_better=False, unit="nats/char"),
    ]
