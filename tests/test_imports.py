"""The package's modules form layers: no module imports one that imports it back (STYLE.md).

Imports inside functions count too: a lazy import only hides a circle.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "genai_lab"


def _module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of genai_lab it imports}``, from the source (nothing is imported)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                deps.add(target)
                deps.update(f"{target}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genai_lab"):
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name.startswith("genai_lab"))
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    packages = {name for name in graph if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").is_file()}
    circles = set()

    def visit(node, path):
        for dep in graph[node]:
            if dep in packages:  # a package's __init__ re-exports its modules: not a layer of its own
                continue
            if dep in path:
                circles.add(" -> ".join(path[path.index(dep):] + [dep]))
            elif len(path) < 12:
                visit(dep, path + [dep])

    for name in graph:
        if name not in packages:
            visit(name, [name])
    assert not circles, sorted(circles)


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "genai_lab.transformer" in graph["genai_lab.attention_bench"]
    assert "genai_lab.gan" in graph["genai_lab.clip"]          # imported inside a function
