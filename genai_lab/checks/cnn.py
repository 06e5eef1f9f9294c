"""Checks for the CNN lab: each compares the learner's function with PyTorch on fixed seeded inputs.

>>> from genai_lab.checks import cnn as cnn_checks
>>> cnn_checks.check_conv2d(my_conv2d)          # doctest: +SKIP
✅ conv2d: passed
"""

from __future__ import annotations

from typing import Callable

from . import Exercise, check_function, expect, run_check


def _rand(*shape, seed: int):
    import torch

    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) - 0.5


def check_output_size(fn: Callable, **kw):
    """``fn(size, kernel_size, stride, padding) -> int`` against the shape PyTorch's conv2d returns."""
    import torch
    import torch.nn.functional as F

    cases = []
    for size, k, s, p in [(8, 3, 1, 0), (8, 3, 1, 1), (28, 5, 2, 2), (7, 3, 2, 0), (10, 4, 3, 1)]:
        out = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k), stride=s, padding=p)
        cases.append(((size, k, s, p), {}, int(out.shape[-1])))
    return check_function(fn, cases, name="output size", **kw)


def check_conv2d(fn: Callable, *, atol: float = 1e-5, **kw):
    """``fn(x, weight, bias, stride, padding)`` against ``torch.nn.functional.conv2d`` (to ``atol``)."""
    import torch.nn.functional as F

    cases = []
    for i, (c_in, c_out, k, s, p, size) in enumerate([(1, 1, 3, 1, 0, 6), (1, 4, 3, 1, 1, 8),
                                                       (3, 2, 3, 2, 1, 9), (2, 3, 5, 2, 2, 11),
                                                       (2, 2, 2, 3, 0, 10)]):
        x = _rand(2, c_in, size, size, seed=10 + i)
        w = _rand(c_out, c_in, k, k, seed=20 + i)
        b = _rand(c_out, seed=30 + i)
        mistakes = {"the kernel is flipped (a textbook convolution); F.conv2d slides it unflipped "
                    "(a cross-correlation)": lambda x=x, w=w, b=b, s=s, p=p: F.conv2d(x, w.flip(-2, -1), b, stride=s,
                                                                                      padding=p),
                    "the bias is missing": lambda x=x, w=w, s=s, p=p: F.conv2d(x, w, None, stride=s, padding=p)}
        cases.append(((x, w, b), {"stride": s, "padding": p},
                      expect(F.conv2d(x, w, b, stride=s, padding=p), mistakes, atol=atol, rtol=atol)))
    return check_function(fn, cases, name="conv2d", **kw)


def check_max_pool2d(fn: Callable, **kw):
    """``fn(x, kernel_size, stride)`` against ``torch.nn.functional.max_pool2d``."""
    import torch.nn.functional as F

    cases = []
    for i, (k, s, size) in enumerate([(2, 2, 8), (2, 2, 7), (3, 1, 6), (3, 2, 9)]):
        x = _rand(2, 3, size, size, seed=40 + i)
        cases.append(((x, k, s), {}, F.max_pool2d(x, k, s)))
    return check_function(fn, cases, name="max-pooling", **kw)


def check_parameter_counts(conv_fn: Callable, dense_fn: Callable, **kw):
    """``conv_fn(in_ch, out_ch, k)`` and ``dense_fn(in_f, out_f)`` against real PyTorch layers."""
    from torch import nn

    def body():
        for args in [(1, 16, 3), (16, 32, 3), (3, 64, 7)]:
            expected = sum(p.numel() for p in nn.Conv2d(*args).parameters())
            got = conv_fn(*args)
            if got != expected:
                return f"conv: {args} gave {got!r}, nn.Conv2d{args} has {expected}"
        for args in [(64, 10), (784, 128), (1, 1)]:
            expected = sum(p.numel() for p in nn.Linear(*args).parameters())
            got = dense_fn(*args)
            if got != expected:
                return f"dense: {args} gave {got!r}, nn.Linear{args} has {expected}"
        return None

    return run_check("parameter counts", body, **kw)


def check_receptive_field(fn: Callable, **kw):
    """``fn([(kernel, stride), ...]) -> int`` against :func:`genai_lab.cnn.receptive_field`, which
    the tests check against a gradient measurement."""
    from ..cnn import receptive_field

    stacks = [[(3, 1)], [(3, 1), (3, 1)], [(3, 1), (2, 2), (3, 1), (2, 2)],
              [(5, 2), (3, 2), (3, 1)], [(7, 2), (3, 2), (3, 1), (3, 1), (2, 2), (3, 1)]]
    return check_function(fn, [((s,), {}, receptive_field(s)) for s in stacks],
                          name="receptive field", **kw)


