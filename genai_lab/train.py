"""One small training loop that every chapter reuses.

The loop is deliberately plain: draw a batch, compute a loss, step the optimiser, record it.
What differs between chapters is the *loss function*, passed in as ``loss_fn(model, batch)``.

>>> history = train_loop(model, opt, batches, loss_fn, steps=200)       # doctest: +SKIP
>>> history.final_loss, history.seconds                                  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

from .parallel import launched_world_size


@dataclass
class History:
    """What :func:`train_loop` records.

    Attributes:
        steps: step index of each entry in ``losses``.
        losses: training loss per step (float).
        evals: ``{name: [(step, value), ...]}`` from the periodic ``eval_fn``.
        seconds: wall time of the whole loop.
        examples: number of examples (rows of the first batch tensor) seen.
    """

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    seconds: float = 0.0
    examples: int = 0

    @property
    def final_loss(self) -> float:
        """Mean of the last 10 % of recorded losses (smoother than the very last one)."""
        if not self.losses:
            return math.nan
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return sum(tail) / len(tail)

    def last(self, name: str) -> float:
        """The last value of an evaluation metric."""
        if name not in self.evals or not self.evals[name]:
            raise KeyError(f"no evaluation named {name!r}; have {sorted(self.evals)}")
        return self.evals[name][-1][1]

    def plot(self, ax=None, title: str = "Training loss", eval_names: Sequence[str] | None = None):
        """Plot the training loss (and evaluation curves) against steps."""
        from .viz import plot_history

        return plot_history(self, ax=ax, title=title, eval_names=eval_names)


def infinite_batches(*tensors, batch_size: int, generator=None, device=None) -> Iterator[tuple]:
    """Yield random mini-batches (reshuffled every epoch) from tensors sharing their first dim.

    Args:
        tensors: e.g. ``x (N, ...)`` and ``y (N,)``.
        batch_size: rows per batch (≤ N).
        generator: a ``torch.Generator`` for repeatable order.
        device: move each batch there.
    """
    import torch

    if not tensors:
        raise ValueError("tensors must hold at least one tensor")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors must share their first dimension, got {[len(t) for t in tensors]}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            batch = tuple(t[idx] for t in tensors)
            if device is not None:
                batch = tuple(b.to(device, non_blocking=True) for b in batch)
            yield batch


def train_loop(model, optimizer, batches: Iterable, loss_fn: Callable, steps: int, *,
               eval_fn: Callable[[], dict] | None = None, eval_every: int | None = None,
               scheduler=None, clip_grad: float | None = None, max_seconds: float | None = None,
               progress: bool = True, desc: str = "training", history: History | None = None
               ) -> History:
    """Train ``model`` for ``steps`` optimiser steps and return a :class:`History`.

    Args:
        model: a ``torch.nn.Module`` (put in train mode; eval_fn may switch it, it is restored).
        optimizer: any ``torch.optim`` optimiser over the trainable parameters.
        batches: an iterator of batches (e.g. :func:`infinite_batches`).
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``.
        steps: number of steps (positive int).
        eval_fn: called every ``eval_every`` steps and at the end; returns ``{name: float}``.
        scheduler: optional LR scheduler stepped after each optimiser step.
        clip_grad: clip the global gradient norm to this value.
        max_seconds: stop early once this much wall time has passed (the time budget).
        progress: show a tqdm progress bar with the running loss.
        history: continue an earlier history (step numbers carry on).

    Under ``accelerate launch`` (several processes) the loop is data-parallel: each process
    trains on its slice of every batch and the gradients are averaged (:mod:`genai_lab.parallel`);
    the history records the loss averaged over the processes.
    """
    import torch
    from tqdm.auto import tqdm

    from genai_lab.config import show_progress

    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise ValueError(f"eval_every must be a positive int or None, got {eval_every!r}")
    hist = history if history is not None else History()
    offset = hist.steps[-1] + 1 if hist.steps else 0
    params = [p for g in optimizer.param_groups for p in g["params"]]
    parallel = None
    if launched_world_size() > 1:
        from .parallel import DataParallel

        parallel = DataParallel(params)
    it = iter(batches)
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not (progress and show_progress()), leave=False, mininterval=0.5)

    def run_eval(step):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for key, value in eval_fn().items():
                hist.evals.setdefault(key, []).append((step, float(value)))
        model.train(was_training)

    model.train()
    step = offset
    for i in bar:
        step = offset + i
        batch = next(it)
        if parallel is not None:
            batch = parallel.shard(batch)
        loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if parallel is not None:
            parallel.average_gradients()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        value = float(loss.detach()) if parallel is None else parallel.mean(float(loss.detach()))
        hist.steps.append(step)
        hist.losses.append(value)
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        hist.examples += len(first) if hasattr(first, "__len__") else 1
        if i % 20 == 0:
            bar.set_postfix(loss=f"{value:.3f}")
        if eval_fn is not None and eval_every and (i + 1) % eval_every == 0 and i + 1 < steps:
            run_eval(step)
        if max_seconds is not None:
            out_of_time = time.perf_counter() - start > max_seconds
            if out_of_time if parallel is None else parallel.any(out_of_time):  # all processes stop together
                break
    if eval_fn is not None:
        run_eval(step)
    hist.seconds += time.perf_counter() - start
    bar.close()
    return hist


def accuracy(model, x, y, *, batch_size: int = 512, device=None) -> float:
    """Share of rows where ``model(x).argmax(-1) == y`` (evaluated without gradients)."""
    import torch

    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if len(y) == 0:
        raise ValueError("x and y must not be empty")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(y), batch_size):
            logits = model(x[s:s + batch_size].to(device))
            correct += (logits.argmax(-1).cpu() == y[s:s + batch_size].cpu()).sum().item()
    model.train(was_training)
    return correct / len(y)


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
