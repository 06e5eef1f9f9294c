"""Lab notebooks: the shipped learner versions, their exercises, and the solved versions.

``labs/NN_<topic>_lab.ipynb`` is what a learner opens: every exercise cell (tagged ``exercise``)
holds a stub — the signature and docstring of each function or class to write, with the body
``raise NotImplementedError("exercise: write this part")`` — so the checks report "not
implemented yet" and the notebook runs to the end.  The answers live outside the notebooks, in
``genai_lab/solutions/<topic>.py``; the exercises of ``genai_lab/checks/<topic>.py`` show them on
demand (``.hint()``, ``.solution()``).

:func:`write_solved_versions` (``python -m genai_lab labs solved OUT``) writes each lab with its
stubs replaced by the reference solutions; the test suite runs those with
``GENAI_LAB_STRICT_CHECKS=1`` (every check must pass).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

from .config import REPO_ROOT

EXERCISE_TAG = "exercise"
STUB = 'raise NotImplementedError("exercise: write this part")'


# --------------------------------------------------------------------------- stubs
def _stub_node(lines: list[str], node: ast.AST, out: list[str]) -> None:
    start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno]) - 1
    body = node.body
    has_doc = (body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
               and isinstance(body[0].value.value, str))
    header_end = body[0].lineno - 1  # lines before the first statement of the body
    out.extend(lines[start:header_end])
    indent = " " * (body[0].col_offset)
    if has_doc:
        out.extend(lines[body[0].lineno - 1:body[0].end_lineno])
    if isinstance(node, ast.ClassDef):
        members = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        for member in members:
            out.append("")
            _stub_node(lines, member, out)
        if not members and not has_doc:
            out.append(indent + "pass")
    else:
        out.append(indent + STUB)


def stub_source(source: str) -> str:
    """Replace every top-level function/class body in ``source`` by a stub; drop other code.

    Imports are kept; a class keeps its docstring and the stubs of its methods.

    >>> print(stub_source('def f(x):\\n    \"\"\"Double.\"\"\"\\n    return 2 * x\\n'), end="")
    def f(x):
        \"\"\"Double.\"\"\"
        raise NotImplementedError("exercise: write this part")
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    tree = ast.parse(source)
    lines = source.splitlines()
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if out:
                out.extend(["", ""])  # PEP 8: two blank lines around top-level definitions
            _stub_node(lines, node, out)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(ast.get_source_segment(source, node))
    return "\n".join(out) + "\n"


def solved_source(source: str, topic: str) -> str:
    """``source`` of an exercise cell with each stubbed function/class replaced by its reference.

    The reference is the definition of the same name in ``genai_lab/solutions/<topic>.py``; the
    cell's imports stay.  Raises ``ValueError`` when the cell defines a name the solutions lack.
    """
    from . import solutions

    references = solutions.definitions(topic)
    parts: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            parts.append(ast.get_source_segment(source, node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name not in references:
                raise ValueError(f"source: {node.name!r} has no reference in genai_lab/solutions/{topic}.py")
            parts.append(("\n\n" if parts else "") + references[node.name])
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- labs and topics
def lab_notebooks(folder: str | Path | None = None) -> list[Path]:
    """All lab notebooks (``labs/*.ipynb``), sorted."""
    folder = Path(folder) if folder else REPO_ROOT / "labs"
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def lab_topic(lab: str | Path) -> str:
    """The topic of a lab: ``"02_rnn"``, ``"02_rnn_lab"``, ``"labs/02_rnn_lab.ipynb"`` → ``"rnn"``."""
    from .solutions import TOPICS

    if not isinstance(lab, (str, Path)):
        raise TypeError(f"lab must be a str or Path, got {type(lab).__name__}")
    name = Path(lab).stem if str(lab).endswith(".ipynb") else Path(lab).name
    topic = re.sub(r"^\d+_", "", re.sub(r"_lab$", "", name))
    if topic not in TOPICS:
        raise ValueError(f"lab must name one of the labs ({', '.join(TOPICS)}), got {lab!r}")
    return topic


def exercises(lab: str | Path) -> list:
    """The :class:`genai_lab.checks.Exercise` objects of a lab, in the lab's order.

    >>> [e.name for e in exercises("00_intro")]
    ['matmul', 'matmul_flops', 'gflops', 'best_time']
    """
    from .checks import exercises_of

    return exercises_of(importlib.import_module(f".checks.{lab_topic(lab)}", __package__))


# --------------------------------------------------------------------------- solved versions
def _source_text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _with_exercises(nb: dict, change) -> dict:
    """A copy of notebook JSON ``nb`` with outputs cleared and ``change(cell)`` applied to every
    ``exercise`` cell; ``ValueError`` when there is none."""
    if not isinstance(nb, dict) or "cells" not in nb:
        raise TypeError("nb must be notebook JSON (a dict with 'cells')")
    nb = json.loads(json.dumps(nb))
    found = 0
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if EXERCISE_TAG in cell.get("metadata", {}).get("tags", []):
            found += 1
            change(cell)
    if not found:
        raise ValueError(f"nb has no cell tagged {EXERCISE_TAG!r}")
    return nb


def solved_notebook(nb: dict, topic: str) -> dict:
    """A copy of notebook JSON ``nb`` with every ``exercise`` cell solved and all outputs cleared."""

    def solve(cell: dict) -> None:
        cell["source"] = solved_source(_source_text(cell), topic)

    return _with_exercises(nb, solve)


def student_notebook(nb: dict) -> dict:
    """A copy of notebook JSON ``nb`` (a shipped lab) with outputs cleared, checked to hold only stubs.

    Raises ``ValueError`` when ``nb`` has no ``exercise`` cell or an exercise cell holds more than
    signatures, docstrings and imports (i.e. someone saved an answer into the lab).
    """

    def check_stub(cell: dict) -> None:
        text = _source_text(cell)
        if stub_source(text).strip() != text.strip():
            raise ValueError(f"nb: exercise cell {cell.get('id', '?')} holds code beyond the stub")

    return _with_exercises(nb, check_stub)


def _write_versions(convert, outdir: str | Path, sources: list[str | Path] | None) -> list[Path]:
    outdir = Path(outdir)
    paths = [Path(p) for p in sources] if sources else lab_notebooks()
    if not paths:
        raise ValueError("sources must name at least one lab notebook (none found in labs/)")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"sources: {p} does not exist")
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for p in paths:
        nb = json.loads(p.read_text(encoding="utf-8"))
        target = outdir / p.name
        target.write_text(json.dumps(convert(nb, p), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


def write_solved_versions(outdir: str | Path, sources: list[str | Path] | None = None) -> list[Path]:
    """Write each lab with its stubs replaced by the reference solutions into ``outdir``.

    ``sources`` are lab notebooks (default: all of ``labs/``); returns the written paths.
    """
    return _write_versions(lambda nb, path: solved_notebook(nb, lab_topic(path)), outdir, sources)


def write_student_versions(outdir: str | Path, sources: list[str | Path] | None = None) -> list[Path]:
    """Write fresh learner copies of the labs (as shipped, outputs cleared) into ``outdir``.

    The shipped labs are the learner versions; this gives a clean copy to start again from.
    """
    return _write_versions(lambda nb, path: student_notebook(nb), outdir, sources)