# --------------------------------------------------------------------------- adapting a pretrained CNN
def _small_pretrained(seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def check_freezing(freeze_for_transfer, fine_tuning_groups):
    """``freeze_for_transfer(model, new_layer)`` freezes all but ``new_layer`` and returns its
    parameters; ``fine_tuning_groups(model, new_layer, lr)`` gives two optimizer groups, the new
    layer at ``lr`` and every other parameter at ``lr / 10``, nothing frozen."""
    import torch

    def body():
        model = _small_pretrained()
        new_layer = model[-1]
        trainable = freeze_for_transfer(model, new_layer)
        frozen_ids = {id(p) for p in model.parameters() if not p.requires_grad}
        new_ids = {id(p) for p in new_layer.parameters()}
        if any(not p.requires_grad for p in new_layer.parameters()):
            return "the new layer must stay trainable (requires_grad True)"
        if frozen_ids != {id(p) for p in model.parameters()} - new_ids:
            still = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in new_ids]
            return f"every pretrained parameter must be frozen; still trainable: {still}"
        if trainable is None or {id(p) for p in trainable} != new_ids:
            return "freeze_for_transfer must return the new layer's parameters (the ones to optimise)"
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(list(trainable), lr=0.1)
        model(torch.randn(2, 1, 8, 8)).square().mean().backward()
        optimizer.step()
        changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
        if any(c for c, p in zip(changed, model.parameters()) if id(p) not in new_ids):
            return "a training step moved a frozen parameter"

        model = _small_pretrained(1)
        new_layer = model[-1]
        new_ids = {id(p) for p in new_layer.parameters()}
        groups = fine_tuning_groups(model, new_layer, 0.01)
        if not isinstance(groups, (list, tuple)) or len(groups) != 2 or not all(isinstance(g, dict) for g in groups):
            return "fine_tuning_groups must return a list of two dicts ({'params': [...], 'lr': ...})"
        seen = [id(p) for g in groups for p in g["params"]]
        if sorted(seen) != sorted(id(p) for p in model.parameters()):
            return "the two groups together must hold every parameter of the model exactly once"
        by_lr = {}
        for g in groups:
            by_lr.setdefault(g.get("lr"), set()).update(id(p) for p in g["params"])
        if not any(isinstance(lr, float) and abs(lr - 0.001) < 1e-12 for lr in by_lr):
            return (f"with lr=0.01 the groups have learning rates {sorted(by_lr, key=str)}: the pretrained "
                    "parameters must get lr / 10 (here 0.001)")
        if by_lr.get(0.01) != new_ids:
            return "the group at lr must hold exactly the new layer's parameters"
        if any(not p.requires_grad for p in model.parameters()):
            return "fine-tuning freezes nothing: every parameter keeps requires_grad True"
        torch.optim.Adam(groups)  # the groups must be what an optimizer accepts
        return None

    return run_check("freezing", body)

# --------------------------------------------------------------------------- the lab's exercises
# ``output_size.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/cnn.py).
output_size = Exercise(
    "cnn", "output_size", check_output_size, ("output_size",),
    "the formula in the task is all you need; Python's integer division // is the floor.")
conv2d = Exercise(
    "cnn", "conv2d", check_conv2d, ("conv2d",),
    "pad first, compute H_out and W_out with your output_size formula, then loop over the k×k "
    "kernel offsets only (not over output pixels). For one offset (u, v), a strided slice of the "
    "padded input gives the pixel each output position sees there, for all positions at once; its "
    "step is the stride. Mix its C_in channels with the kernel's (C_out, C_in) weights at that "
    "offset (einsum or a matrix product) and accumulate. Do not flip the kernel: PyTorch's conv2d "
    "is a cross-correlation.")
max_pool2d = Exercise(
    "cnn", "max_pool2d", check_max_pool2d, ("max_pool2d",),
    "reuse the idea of conv2d: for each offset inside the window, slice the strided view of the "
    "input, and keep a running elementwise maximum instead of a weighted sum. Remember the "
    "default stride.")
parameter_counts = Exercise(
    "cnn", "parameter_counts", check_parameter_counts, ("conv_params", "dense_params"),
    "list the tensors each layer owns (weight and bias) and multiply out their shapes. The image "
    "size never enters the conv count.")
receptive_field = Exercise(
    "cnn", "receptive_field", check_receptive_field, ("receptive_field",),
    "two running numbers and one loop over the layers; update r before j, since r uses the old "
    "jump.")
freezing = Exercise(
    "cnn", "freezing", check_freezing, ("freeze_for_transfer", "fine_tuning_groups"),
    "a parameter is frozen when its requires_grad is False; loop over model.parameters() and keep "
    "the new layer's ones trainable (compare with `is`, not ==). For fine-tuning, an optimizer "
    "accepts a list of dicts, each with its own 'params' and 'lr'.")
