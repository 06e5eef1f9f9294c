"""Checks for the LoRA lab: a LoRALinear layer, merge/unmerge, counting trainable parameters.

The learner's layer is compared with :class:`genai_lab.lora.LoRALinear` and with peft's own LoRA
layer holding the same weights.
"""

from __future__ import annotations

from . import Exercise, run_check


def _base():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Linear(10, 6)


def _copy(linear):
    from torch import nn

    new = nn.Linear(linear.in_features, linear.out_features)
    new.load_state_dict(linear.state_dict())
    return new


def _set_update(layer, seed: int = 1) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=g) * 0.3)
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.3)


def check_lora_linear(cls) -> "CheckResult":  # noqa: F821
    """``cls(base, r, alpha)``: frozen base, ``lora_A`` (r, in), ``lora_B`` (out, r) = 0, scaling α/r."""
    import torch

    def body():
        base = _base()
        x = torch.randn(4, 10, generator=torch.Generator().manual_seed(2))
        expected_start = base(x)
        layer = cls(_copy(base), r=3, alpha=6.0)
        for name, shape in (("lora_A", (3, 10)), ("lora_B", (6, 3))):
            t = getattr(layer, name, None)
            if not isinstance(t, torch.nn.Parameter) or tuple(t.shape) != shape:
                return f"{name} should be an nn.Parameter of shape {shape}, got {getattr(t, 'shape', t)}"
        if not torch.equal(layer.lora_B, torch.zeros(6, 3)):
            return "lora_B must start at zero, so the adapted layer starts exactly as the base"
        if not torch.allclose(layer(x), expected_start, atol=1e-6):
            return "at the start (B = 0) the output must equal the base layer's output"
        if any(p.requires_grad for p in layer.base.parameters()):
            return "the base layer's weight and bias must be frozen (requires_grad=False)"
        _set_update(layer)
        from peft import LoraConfig, get_peft_model

        holder = torch.nn.Sequential()
        holder.add_module("proj", _copy(base))
        ref = get_peft_model(holder, LoraConfig(r=3, lora_alpha=6, target_modules=["proj"], lora_dropout=0.0))
        with torch.no_grad():
            ref.base_model.model.proj.lora_A["default"].weight.copy_(layer.lora_A)
            ref.base_model.model.proj.lora_B["default"].weight.copy_(layer.lora_B)
            got, want = layer(x), ref(x)
        if not torch.allclose(got, want, atol=1e-5):
            with torch.no_grad():
                unscaled = layer.base(x) + x @ layer.lora_A.t() @ layer.lora_B.t()
            why = (" — looks like: the update is not multiplied by scaling = alpha / r"
                   if torch.allclose(got, unscaled, atol=1e-5) else " (is the update scaled by alpha / r?)")
            return (f"with the same A and B, the output differs from peft's LoRA layer by up to "
                    f"{(got - want).abs().max():.3g}{why}")
        return None

    return run_check("LoRALinear (vs peft)", body)


def check_merge(cls) -> "CheckResult":  # noqa: F821
    """``layer.merge()`` adds (α/r)·B·A into the base weight; ``unmerge()`` takes it out again."""
    import torch

    def body():
        layer = cls(_copy(_base()), r=2, alpha=4.0)
        _set_update(layer)
        x = torch.randn(5, 10, generator=torch.Generator().manual_seed(3))
        w0 = layer.base.weight.detach().clone()
        with torch.no_grad():
            before = layer(x)
            layer.merge()
            expected_w = w0 + 2.0 * layer.lora_B @ layer.lora_A
            if not torch.allclose(layer.base.weight, expected_w, atol=1e-6):
                return "after merge() the base weight should be W + (alpha / r) · B @ A"
            merged_out = layer(x)
            if not torch.allclose(merged_out, before, atol=1e-5):
                return (f"merged outputs differ from unmerged ones by {(merged_out - before).abs().max():.3g}: "
                        "after merging, forward must not add the update a second time")
            layer.unmerge()
            if not torch.allclose(layer.base.weight, w0, atol=1e-6):
                return "unmerge() should restore the original base weight"
            if not torch.allclose(layer(x), before, atol=1e-5):
                return "after unmerge() the outputs should be the same as before merging"
        return None

    return run_check("merge / unmerge", body)


def check_count_trainable(fn) -> "CheckResult":  # noqa: F821
    """``fn(model) -> (trainable, total)`` parameter counts, a shared (tied) weight counted once."""
    import torch

    from ..gpt import GPTConfig, TinyGPT
    from ..lora import add_lora, count_trainable

    def body():
        torch.manual_seed(0)
        model = TinyGPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=32))
        cases = [("a fresh GPT (tied embedding)", model)]
        frozen = TinyGPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=32))
        cases.append(("the GPT with LoRA r=4", add_lora(frozen, r=4)))
        for label, m in cases:
            got, want = fn(m), count_trainable(m)
            if tuple(got) != tuple(want):
                return f"for {label}: got (trainable, total) = {tuple(got)}, expected {want}"
        return None

    return run_check("count trainable parameters", body)


# --------------------------------------------------------------------------- the lab's exercises
# ``lora_linear.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/lora.py).
lora_linear = Exercise(
    "lora", "lora_linear", check_lora_linear, ("LoRALinear",),
    "register A and B as nn.Parameter so they train and base's parameters stop requiring "
    "gradients. The update goes through A first (in → r) then B (r → out), and is multiplied by "
    "alpha / r; B starts at zero, so a new layer equals its base.")
merge = Exercise(
    "lora", "merge", check_merge, ("LoRALinear",),
    "the update as one matrix is B @ A times the scaling, the same shape as base.weight. Change "
    "the weight in place without recording gradients, and keep a flag so forward does not add the "
    "update twice.")
count_trainable = Exercise(
    "lora", "count_trainable", check_count_trainable, ("count_trainable",),
    "iterate over model.parameters() once (it yields a shared tensor once) and add up numel(), "
    "all of them and those that require a gradient.")
