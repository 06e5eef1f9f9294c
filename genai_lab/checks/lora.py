"""Checks for the LoRA lab: a LoRALinear layer, merge/unmerge, counting trainable parameters,
attaching LoRA to a GPT, training it, and the same with peft.

The learner's layer is compared with :class:`genai_lab.lora.LoRALinear` and with peft's own LoRA
layer holding the same weights; the learner's ``add_lora`` with :func:`genai_lab.lora.add_lora`.
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


TARGETS = ("c_attn", "c_proj", "c_fc")


def _tiny_gpt(seed: int = 0, **sizes):
    import torch

    from ..gpt import GPTConfig, TinyGPT

    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(**{"vocab_size": 12, "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 32, **sizes}))


def _wrapped_names(model) -> set[str]:
    """Names of the modules that hold a LoRA pair (``lora_A`` and ``lora_B``) around a ``base``."""
    return {name for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "lora_B")}


def check_add_lora(fn) -> "CheckResult":  # noqa: F821
    """``fn(model, r, alpha, targets)``: the model frozen, each target ``nn.Linear`` wrapped in LoRA."""
    import copy

    import torch

    from ..lora import add_lora, count_trainable

    def body():
        x = torch.randint(0, 12, (2, 8), generator=torch.Generator().manual_seed(0))
        for targets in (TARGETS, ("c_attn",)):
            model = _tiny_gpt(n_layer=2)
            with torch.no_grad():
                before = model(x).logits
            reference = add_lora(copy.deepcopy(model), r=2, alpha=4.0, targets=targets)
            got = fn(model, r=2, alpha=4.0, targets=targets)
            if not isinstance(got, torch.nn.Module):
                return f"add_lora must return the model, got {type(got).__name__}"
            want_names, got_names = _wrapped_names(reference), _wrapped_names(got)
            if got_names != want_names:
                missing, extra = sorted(want_names - got_names), sorted(got_names - want_names)
                return (f"with targets={targets}: LoRA layers expected at {sorted(want_names)}"
                        + (f"; missing {missing}" if missing else "") + (f"; not a target: {extra}" if extra else ""))
            want, have = count_trainable(reference), count_trainable(got)
            if have != want:
                hint = (" — looks like: the model was not frozen before wrapping" if have[0] > want[0]
                        else "")
                return f"with targets={targets}: (trainable, total) = {have}, expected {want}{hint}"
            with torch.no_grad():
                after = got(x).logits
            if not torch.allclose(after, before, atol=1e-6):
                return f"right after add_lora the outputs must not change (B = 0); they moved by {(after - before).abs().max():.3g}"
        return None

    return run_check("add LoRA to a GPT", body)


def _period_windows(n: int = 64, length: int = 9, seed: int = 0):
    """Windows of a repeating 5-token pattern at random phases: int64 (n, length)."""
    import torch

    period = torch.tensor([3, 7, 1, 9, 5])
    starts = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(seed))
    return period[(starts[:, None] + torch.arange(length)) % 5]


def _next_token_loss(model, windows) -> float:
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        logits = model(windows[:, :-1]).logits
        return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1)))


def check_train_lora(fn) -> "CheckResult":  # noqa: F821
    """``fn(model, windows, steps, lr, batch_size, generator)``: trains the LoRA matrices only; the losses."""
    import torch

    from ..lora import add_lora, lora_layers

    def body():
        model = add_lora(_tiny_gpt(), r=4, alpha=8.0)
        windows = _period_windows()
        frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
        lora_before = [(layer.lora_A.detach().clone(), layer.lora_B.detach().clone()) for layer in lora_layers(model)]
        start = _next_token_loss(model, windows)
        losses = fn(model, windows, steps=40, lr=3e-2, batch_size=8, generator=torch.Generator().manual_seed(1))
        if not isinstance(losses, (list, tuple)) or len(losses) != 40:
            size = f" of length {len(losses)}" if isinstance(losses, (list, tuple)) else ""
            return f"return the list of the 40 training losses, got {type(losses).__name__}{size}"
        if not all(isinstance(v, float) for v in losses):
            return "each loss must be a Python float (loss.item()), so no graph is kept alive"
        changed = [k for k, v in model.state_dict().items() if k in frozen and not torch.equal(v, frozen[k])]
        if changed:
            return f"frozen weights changed ({changed[0]}, …): train only the parameters that require gradients"
        if all(torch.equal(layer.lora_B, b0) for layer, (_, b0) in zip(lora_layers(model), lora_before)):
            return "lora_B never moved: did the optimizer step (and was it given the LoRA parameters)?"
        end = _next_token_loss(model, windows)
        if not end < start - 0.2:
            return (f"the loss on the windows barely fell ({start:.3f} → {end:.3f}): is the target the next "
                    "token (windows[:, 1:]) of the inputs windows[:, :-1]?")
        if abs(losses[0] - start) > 0.3:
            return f"the first returned loss ({losses[0]:.3f}) should be the loss before any update (≈ {start:.3f})"
        return None

    return run_check("train LoRA (only A and B move)", body)


def check_peft_lora(fn) -> "CheckResult":  # noqa: F821
    """``fn(model, r, alpha, targets)``: peft's LoRA on the same layers, the same counts as ``add_lora``."""
    import copy

    import torch

    from ..lora import add_lora, count_trainable

    def body():
        from peft import PeftModel

        x = torch.randint(0, 12, (2, 8), generator=torch.Generator().manual_seed(0))
        model = _tiny_gpt(n_layer=2)
        with torch.no_grad():
            before = model(x).logits
        reference = add_lora(copy.deepcopy(model), r=2, alpha=6.0, targets=("c_attn", "c_fc"))
        got = fn(model, r=2, alpha=6.0, targets=("c_attn", "c_fc"))
        if not isinstance(got, PeftModel):
            return f"return the model that peft's get_peft_model gives, got {type(got).__name__}"
        want, have = count_trainable(reference), count_trainable(got)
        if have[0] != want[0]:
            return (f"peft trains {have[0]:,} parameters, your add_lora would train {want[0]:,} with the same "
                    "r and targets: check r and target_modules")
        scalings = {s for m in got.modules() if isinstance(getattr(m, "scaling", None), dict) for s in m.scaling.values()}
        if scalings != {3.0}:
            return f"the update's scaling should be lora_alpha / r = 3, got {sorted(scalings)}: pass lora_alpha=alpha"
        dropouts = [m for name, m in got.named_modules() if name.endswith("lora_dropout.default")]
        if any(not isinstance(m, torch.nn.Identity) for m in dropouts):
            return "set lora_dropout=0.0, as add_lora has no dropout"
        with torch.no_grad():
            after = got(x).logits
        if not torch.allclose(after, before, atol=1e-6):
            return "right after wrapping, the outputs must not change (peft starts B at zero)"
        return None

    return run_check("LoRA with peft (vs add_lora)", body)


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
add_lora = Exercise(
    "lora", "add_lora", check_add_lora, ("add_lora",),
    "first switch off gradients for every parameter, then walk model.named_modules(): collect the "
    "nn.Linear modules whose last name part is a target before changing anything, and put your "
    "LoRALinear in each one's place on its parent module (get_submodule, setattr).")
train_lora = Exercise(
    "lora", "train_lora", check_train_lora, ("train_lora",),
    "give the optimiser only the parameters with requires_grad; each step draws batch_size rows with "
    "the generator, feeds all but the last token and scores the next token at every position.")
peft_lora = Exercise(
    "lora", "peft_lora", check_peft_lora, ("peft_lora",),
    "peft needs a LoraConfig (rank, lora_alpha, target_modules, lora_dropout) and get_peft_model; "
    "peft starts B at zero too, so the outputs do not change.")
