"""Recorded results: the committed figures of each profile, with where and when they were measured.

``python -m genai_lab bench --profile cpu --record`` runs the chapters' reference experiments and
merges their rows into ``genai_lab/results/cpu.json`` (likewise ``gpu``).  The file is committed,
so the results page and the claims of a smaller run can quote the figures of a larger one::

    {"profile": "cpu",
     "chapters": {"rnn": {"provenance": {"date": "2026-12-02T03:10:00+00:00", "commit": "0ad3765",
                                         "machine": "AMD EPYC …, 2 cores", "threads": 2, …},
                          "seconds": 151.2,
                          "metrics": [{"metric": "lstm_val_nats_per_char", "value": 1.513, …}]}}}

Provenance is recorded per chapter, since chapters are recorded at different times and places.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path

from .config import PROFILES, REPO_ROOT

#: where the committed results live (inside the package, so an installed package has them too)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: profiles that are recorded (smoke runs in CI on every push; its figures are not committed)
RECORDED_PROFILES = ("cpu", "gpu")


def results_file(profile: str, folder: str | Path | None = None) -> Path:
    """Path of the recorded results of ``profile`` (``cpu`` or ``gpu``)."""
    if profile not in RECORDED_PROFILES:
        raise ValueError(f"profile must be one of {RECORDED_PROFILES}, got {profile!r}")
    return Path(folder or RESULTS_DIR) / f"{profile}.json"


def load(profile: str, folder: str | Path | None = None) -> dict:
    """The recorded results of ``profile``: ``{"profile", "chapters": {name: {...}}}`` (empty if none)."""
    path = results_file(profile, folder)
    if not path.is_file():
        return {"profile": profile, "chapters": {}}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("profile") != profile or not isinstance(data.get("chapters"), dict):
        raise ValueError(f"{path} is not a results file of profile {profile!r}")
    return data


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    if not (REPO_ROOT / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+changes" if dirty else "")


def provenance(cfg) -> dict:
    """Where, when and how a measurement runs: date, machine, commit, threads, versions, load."""
    import torch

    machine = f"{_cpu_name()}, {os.cpu_count()} cores"
    if cfg.on_gpu:
        machine = f"{torch.cuda.get_device_name(0)}; " + machine
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": machine,
        "device": str(cfg.device),
        "threads": torch.get_num_threads(),
        "commit": _git_commit(),
        "torch": torch.__version__,
        "load_before": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def record(profile: str, chapter: str, rows: list[dict], prov: dict, seconds: float,
           folder: str | Path | None = None) -> Path:
    """Merge one chapter's bench ``rows`` into the recorded results of ``profile``; return the file."""
    if not rows:
        raise ValueError("rows must hold at least one metric")
    data = load(profile, folder)
    prov = dict(prov)
    if hasattr(os, "getloadavg"):
        prov["load_after"] = round(os.getloadavg()[0], 2)
    data["chapters"][chapter] = {
        "provenance": prov,
        "seconds": round(float(seconds), 1),
        "metrics": [{k: r[k] for k in ("metric", "value", "unit", "higher_is_better", "bar", "passed")}
                    for r in rows],
    }
    data["chapters"] = dict(sorted(data["chapters"].items()))
    path = results_file(profile, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def lookup(profile: str, key: str, folder: str | Path | None = None) -> tuple[float, dict] | None:
    """The recorded value of ``key`` = ``"chapter/metric"`` and its chapter's provenance, or None."""
    if not isinstance(key, str) or key.count("/") != 1:
        raise ValueError(f"key must look like 'chapter/metric', got {key!r}")
    chapter, metric = key.split("/")
    entry = load(profile, folder)["chapters"].get(chapter)
    if entry is None:
        return None
    for row in entry["metrics"]:
        if row["metric"] == metric:
            return row["value"], entry["provenance"]
    return None


def describe(prov: dict) -> str:
    """One line of provenance: ``2026-12-02, AMD EPYC …, 2 threads, commit 0ad3765``."""
    parts = [str(prov.get("date", "?"))[:10], str(prov.get("machine", "?")),
             f"{prov.get('threads', '?')} threads", f"commit {prov.get('commit') or '?'}"]
    return ", ".join(parts)


def recorded_values(profile: str, names: dict[str, str], folder: str | Path | None = None
                    ) -> tuple[dict[str, float], str] | None:
    """``{name: recorded value}`` for ``names`` = ``{name: "chapter/metric"}`` and one provenance line.

    ``None`` when any of them is not recorded at ``profile``.
    """
    if profile not in RECORDED_PROFILES:
        return None
    values, provs = {}, []
    for name, key in names.items():
        found = lookup(profile, key, folder)
        if found is None:
            return None
        values[name], prov = found
        if describe(prov) not in provs:
            provs.append(describe(prov))
    return values, "; ".join(provs)


def table(profile: str, chapters: list[str] | None = None, folder: str | Path | None = None) -> list[dict]:
    """Rows for the results page: one per metric, plus a "not yet recorded" row per missing chapter."""
    data = load(profile, folder)["chapters"]
    names = chapters if chapters is not None else sorted(data)
    rows = []
    for name in names:
        entry = data.get(name)
        if entry is None:
            rows.append({"chapter": name, "metric": "not yet recorded", "value": None})
            continue
        for m in entry["metrics"]:
            rows.append({"chapter": name, **m, "seconds": entry["seconds"],
                         "recorded": describe(entry["provenance"])})
    return rows


__all__ = ["RESULTS_DIR", "RECORDED_PROFILES", "PROFILES", "results_file", "load", "provenance",
           "record", "lookup", "describe", "recorded_values", "table"]
