"""Where learners run the book: one repository address, the set-up cell, launch links, the cache."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from genai_lab import config, launch

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_is_named_in_one_place():
    site = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert site["repository"]["url"] == launch.REPOSITORY_URL
    assert site["repository"]["branch"] == launch.BRANCH
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["urls"]["Homepage"] == launch.REPOSITORY_URL


def test_every_notebook_starts_with_the_setup_cell():
    assert launch.setup_cell_problems(ROOT) == [], "run: python -m genai_lab setup-cell --write"


def test_the_setup_cell_installs_only_when_the_import_fails():
    from IPython.core.inputtransformer2 import TransformerManager

    source = launch.setup_cell_source(("rag",))
    python = TransformerManager().transform_cell(source)
    compile(python, "<setup cell>", "exec")  # the %pip line inside `except` becomes a call
    assert "run_line_magic('pip'" in python
    assert "genai-lab[rag] @ git+https://github.com/" in python
    # in a checkout the import succeeds, so the install never runs: execute the transformed cell
    # with a get_ipython whose pip magic would fail the test if it were called
    calls = []
    shell = types.SimpleNamespace(run_line_magic=lambda *a: calls.append(a))
    namespace = {"get_ipython": lambda: shell}
    import genai_lab

    setup_calls = []
    original = genai_lab.setup
    genai_lab.setup = lambda *a, **k: setup_calls.append(1) or "cfg"
    try:
        exec(python, namespace)
    finally:
        genai_lab.setup = original
    assert calls == [] and setup_calls == [1] and namespace["cfg"] == "cfg"


def test_the_setup_cell_installs_when_the_package_is_missing(monkeypatch):
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(launch.setup_cell_source())
    calls = []
    real_import = __builtins__["__import__"] if isinstance(__builtins__, dict) else __builtins__.__import__
    state = {"installed": False}

    def fake_import(name, *args, **kwargs):
        if name == "genai_lab" and not state["installed"]:
            raise ModuleNotFoundError("No module named 'genai_lab'", name="genai_lab")
        return real_import(name, *args, **kwargs)

    def pip(magic, line):
        calls.append((magic, line))
        state["installed"] = True

    import builtins
    import genai_lab

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(genai_lab, "setup", lambda *a, **k: "cfg")
    namespace = {"get_ipython": lambda: types.SimpleNamespace(run_line_magic=pip)}
    exec(python, namespace)
    assert len(calls) == 1 and calls[0][0] == "pip" and launch.pip_requirement() in calls[0][1]
    assert namespace["cfg"] == "cfg"


def test_rag_notebooks_install_the_rag_extra():
    assert launch.notebook_extras("book/09_rag.ipynb") == ("rag",)
    assert launch.notebook_extras("labs/09_rag_lab.ipynb") == ("rag",)
    assert launch.notebook_extras("book/01_cnn.ipynb") == ()
    with pytest.raises(ValueError, match="extras"):
        launch.pip_requirement(("rag; rm -rf /",))


def test_restart_needed_names_a_package_replaced_under_a_running_kernel(monkeypatch, capsys):
    import importlib.metadata

    installed = importlib.metadata.version("numpy")
    monkeypatch.setitem(sys.modules, "fake_numpy", types.SimpleNamespace(__version__="0.0.1"))
    monkeypatch.setattr(launch, "_WATCHED", {"fake_numpy": "numpy", "not_loaded": "numpy"})
    assert launch.restart_needed() == [("fake_numpy", "0.0.1", installed)]
    assert launch.warn_if_restart_needed() is True
    out = capsys.readouterr().out
    assert "Restart the runtime" in out and f"fake_numpy 0.0.1 → {installed}" in out
    monkeypatch.setattr(launch, "_WATCHED", {"numpy": "numpy"})
    assert launch.restart_needed() == []  # this process imported the numpy that is installed


def test_launch_links_open_the_repository_notebook():
    links = launch.launch_links("labs/01_cnn_lab.ipynb")
    assert links["Colab"] == ("https://colab.research.google.com/github/"
                              f"{launch.REPOSITORY}/blob/{launch.BRANCH}/labs/01_cnn_lab.ipynb")
    assert links["Kaggle"].endswith(f"src={launch.REPOSITORY_URL}/blob/{launch.BRANCH}/labs/01_cnn_lab.ipynb")
    assert "studiolab.sagemaker.aws/import/github/" in links["SageMaker Studio Lab"]
    for bad in ("/abs/01.ipynb", "book/notes.md"):
        with pytest.raises(ValueError, match="path"):
            launch.launch_links(bad)


def test_launch_links_go_into_the_build_copies_once(tmp_path):
    import shutil

    (tmp_path / "labs").mkdir()
    shutil.copy(ROOT / "labs" / "01_cnn_lab.ipynb", tmp_path / "labs")
    assert launch.add_launch_links(tmp_path) == 1
    assert launch.add_launch_links(tmp_path) == 0  # idempotent
    cells = json.loads((tmp_path / "labs" / "01_cnn_lab.ipynb").read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# Lab")
    assert "colab.research.google.com" in "".join(cells[1]["source"])
    with pytest.raises(ValueError, match="stage"):
        launch.add_launch_links(tmp_path / "missing")


def test_an_installed_package_caches_in_the_user_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("GENAI_LAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(config, "in_checkout", lambda: False)
    path = config.cache_dir()
    assert path == tmp_path / "xdg" / "genai-lab" and path.is_dir()
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "mine"))
    assert config.cache_dir() == tmp_path / "mine"


def test_a_checkout_caches_in_data_cache(monkeypatch):
    monkeypatch.delenv("GENAI_LAB_DATA", raising=False)
    assert config.in_checkout()
    assert config.cache_dir() == ROOT / "data" / "cache"


def test_a_device_that_cannot_be_used_is_named(monkeypatch):
    monkeypatch.setenv("GENAI_LAB_DEVICE", "tpu9")
    with pytest.raises(ValueError, match="GENAI_LAB_DEVICE='tpu9'"):
        config.pick_device()
    monkeypatch.delenv("GENAI_LAB_DEVICE")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'.*no CUDA"):
            config.pick_device("cuda")
    assert config.pick_device("cpu").type == "cpu"


def test_mps_falls_back_to_the_cpu_for_missing_operations():
    import os

    import genai_lab  # noqa: F401  (the import sets it)

    assert os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") == "1"


def test_writing_the_setup_cell_keeps_other_lines_of_the_old_cell(tmp_path):
    import nbformat

    (tmp_path / "labs").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Lab"),
                                         nbformat.v4.new_code_cell("import genai_lab as gl\ncfg = gl.setup()\n"
                                                                   "from genai_lab.checks import intro as checks")])
    nbformat.write(nb, tmp_path / "labs" / "00_x_lab.ipynb")
    assert launch.write_setup_cells(tmp_path) == ["labs/00_x_lab.ipynb"]
    cells = nbformat.read(tmp_path / "labs" / "00_x_lab.ipynb", as_version=4).cells
    assert cells[1].source == launch.setup_cell_source()
    assert cells[2].source == "from genai_lab.checks import intro as checks"
    assert launch.write_setup_cells(tmp_path) == [] and launch.setup_cell_problems(tmp_path) == []


def test_every_notebook_cell_has_an_id():
    """nbformat 4.5 notebooks need a cell id on every cell (a missing one is a warning today and
    will be an error in nbformat's next versions); cells added by scripts must get one."""
    import json

    from genai_lab.config import REPO_ROOT

    missing = []
    for path in sorted([*REPO_ROOT.glob("book/*.ipynb"), *REPO_ROOT.glob("labs/*.ipynb")]):
        nb = json.loads(path.read_text(encoding="utf-8"))
        if (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5):
            missing += [f"{path.name} cell {i}" for i, cell in enumerate(nb["cells"]) if "id" not in cell]
    assert not missing, missing
