"""Where learners run the book: the repository's address, the notebooks' set-up cell, launch links.

The repository is named once, here (:data:`REPOSITORY`, :data:`BRANCH`); ``_config.yml``'s
``repository.url``, ``pyproject.toml``'s ``Homepage``, every notebook's first cell and the
Colab / Kaggle / SageMaker Studio Lab links on each page are derived from it, and
``tests/test_launch.py`` checks that they agree.

Every notebook's first code cell is :func:`setup_cell_source`: in a checkout (and in CI)
``import genai_lab`` succeeds and the cell only calls ``gl.setup()``; in Colab, Kaggle or a bare
JupyterLab the import fails, so the cell installs the package from the repository first (its
dependencies are ranges, so a runtime's own torch/CUDA build is kept), and ``gl.setup()`` then
says plainly if the runtime must be restarted (:func:`restart_needed`).

``python -m genai_lab setup-cell --check`` lists notebooks whose first cell differs;
``--write`` rewrites them.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from urllib.parse import quote

#: the checkout this module sits in (config.REPO_ROOT too; not imported from there: config imports this module)
REPO_ROOT = Path(__file__).resolve().parents[1]

#: ``owner/name`` of the repository on GitHub: the one place it is configured
REPOSITORY = "genai-lab/genai-lab"
BRANCH = "main"
REPOSITORY_URL = f"https://github.com/{REPOSITORY}"

#: packages a runtime may have imported before the install replaced them: module → distribution
_WATCHED = {"numpy": "numpy", "torch": "torch", "transformers": "transformers", "diffusers": "diffusers",
            "tokenizers": "tokenizers", "huggingface_hub": "huggingface-hub", "matplotlib": "matplotlib",
            "peft": "peft", "accelerate": "accelerate", "sentence_transformers": "sentence-transformers",
            "PIL": "pillow", "sklearn": "scikit-learn", "safetensors": "safetensors", "ipywidgets": "ipywidgets"}


def pip_requirement(extras: tuple[str, ...] = ()) -> str:
    """The pip requirement that installs the package from the repository (a direct reference)."""
    bad = [e for e in extras if not isinstance(e, str) or not e.isidentifier()]
    if bad:
        raise ValueError(f"extras must be names like 'rag', got {bad!r}")
    tail = f"[{','.join(extras)}]" if extras else ""
    return f"genai-lab{tail} @ git+{REPOSITORY_URL}@{BRANCH}"


def setup_cell_source(extras: tuple[str, ...] = ()) -> str:
    """The first code cell of every book and lab notebook."""
    return (
        "# Makes any kernel ready: in Colab, Kaggle or a bare JupyterLab this installs genai-lab once\n"
        "# (a runtime's own torch is kept); in a clone of the repository it only sets up.\n"
        "try:\n"
        "    import genai_lab as gl\n"
        "except ModuleNotFoundError:\n"
        f"    %pip install --quiet \"{pip_requirement(extras)}\"\n"
        "    import genai_lab as gl\n"
        "cfg = gl.setup()"
    )


def notebook_extras(path: str | Path) -> tuple[str, ...]:
    """Extras a notebook's set-up cell installs: the RAG chapter and lab need the ``rag`` extra, the
    serving chapter (which rebuilds the RAG with LangChain) ``rag`` and ``serve``."""
    name = Path(path).name
    if name.startswith("10_serving"):
        return ("rag", "serve")
    return ("rag",) if name.startswith("09_rag") else ()


# --------------------------------------------------------------------------- restart check
def restart_needed() -> list[tuple[str, str, str]]:
    """Packages whose imported version differs from the one now installed.

    Returns ``[(module, imported version, installed version), ...]``: non-empty when an install in
    this kernel replaced a package the kernel had already imported (the runtime must restart).
    """
    stale = []
    for module, dist in _WATCHED.items():
        loaded = sys.modules.get(module)
        imported = getattr(loaded, "__version__", None) if loaded is not None else None
        if not isinstance(imported, str):
            continue
        try:
            installed = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != imported:
            stale.append((module, imported, installed))
    return stale


def warn_if_restart_needed() -> bool:
    """Print one plain instruction when :func:`restart_needed` finds replaced packages."""
    stale = restart_needed()
    if stale:
        listed = ", ".join(f"{m} {old} → {new}" for m, old, new in stale)
        print(f"The install replaced packages this kernel had already imported ({listed}). Restart the "
              "runtime (Colab: Runtime → Restart session; Jupyter: Kernel → Restart) and run this cell again.")
    return bool(stale)


# --------------------------------------------------------------------------- launch links
def launch_links(path: str | Path) -> dict[str, str]:
    """Colab, Kaggle and SageMaker Studio Lab links that open ``path`` (relative to the repository)."""
    rel = Path(path).as_posix()
    if not isinstance(path, (str, Path)) or Path(path).is_absolute() or not rel.endswith(".ipynb"):
        raise ValueError(f"path must be a notebook path relative to the repository, got {path!r}")
    blob = f"{REPOSITORY}/blob/{BRANCH}/{quote(rel)}"
    return {"Colab": f"https://colab.research.google.com/github/{blob}",
            "Kaggle": f"https://kaggle.com/kernels/welcome?src={REPOSITORY_URL}/blob/{BRANCH}/{quote(rel)}",
            "SageMaker Studio Lab": f"https://studiolab.sagemaker.aws/import/github/{blob}"}


def launch_markdown(path: str | Path) -> str:
    """One markdown line of launch links for a page (plain links: the site loads nothing from elsewhere)."""
    links = " · ".join(f"[{name}]({url})" for name, url in launch_links(path).items())
    return f"Open this notebook in {links}."


LAUNCH_TAG = "launch-links"


def add_launch_links(stage: str | Path) -> int:
    """Insert a launch-links cell after the title of every book and lab notebook under ``stage``.

    Used on the build's copies (``_stage``), never on the repository's notebooks.  Returns the
    number of notebooks changed.
    """
    import nbformat

    stage = Path(stage)
    if not stage.is_dir():
        raise ValueError(f"stage must be a folder holding book/ and labs/, got {str(stage)!r}")
    changed = 0
    for nb_path in _notebooks(stage):
        nb = nbformat.read(nb_path, as_version=4)
        if not nb.cells or any(LAUNCH_TAG in c.metadata.get("tags", []) for c in nb.cells):
            continue
        cell = nbformat.v4.new_markdown_cell(launch_markdown(nb_path.relative_to(stage)),
                                             metadata={"tags": [LAUNCH_TAG]})
        nb.cells.insert(1 if nb.cells[0].cell_type == "markdown" else 0, cell)
        nbformat.write(nb, nb_path)
        changed += 1
    return changed


# --------------------------------------------------------------------------- the set-up cells
def _notebooks(root: Path) -> list[Path]:
    return sorted([*root.glob("book/*.ipynb"), *root.glob("labs/*.ipynb")])


def _first_code_cell(nb: dict) -> dict | None:
    return next((c for c in nb.get("cells", []) if c.get("cell_type") == "code"), None)


def setup_cell_problems(root: str | Path | None = None) -> list[str]:
    """Notebooks (relative paths) whose first code cell is not :func:`setup_cell_source`."""
    root = Path(root) if root is not None else REPO_ROOT
    problems = []
    for path in _notebooks(root):
        cell = _first_code_cell(json.loads(path.read_text(encoding="utf-8")))
        source = "".join(cell["source"]) if cell else ""
        if source != setup_cell_source(notebook_extras(path)):
            problems.append(path.relative_to(root).as_posix())
    return problems


def write_setup_cells(root: str | Path | None = None) -> list[str]:
    """Rewrite the first code cell of every notebook that differs; returns the paths changed.

    A notebook whose first code cell does not start with the import of ``genai_lab`` (the old
    two-line cell or an earlier version of this one) is left alone and reported by the check.
    """
    root = Path(root) if root is not None else REPO_ROOT
    changed = []
    import nbformat

    for path in _notebooks(root):
        nb = nbformat.read(path, as_version=4)
        cell = _first_code_cell(nb)
        want = setup_cell_source(notebook_extras(path))
        if cell is None or cell.source == want or "import genai_lab as gl" not in cell.source:
            continue
        # lines other than the two set-up lines (e.g. a lab's checks import) move to a cell of their own
        rest = [line for line in cell.source.splitlines()
                if line.strip() not in ("import genai_lab as gl", "cfg = gl.setup()")]
        if rest and not cell.source.lstrip().startswith("#"):
            position = nb.cells.index(cell)
            nb.cells.insert(position + 1, nbformat.v4.new_code_cell("\n".join(rest)))
        cell.source = want
        nbformat.write(nb, path)
        changed.append(path.relative_to(root).as_posix())
    return changed


# --------------------------------------------------------------------------- command line
def cmd_setup_cell(args) -> int:
    if args.write:
        for path in write_setup_cells():
            print(f"rewrote the set-up cell of {path}")
    problems = setup_cell_problems()
    for path in problems:
        print(f"{path}: the first code cell is not the set-up cell (python -m genai_lab setup-cell --write)")
    return 1 if problems else 0


def cmd_launch_links(args) -> int:
    print(f"launch links added to {add_launch_links(args.stage)} notebooks in {args.stage}")
    return 0


def add_cli(subparsers) -> None:
    """Add ``setup-cell [--check|--write]`` and ``launch-links STAGE`` to ``python -m genai_lab``."""
    p = subparsers.add_parser("setup-cell", help="check or rewrite every notebook's first cell (installs the "
                                                 "package where it is missing, then gl.setup())")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="list notebooks that differ, exit 1 if any (default)")
    mode.add_argument("--write", action="store_true", help="rewrite them")
    p.set_defaults(func=cmd_setup_cell)
    p = subparsers.add_parser("launch-links", help="add Colab / Kaggle / Studio Lab links to the build's copies")
    p.add_argument("stage", help="the build's folder of notebook copies (_stage)")
    p.set_defaults(func=cmd_launch_links)
