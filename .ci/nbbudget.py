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


def notebooks(group: str, data: dict | None = None) -> list[str]:
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    data = data or load()
    every = sorted(str(p.relative_to(ROOT)) for folder in ("book", "labs") for p in (ROOT / folder).glob("*.ipynb"))
    return [k for k in every if group_of(k, data) == group]


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


def main(argv: list[str]) -> int:
    data = load()
    stage = None
    if "--stage" in argv:  # stage paths, leaving out the notebooks nbcache.py restored there
        i = argv.index("--stage")
        stage, argv = Path(argv[i + 1]), argv[:i] + argv[i + 2:]
    if argv[:1] and argv[0] in GROUPS:
        keys = notebooks(argv[0], data)
        if stage is not None:
            done = set((stage / ".restored").read_text().split()) if (stage / ".restored").is_file() else set()
            keys = [str(stage / k) for k in keys if str(stage / k) not in done]
        print("\n".join(keys))
    elif argv[:1] == ["total"] and len(argv) == 2 and argv[1] in PROFILES:
        keys = [k for g in GROUPS for k in notebooks(g, data)]
        print(sum(budget(k, argv[1], data) for k in keys))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
