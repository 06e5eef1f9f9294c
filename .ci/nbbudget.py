"""pytest plugin: every notebook run by nbmake has a wall-time budget (.ci/notebooks.toml).

    pytest -p nbbudget --nb-profile cpu --nb-times _build/notebook-times-cpu.json --nbmake …

A notebook that runs longer than its budget fails with its name, its time and the budget (after
it finishes; nbmake's per-cell timeout stops a cell that hangs).  The times of every notebook
are written to ``--nb-times``, so a build reports them.  As a script:

    python .ci/nbbudget.py timing        # the notebooks that must run alone (one per line)
    python .ci/nbbudget.py late          # notebooks that reuse a model a timing notebook trains
    python .ci/nbbudget.py others        # the rest of book/ and labs/
    python .ci/nbbudget.py total cpu     # the sum of the cpu budgets
    python .ci/nbbudget.py timing --stage _stage   # their stage copies, less those reused from the cache
    python .ci/nbbudget.py others --profile cpu    # longest budget first (see ``notebooks``)
    python .ci/nbbudget.py report TIMES.json [FAILED-GROUPS]   # the times table; exit 1 if any failed
"""

from __future__ import annotations

import json
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".ci" / "notebooks.toml"
PROFILES = ("smoke", "cpu", "gpu")


def load(path: Path = CONFIG) -> dict:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    default = data.get("default", {})
    for profile in PROFILES:
        if not isinstance(default.get(profile), int):
            raise ValueError(f"{path}: [default] needs an integer {profile} budget")
    return data


def _key(path: Path) -> str:
    """``book/NN.ipynb`` / ``labs/NN.ipynb`` for a notebook anywhere (the stage copies too)."""
    return f"{path.parent.name}/{path.name}"


def budget(key: str, profile: str, data: dict | None = None) -> int:
    data = data or load()
    entry = data.get("notebook", {}).get(key, {})
    default = data.get("labs", data["default"]) if key.startswith("labs/") else data["default"]
    return int(entry.get(profile, default[profile]))


GROUPS = ("others", "timing", "late")


def group_of(key: str, data: dict | None = None) -> str:
    """``timing`` (runs alone), ``late`` (needs a model a timing notebook trains: runs after them)
    or ``others``."""
    entry = (data or load()).get("notebook", {}).get(key, {})
    if entry.get("timing") and entry.get("late"):
        raise ValueError(f"{key}: a notebook is either timing or late, not both")
    return "timing" if entry.get("timing") else "late" if entry.get("late") else "others"


def notebooks(group: str, data: dict | None = None, profile: str | None = None) -> list[str]:
    """The notebooks of ``group``; with ``profile``, the longest budget first.

    The build hands notebooks to its workers one at a time in this order (pytest-xdist with
    ``--maxschedchunk=1``), so the long ones start first and the short ones fill the gaps: a long
    notebook never runs last on one thread while the other cores sit idle.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    data = data or load()
    every = sorted(str(p.relative_to(ROOT)) for folder in ("book", "labs") for p in (ROOT / folder).glob("*.ipynb"))
    keys = [k for k in every if group_of(k, data) == group]
    if profile is not None:
        keys.sort(key=lambda k: -budget(k, profile, data))  # stable: ties keep their name order
    return keys


# ---------------------------------------------------------------------------- pytest plugin
def pytest_addoption(parser):
    parser.addoption("--nb-profile", default=None, help="profile whose budgets apply (smoke/cpu/gpu)")
    parser.addoption("--nb-times", default=None, help="JSON file to merge each notebook's wall time into")


def _profile(config) -> str:
    import os

    profile = config.getoption("--nb-profile") or os.environ.get("GENAI_LAB_PROFILE")
    if not profile:
        from genai_lab.config import default_profile

        profile = default_profile()
    if profile not in PROFILES:
        raise ValueError(f"--nb-profile must be one of {PROFILES}, got {profile!r}")
    return profile


import pytest  # noqa: E402  (only the plugin part needs pytest)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    path = Path(str(getattr(item, "path", item.fspath)))
    if call.when != "call" or path.suffix != ".ipynb":
        return
    report = outcome.get_result()
    key, profile = _key(path), _profile(item.config)
    seconds = call.stop - call.start
    limit = budget(key, profile)
    if report.passed and seconds > limit:
        report.outcome = "failed"
        report.longrepr = (f"{key} took {seconds:.0f} s, over its {profile} budget of {limit} s "
                           f"(.ci/notebooks.toml)")
    out = item.config.getoption("--nb-times")
    if out:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        # each xdist worker merges into the same file: re-read right before writing
        merged = json.loads(target.read_text()) if target.is_file() else {}
        merged[key] = {"seconds": round(seconds, 1), "budget": limit, "profile": profile,
                       "passed": report.passed, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        target.write_text(json.dumps(dict(sorted(merged.items())), indent=1) + "\n")


def report(times_path: Path, failed_groups: Path | None = None) -> int:
    """Print every notebook's time against its budget; 1 if a notebook or a group failed, else 0."""
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    failed = [k for k, t in times.items() if not t["passed"]]
    groups = failed_groups.read_text().split() if failed_groups is not None and failed_groups.is_file() else []
    print(f"{'notebook':40s} {'seconds':>8s} {'budget':>7s}")
    for key, t in sorted(times.items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"{key:40s} {t['seconds']:8.1f} {t['budget']:7d}{'  FAILED' if not t['passed'] else ''}")
    print(f"{len(times)} notebooks, {sum(t['seconds'] for t in times.values()):.0f} s of notebook time in all")
    if failed or groups:
        print(f"failed: {', '.join(failed) or 'none by time'}; groups with a failure: {', '.join(groups) or 'none'}")
        return 1
    return 0


def main(argv: list[str]) -> int:
    data = load()
    stage = None
    profile = None
    if "--stage" in argv:  # stage paths, leaving out the notebooks nbcache.py restored there
        i = argv.index("--stage")
        stage, argv = Path(argv[i + 1]), argv[:i] + argv[i + 2:]
    if "--profile" in argv:
        i = argv.index("--profile")
        profile, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    if argv[:1] and argv[0] in GROUPS:
        keys = notebooks(argv[0], data, profile)
        if stage is not None:
            done = set((stage / ".restored").read_text().split()) if (stage / ".restored").is_file() else set()
            keys = [str(stage / k) for k in keys if str(stage / k) not in done]
        print("\n".join(keys))
    elif argv[:1] == ["report"] and len(argv) in (2, 3):
        return report(Path(argv[1]), Path(argv[2]) if len(argv) == 3 else None)
    elif argv[:1] == ["total"] and len(argv) == 2 and argv[1] in PROFILES:
        keys = [k for g in GROUPS for k in notebooks(g, data)]
        print(sum(budget(k, argv[1], data) for k in keys))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
