"""Introduction chapter: the GPT scale story as data, and measured CPU/GPU matrix-multiply speed."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .bench import Metric, register


@dataclass(frozen=True)
class ModelScale:
    name: str
    year: int
    parameters: float | None  # None: not disclosed
    layers: int | None
    note: str


#: Published sizes (GPT-1: Radford et al. 2018; GPT-2: Radford et al. 2019; GPT-3: Brown et al.
#: 2020; GPT-4 and GPT-4o: OpenAI 2023/2024, size not disclosed).
GPT_SCALE = (
    ModelScale("GPT-1", 2018, 117e6, 12, "decoder-only Transformer, pretrain then fine-tune"),
    ModelScale("GPT-2", 2019, 1.5e9, 48, "larger vocabulary, LayerNorm moved, zero-shot tasks"),
    ModelScale("GPT-3", 2020, 175e9, 96, "few-shot prompting"),
    ModelScale("GPT-4", 2023, None, None, "multimodal input, RLHF; size undisclosed"),
    ModelScale("GPT-4o", 2024, None, None, "text, image and audio in one model; size undisclosed"),
)



@dataclass(frozen=True)
class ModelFamily:
    """One of today's model families: who makes it, whether its weights can be downloaded, its sizes."""

    name: str
    maker: str
    year: int
    open_weights: bool
    sizes: tuple[float, ...] | None  # parameters of the published sizes; None: not disclosed
    note: str


#: Today's families the course notes name, plus this book's SmolLM2 (sizes as published by each
#: maker: Meta's Llama 3.1 model card, Google's Gemma 2 report, Hugging Face's SmolLM2 card; OpenAI,
#: Anthropic and Google do not publish the sizes of GPT-4o, Claude and Gemini).
MODEL_FAMILIES = (
    ModelFamily("GPT-4o", "OpenAI", 2024, False, None, "API and ChatGPT only"),
    ModelFamily("Claude 3.5", "Anthropic", 2024, False, None, "API and apps only"),
    ModelFamily("Gemini 1.5", "Google", 2024, False, None, "API and apps only"),
    ModelFamily("Llama 3.1", "Meta", 2024, True, (8e9, 70e9, 405e9), "weights under Meta's community licence"),
    ModelFamily("Gemma 2", "Google", 2024, True, (2e9, 9e9, 27e9), "weights under Gemma's terms of use"),
    ModelFamily("SmolLM2", "Hugging Face", 2024, True, (135e6, 360e6, 1.7e9),
                "Apache-2.0 weights; the 135M one runs in this book"),
)


def format_model_families() -> str:
    """The :data:`MODEL_FAMILIES` table as text: one row per family, sizes as 8B / 135M."""
    rows = [f"{'family':11s} {'maker':13s} {'year':4s}  {'weights':7s}  {'sizes':20s} note"]
    for m in MODEL_FAMILIES:
        sizes = ", ".join(_parameters_label(s) for s in m.sizes) if m.sizes else "undisclosed"
        rows.append(f"{m.name:11s} {m.maker:13s} {m.year:4d}  {'open' if m.open_weights else 'closed':7s}  "
                    f"{sizes:20s} {m.note}")
    return "\n".join(rows)

def matmul_gflops(n: int, *, device=None, dtype=None, repeats: int = 3, threads: int | None = None) -> float:
    """Measured GFLOP/s of an ``(n, n) @ (n, n)`` matrix product (2·n³ FLOPs), best of ``repeats``.

    Args:
        n: matrix size (positive int).
        device: ``"cpu"``, ``"cuda"``… (default cpu).
        dtype: torch dtype (default float32).
        threads: torch CPU threads for this measurement (restored afterwards).
    """
    import torch

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    device = torch.device(device or "cpu")
    dtype = dtype or torch.float32
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(n, n, generator=g, dtype=torch.float32).to(device, dtype)
        b = torch.randn(n, n, generator=g, dtype=torch.float32).to(device, dtype)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        a @ b  # warm-up (kernel selection, caches)
        sync()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(old_threads)
    return 2 * n ** 3 / best / 1e9


def python_loop_gflops(n: int = 48) -> float:
    """GFLOP/s of the same product written as three nested Python loops (the "if"-style way)."""
    import random

    if not isinstance(n, int) or not 1 <= n <= 256:
        raise ValueError(f"n must be an int in 1..256, got {n!r}")
    rng = random.Random(0)
    a = [[rng.random() for _ in range(n)] for _ in range(n)]
    b = [[rng.random() for _ in range(n)] for _ in range(n)]
    start = time.perf_counter()
    for i in range(n):
        row = a[i]
        for j in range(n):
            s = 0.0
            for k in range(n):
                s += row[k] * b[k][j]
    return 2 * n ** 3 / (time.perf_counter() - start) / 1e9


