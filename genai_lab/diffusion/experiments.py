"""The chapter's measured experiments (shared by the book notebook and the bench).

- :func:`quality_vs_steps` — DDPM vs DDIM sampling at several step counts, judged by the CNN;
- :func:`guidance_sweep` — samples and quality at several classifier-free guidance scales;
- :func:`bench_diffusion` — the reference experiment behind ``python -m genai_lab bench``.
"""

from __future__ import annotations

import time

import torch

from ..bench import Metric, register
from .ddpm import default_dataset, sample_class_conditional, trained_ddpm
from .quality import balanced_labels, diversity, judge_samples
from .schedule import beta_schedule, compare_closed_form


def quality_vs_steps(model, classifier, steps_list=(5, 10, 25, 50), *, schedulers=("ddpm", "ddim"),
                     per_class: int = 10, guidance_scale: float = 1.0, seed: int = 0,
                     progress: bool = True) -> list[dict]:
    """Sample ``10 · per_class`` images with each scheduler and step count; one row of scores each.

    Rows hold ``scheduler``, ``steps``, ``seconds`` and the :func:`judge_samples` numbers.
    """
    from tqdm.auto import tqdm

    from genai_lab.config import show_progress

    if not steps_list or not all(isinstance(n, int) and n >= 1 for n in steps_list):
        raise ValueError(f"steps_list must be a non-empty list of positive ints, got {steps_list!r}")
    if not schedulers or any(s not in ("ddpm", "ddim") for s in schedulers):
        raise ValueError(f"schedulers must name 'ddpm' and/or 'ddim', got {schedulers!r}")
    labels = balanced_labels(model.config.num_classes, per_class)
    rows = []
    grid = [(s, n) for s in schedulers for n in steps_list]
    for scheduler, steps in tqdm(grid, desc="quality vs steps", disable=not (progress and show_progress()), leave=False):
        start = time.perf_counter()
        images = sample_class_conditional(model, labels, steps, guidance_scale,
                                          torch.Generator().manual_seed(seed), scheduler=scheduler)
        seconds = time.perf_counter() - start
        rows.append({"scheduler": scheduler, "steps": steps, "seconds": seconds,
                     **judge_samples(classifier, images, labels)})
    return rows


def guidance_sweep(model, classifier, scales=(0.0, 1.0, 2.0, 4.0), *, steps: int = 20, per_class: int = 10,
                   scheduler: str = "ddim", seed: int = 0, progress: bool = True) -> tuple[list[dict], dict]:
    """Quality at each guidance scale; returns ``(rows, {scale: images})`` (same starting noise for all)."""
    from tqdm.auto import tqdm

    from genai_lab.config import show_progress

    if not scales or any(not isinstance(w, (int, float)) or w < 0 for w in scales):
        raise ValueError(f"scales must be a non-empty list of numbers ≥ 0, got {scales!r}")
    labels = balanced_labels(model.config.num_classes, per_class)
    rows, samples = [], {}
    for scale in tqdm(scales, desc="guidance sweep", disable=not (progress and show_progress()), leave=False):
        images = sample_class_conditional(model, labels, steps, float(scale), torch.Generator().manual_seed(seed),
                                          scheduler=scheduler)
        samples[scale] = images
        rows.append({"guidance_scale": scale, **judge_samples(classifier, images, labels)})
    return rows, samples


def bench_settings(cfg) -> dict:
    """Sampling settings of the reference experiment (the notebook reports the same ones)."""
    return dict(steps=cfg.pick(smoke=20, cpu=50, gpu=50), guidance_scale=2.0,
                per_class=cfg.pick(smoke=20, cpu=50, gpu=100))


@register("diffusion", "class-conditional DDPM (digits / Fashion-MNIST) judged by the CNN; closed-form noising")
def bench_diffusion(cfg) -> list[Metric]:
    """Train (or load) the DDPM, sample every class, and judge the samples with the CNN chapter's classifier."""
    from ..cnn import trained_classifier
    from ..data import load_images

    dataset = default_dataset(cfg)
    start, cpu_start = time.perf_counter(), time.process_time()
    classifier, _ = trained_classifier(cfg, dataset, verbose=False)
    model, meta = trained_ddpm(cfg, dataset, progress=False)
    settings = bench_settings(cfg)
    labels = balanced_labels(10, settings["per_class"])
    t0 = time.perf_counter()
    images = sample_class_conditional(model, labels, settings["steps"], settings["guidance_scale"],
                                      torch.Generator().manual_seed(cfg.seed))
    sample_seconds = time.perf_counter() - t0
    scores = judge_samples(classifier, images, labels)
    real = load_images(dataset, cfg)
    n = min(len(real.test_y), len(labels))
    real_div = diversity(real.test_x[:n], real.test_y[:n])
    closed = compare_closed_form(real.test_x[0] * 2 - 1, 300, beta_schedule("cosine"), num_samples=2000,
                                 generator=torch.Generator().manual_seed(0))
    bar = cfg.pick(smoke=0.80, cpu=None, gpu=None)
    return [
        Metric(f"{dataset}_class_agreement", scores["class_agreement"], True, bar=bar),
        Metric(f"{dataset}_mean_confidence", scores["mean_confidence"], True),
        Metric(f"{dataset}_diversity_vs_real", scores["pairwise_distance"] / real_div["pairwise_distance"], True,
               unit="ratio"),
        Metric("ddpm_train_seconds", meta["metrics"]["train_seconds"], False, unit="s"),
        Metric("ddpm_seconds_per_sample", sample_seconds / len(labels), False, unit="s"),
        Metric("closed_form_mean_error_in_std_errors", closed["max_mean_error"] / closed["mean_standard_error"],
               False),
        Metric("bench_seconds", time.perf_counter() - start, False, unit="s"),
        # CPU time of this process: on a shared machine, closer to what an idle single-thread run takes
        Metric("bench_cpu_seconds", time.process_time() - cpu_start, False, unit="s"),
    ]
