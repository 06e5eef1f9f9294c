"""Lab notebooks: write the learner versions (solutions replaced by stubs).

In ``labs/*.ipynb`` every cell that holds a solution carries the tag ``solution``.  The learner
version keeps each function's and class's signature and docstring and replaces the body with
``raise NotImplementedError``, so the checks report "not implemented yet" and the notebook still
runs to the end.  Any other statement in a solution cell is dropped.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from .config import REPO_ROOT

SOLUTION_TAG = "solution"
STUB = 'raise NotImplementedError("exercise: write this part")'


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
            _stub_node(lines, member, out)
        if not members and not has_doc:
            out.append(indent + "pass")
    else:
        out.append(indent + STUB)


def stub_source(source: str) -> str:
    """Replace every top-level function/class body in ``source`` by a stub; drop other code.

    >>> print(stub_source('def f(x):\\n    \"\"\"Double.\"\"\"\\n    return 2 * x\\n'))
    def f(x):
        \"\"\"Double.\"\"\"
        raise NotImplementedError("exercise: write this part")
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if out:
                out.append("")
            _stub_node(lines, node, out)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(ast.get_source_segment(source, node))
    return "\n".join(out) + "\n"


def student_notebook(nb: dict) -> dict:
    """A copy of notebook JSON ``nb`` with every ``solution`` cell stubbed and outputs cleared."""
    nb = json.loads(json.dumps(nb))
    found = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG in tags:
            found += 1
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = stub_source(src)
            cell["metadata"]["tags"] = [t for t in tags if t not in (SOLUTION_TAG, "hide-input")] + ["exercise"]
    if not found:
        raise ValueError("nb has no cell tagged 'solution'")
    return nb


def lab_notebooks(folder: str | Path | None = None) -> list[Path]:
    """All lab notebooks (``labs/*.ipynb``)."""
    folder = Path(folder) if folder else REPO_ROOT / "labs"
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def write_student_versions(outdir: str | Path, sources: list[str | Path] | None = None) -> list[Path]:
    """Write the learner version of each lab into ``outdir`` and return the written paths."""
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
        target.write_text(json.dumps(student_notebook(nb), indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        written.append(target)
    return written
