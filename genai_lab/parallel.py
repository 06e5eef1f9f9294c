"""Data-parallel training across processes, with Hugging Face Accelerate as the engine.

Run any script that trains through :func:`genai_lab.train.train_loop` under

    accelerate launch --num_processes 2 script.py          # two GPUs (or --cpu: two CPU processes)

and nothing in the script changes: ``train_loop`` sees the launcher's environment
(``WORLD_SIZE`` > 1), and every step

1. each process takes its own slice of the global batch (all processes draw the same global
   batches, because every process is seeded alike by ``gl.setup()``);
2. computes the loss and gradients on that slice;
3. averages the gradients over the processes (an all-reduce), so every process takes the same
   optimiser step — the gradient of the mean loss over the whole global batch.

With a loss that is a mean over examples and equal slices, the run matches one process on the
whole batch up to float rounding (``tests/test_parallel.py`` checks this with two CPU processes).
Accelerate's ``PartialState`` starts the process group (gloo on CPU, NCCL on CUDA) and says which
process is which; the model is left unwrapped, so a ``loss_fn`` may call any of its methods.
"""

from __future__ import annotations

import os


def launched_world_size() -> int:
    """Number of processes the launcher started (``WORLD_SIZE``; 1 when not launched)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={value!r} is not an int") from None
    if size < 1:
        raise ValueError(f"WORLD_SIZE must be ≥ 1, got {size}")
    return size


class DataParallel:
    """Gradient averaging over the launched processes, for a list of parameters.

    ``shard(batch)`` → this process's slice; ``average_gradients()`` after ``backward()``;
    ``mean(value)`` → the value averaged over processes (for the logged loss).
    """

    def __init__(self, params) -> None:
        import torch
        import torch.distributed as dist
        from accelerate import PartialState

        self.state = PartialState()
        self.rank, self.size = self.state.process_index, self.state.num_processes
        self.params = [p for p in params if p.requires_grad]
        self.device = self.params[0].device if self.params else torch.device("cpu")
        if self.size > 1:
            with torch.no_grad():  # every process starts from process 0's weights
                for p in self.params:
                    dist.broadcast(p.data, src=0)

    def shard(self, batch):
        """This process's slice (along the first dimension) of every tensor in ``batch``."""
        import torch

        if self.size == 1:
            return batch
        parts = batch if isinstance(batch, (tuple, list)) else (batch,)
        out = []
        for t in parts:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"batch must hold tensors to split across processes, got {type(t).__name__}")
            if len(t) % self.size:
                raise ValueError(f"batch size {len(t)} must divide evenly over {self.size} processes")
            out.append(t.tensor_split(self.size)[self.rank])
        return type(batch)(out) if isinstance(batch, (tuple, list)) else out[0]

    def average_gradients(self) -> None:
        import torch
        import torch.distributed as dist

        if self.size == 1:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce for all parameters
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, value: float) -> float:
        import torch
        import torch.distributed as dist

        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item() / self.size)

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any (e.g. one ran out of its time budget)."""
        import torch
        import torch.distributed as dist

        if self.size == 1:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)