@register("intro", "matrix multiply throughput: Python loops vs torch on CPU (and GPU)")
def bench_intro(cfg) -> list[Metric]:
    import os

    n = cfg.pick(smoke=512, cpu=1024, gpu=4096)
    metrics = [Metric("python_loop_gflops", python_loop_gflops(48), unit="GFLOP/s"),
               Metric("cpu_matmul_gflops", matmul_gflops(n, device="cpu"), unit="GFLOP/s"),
               # the introduction's claim: all cores beat one core on a 1024 x 1024 product
               Metric("cpu_matmul_gflops_1thread_n1024", matmul_gflops(1024, threads=1), unit="GFLOP/s"),
               Metric("cpu_matmul_gflops_all_threads_n1024",
                      matmul_gflops(1024, threads=os.cpu_count() or 1), unit="GFLOP/s")]
    if cfg.on_gpu:
        metrics.append(Metric("gpu_matmul_gflops", matmul_gflops(n, device=cfg.device), unit="GFLOP/s"))
    return metrics


def plot_gpt_scale(ax=None):
    """Parameters of GPT-1 → GPT-3 on a log axis (GPT-4/4o: undisclosed, marked as such)."""
    import matplotlib.pyplot as plt

    from .viz import plain_log_axis

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    known = [m for m in GPT_SCALE if m.parameters]
    ax.semilogy([m.year for m in known], [m.parameters for m in known], "o-")
    for m in known:
        ax.annotate(f"{m.name}\n{m.parameters / 1e9:g}B, {m.layers} layers", (m.year, m.parameters),
                    textcoords="offset points", xytext=(8, 4), fontsize=8, va="bottom")
    undisclosed = [m for m in GPT_SCALE if not m.parameters]
    for i, m in enumerate(undisclosed):
        ax.axvline(m.year, ls=":", color="grey")
        # staggered heights, so neighbouring years' labels do not overlap
        ax.text(m.year, known[0].parameters * 10 ** (1.2 * i), f" {m.name}\n size\n undisclosed",
                fontsize=8, va="bottom", color="grey")
    ax.set(title="GPT model size by year (published figures)", xlabel="year",
           ylabel="parameters (log scale)", xlim=(2017.5, 2025.6), ylim=(3e7, 3e12))
    plain_log_axis(ax, "y")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(_parameters_label))
    return ax


def _parameters_label(value, _pos=None) -> str:
    """Tick label for a parameter count: 100M, 1B, 10B, 1T."""
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


#: (name, what it generates, how it samples, strengths, weaknesses, chapter): the map drawn below.
GENERATIVE_FAMILIES = (
    ("GAN", "images", "one pass of a generator", "fast, sharp samples", "mode collapse, unstable training", 8),
    ("Diffusion", "images, audio, video", "removing noise over many steps", "diverse, high quality",
     "slow, compute-heavy sampling", 7),
    ("Transformer LLM", "text, code (any tokens)", "predicting one token at a time", "general, promptable",
     "hallucination, cost per token", 5),
    ("CLIP", "(nothing: it scores)", "embedding text and images together", "zero-shot matching",
     "not generative by itself", 8),
)


def plot_generative_families(ax=None):
    """A qualitative map: sampling speed vs diversity of the families that sample (measured in ch. 5–8).

    CLIP samples nothing (it scores text against images), so it has no place on this plane.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    # Qualitative positions (0..1): how fast one sample is, how varied the samples are.
    where = {"GAN": (0.95, 0.15), "Diffusion": (0.1, 0.85), "Transformer LLM": (0.4, 0.5)}
    for name, media, how, good, bad, _ in GENERATIVE_FAMILIES:
        if name not in where:
            continue
        x, y = where[name]
        ax.scatter([x], [y], s=200)
        ax.annotate(f"{name}\n{media}\n+ {good}\n− {bad}", (x, y), textcoords="offset points",
                    xytext=(10, -6), fontsize=7.5, va="top")
    ax.set(title="Generative families that sample (qualitative map)", xlabel="sampling speed →",
           ylabel="diversity of samples →", xlim=(0, 1.45), ylim=(-0.25, 1.1), xticks=[], yticks=[])
    return ax
