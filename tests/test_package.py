"""The package as a learner gets it: a wheel installed into a fresh environment outside the checkout.

The wheel is built from a copy of the sources, installed with ``pip --no-index`` into a new
virtual environment whose only other packages are the locked ones of ``.venv`` (reached through a
path entry, so pip must find every declared dependency range satisfied by the tested lock), and
a chapter notebook copied to an empty folder runs there offline at smoke.  Nothing may be written
inside site-packages: data and checkpoints go to the user's cache folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "book/03_attention.ipynb"  # a quick chapter at smoke

RUN_NOTEBOOK = """
import sys
import nbformat
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
print("cells run:", sum(c.cell_type == "code" for c in nb.cells), "errors:", len(errors))
nbformat.write(nb, sys.argv[1])
"""


CHECK_REQUIREMENTS = """
from importlib.metadata import requires, version, PackageNotFoundError
from packaging.requirements import Requirement
unmet = []
for line in requires("genai_lab"):
    req = Requirement(line)
    # extras (rag, book) included: the lock must satisfy every range the package declares
    try:
        have = version(req.name)
    except PackageNotFoundError:
        unmet.append(f"{req} (missing)")
        continue
    if not req.specifier.contains(have, prereleases=True):
        unmet.append(f"{req} (have {have})")
print("; ".join(unmet))
"""


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _run(cmd, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{cmd[:4]} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_the_wheel_installs_outside_the_checkout_and_runs_a_chapter(tmp_path):
    shared = Path(os.environ.get("GENAI_LAB_SHARED", ROOT.parent / "shared"))
    if not (shared / "data").is_dir():
        pytest.skip("no offline data mirror on this machine (../shared/data)")
    # 1. the wheel, built from a copy of the sources (nothing is written into the checkout)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    shutil.copytree(ROOT / "genai_lab", src / "genai_lab", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp_path / "dist"), str(src)])
    wheel = next((tmp_path / "dist").glob("genai_lab-*.whl"))

    # 2. a fresh environment that sees the locked packages, but not the checkout's genai_lab
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip())
    (site / "locked-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "--no-index", "--no-deps", "--force-reinstall", "-q", str(wheel)])
    # every declared dependency range is met by the tested lock (what pip would resolve against)
    unmet = _run([str(python), "-c", CHECK_REQUIREMENTS], cwd=tmp_path).stdout.strip()
    assert unmet == "", f"declared dependencies the lock does not satisfy: {unmet}"
    where = _run([str(python), "-c", "import genai_lab; print(genai_lab.__file__)"], cwd=tmp_path).stdout
    assert where.strip().startswith(str(site)), where
    before = _files(site / "genai_lab")

    # 3. a chapter notebook alone in an empty folder, offline, at smoke, with a fresh home
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / NOTEBOOK, work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENAI_LAB_", "XDG_", "PYTHONPATH"))}
    env.update(HOME=str(tmp_path / "home"), GENAI_LAB_PROFILE="smoke", GENAI_LAB_SHARED=str(shared),
               GENAI_LAB_PROGRESS="0", HF_HUB_OFFLINE="1", GENAI_LAB_OFFLINE="1", MPLBACKEND="Agg",
               GENAI_LAB_THREADS=os.environ.get("GENAI_LAB_THREADS", "1"))
    done = _run([str(python), "-c", RUN_NOTEBOOK, str(work / Path(NOTEBOOK).name), str(work)], cwd=work, env=env)
    assert "errors: 0" in done.stdout, done.stdout

    # 4. nothing written inside site-packages; the cache went to the user's folder
    assert _files(site / "genai_lab") == before
    where = _run([str(python), "-c", "from genai_lab.config import cache_dir; print(cache_dir())"], cwd=work,
                 env=env).stdout.strip()
    assert where == str(tmp_path / "home" / ".cache" / "genai-lab"), where  # the user's cache folder
    assert sorted(p.name for p in work.iterdir()) == [Path(NOTEBOOK).name]
