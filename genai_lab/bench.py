"""Benchmarks: each chapter's reference experiment, its quality metrics and its wall time.

A chapter registers one function that runs its reference experiment at the current profile::

    from genai_lab.bench import Metric, register

    @register("cnn", "small CNN vs MLP on digits / Fashion-MNIST")
    def bench_cnn(cfg):
        ...
        return [Metric("cnn_test_accuracy", acc, higher_is_better=True,
                       bar=cfg.pick(smoke=0.97, cpu=0.91, gpu=0.91))]

``python -m genai_lab bench`` discovers every registered function (by importing the modules of
``genai_lab``), runs them, prints a table and stores the rows in ``<cache>/bench/<profile>.json``,
which the book's results page shows.  ``bar`` is the issue's threshold for this profile (or
``None``); ``passed`` compares the value with it.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import LabConfig, cache_dir, setup


@dataclass
class Metric:
    """One measured number. ``bar``: the threshold this profile must clear, or ``None``."""

    name: str
    value: float
    higher_is_better: bool = True
    bar: float | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("name must be a non-empty str")
        self.value = float(self.value)
        if self.bar is not None:
            self.bar = float(self.bar)

    @property
    def passed(self) -> bool | None:
        if self.bar is None:
            return None
        return self.value >= self.bar if self.higher_is_better else self.value <= self.bar


@dataclass
class BenchEntry:
    chapter: str
    description: str
    fn: Callable[[LabConfig], list[Metric]]


BENCHES: dict[str, BenchEntry] = {}


def register(chapter: str, description: str = ""):
    """Decorator: register ``fn(cfg) -> list[Metric]`` as the reference experiment of ``chapter``."""
    if not chapter or not isinstance(chapter, str):
        raise ValueError("chapter must be a non-empty str")

    def wrap(fn):
        BENCHES[chapter] = BenchEntry(chapter, description or (fn.__doc__ or "").strip().split("\n")[0], fn)
        return fn

    return wrap


def discover() -> dict[str, BenchEntry]:
    """Import every module of ``genai_lab`` so that their ``@register`` calls run."""
    import genai_lab

    skip = {"genai_lab.__main__", "genai_lab.cli"}
    for mod in pkgutil.walk_packages(genai_lab.__path__, prefix="genai_lab."):
        if mod.name not in skip and ".tests" not in mod.name:
            importlib.import_module(mod.name)
    return BENCHES


def results_path(profile: str) -> Path:
    return cache_dir() / "bench" / f"{profile}.json"


def load_results(profile: str) -> list[dict]:
    """Rows stored by earlier bench runs at ``profile`` (empty if none)."""
    path = results_path(profile)
    return json.loads(path.read_text()) if path.is_file() else []


def _store(profile: str, rows: list[dict]) -> None:
    done = {r["chapter"] for r in rows}
    kept = [r for r in load_results(profile) if r["chapter"] not in done]
    path = results_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept + rows, indent=1))


def run_chapter(chapter: str, cfg: LabConfig, *, store: bool = True, record: bool = False) -> list[dict]:
    """Run one chapter's reference experiment and return its rows (one per metric).

    With ``store`` the rows replace that chapter's earlier rows in ``<cache>/bench/<profile>.json``.
    With ``record`` they also replace the chapter's entry in the committed results of the profile
    (``genai_lab/results/<profile>.json``, see :mod:`genai_lab.results`), with their provenance.
    """
    entries = discover()
    if chapter not in entries:
        raise ValueError(f"chapter must be one of {sorted(entries)}, got {chapter!r}")
    if record:
        from . import results

        if cfg.profile not in results.RECORDED_PROFILES:
            raise ValueError(f"record: only the {results.RECORDED_PROFILES} profiles are recorded, "
                             f"not {cfg.profile!r}")
        prov = results.provenance(cfg)
    start = time.perf_counter()
    metrics = entries[chapter].fn(cfg)
    seconds = time.perf_counter() - start
    if not metrics or not all(isinstance(m, Metric) for m in metrics):
        raise TypeError(f"bench {chapter!r} must return a non-empty list of Metric")
    rows = [{"chapter": chapter, "metric": m.name, "value": m.value, "unit": m.unit,
             "higher_is_better": m.higher_is_better, "bar": m.bar, "passed": m.passed,
             "seconds": round(seconds, 2), "profile": cfg.profile, "device": str(cfg.device)}
            for m in metrics]
    if store:
        _store(cfg.profile, rows)
    if record:
        results.record(cfg.profile, chapter, rows, prov, seconds)
    return rows


def run(chapters: list[str] | None = None, cfg: LabConfig | None = None, *,
        store: bool = True, record: bool = False) -> list[dict]:
    """Run the given chapters (all registered ones by default) and return the rows."""
    cfg = cfg or setup(verbose=False)
    entries = discover()
    names = list(chapters) if chapters else sorted(entries)
    rows: list[dict] = []
    for name in names:
        rows += run_chapter(name, cfg, store=store, record=record)
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table of bench rows."""
    head = ("chapter", "metric", "value", "bar", "passed", "seconds")
    lines = [[r["chapter"], r["metric"], f"{r['value']:.4g}{(' ' + r['unit']) if r.get('unit') else ''}",
              "-" if r["bar"] is None else ("≥ " if r["higher_is_better"] else "≤ ") + f"{r['bar']:g}",
              {True: "yes", False: "NO", None: "-"}[r["passed"]], f"{r['seconds']:.1f}"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)] if lines else [len(h) for h in head]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] +
                     [fmt.format(*line) for line in lines])
