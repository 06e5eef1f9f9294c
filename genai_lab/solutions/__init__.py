"""Reference solutions of the labs, one module per lab (``genai_lab.solutions.<topic>``).

The lab notebooks hold only the stubs (signature, docstring, ``raise NotImplementedError``); the
answers live here so that a learner sees one only when asking for it
(``genai_lab.checks.<topic>.<exercise>.solution()``), and so that ``python -m genai_lab labs
solved OUT`` can write the solved notebooks the test suite runs with strict checks.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

#: lab topics, in chapter order: ``labs/NN_<topic>_lab.ipynb`` ↔ ``genai_lab/solutions/<topic>.py``
TOPICS = ("intro", "cnn", "rnn", "attention", "bert", "gpt", "lora", "diffusion", "gan_clip", "rag",
          "serving")


def _module_path(topic: str) -> Path:
    if topic not in TOPICS:
        raise ValueError(f"topic must be one of {', '.join(TOPICS)}, got {topic!r}")
    return Path(__file__).with_name(f"{topic}.py")


def module_source(topic: str) -> str:
    """The text of ``genai_lab/solutions/<topic>.py``."""
    return _module_path(topic).read_text(encoding="utf-8")


def definitions(topic: str) -> dict[str, str]:
    """``{name: source}`` of every top-level function and class of the solutions of ``topic``.

    The source runs from the first decorator to the end of the body, exactly as written in
    ``genai_lab/solutions/<topic>.py``.
    """
    text = module_source(topic)
    lines = text.splitlines()
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            out[node.name] = "\n".join(lines[start - 1:node.end_lineno])
    return out


def source(topic: str, names: tuple[str, ...] | list[str]) -> str:
    """The reference source of the named functions/classes of ``topic``, separated by blank lines."""
    found = definitions(topic)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"names: {missing} are not defined in genai_lab/solutions/{topic}.py")
    return "\n\n\n".join(found[n] for n in names)


def module(topic: str):
    """The imported solutions module of ``topic`` (its functions run as the lab's reference)."""
    _module_path(topic)
    return importlib.import_module(f"{__name__}.{topic}")


def answer_lines(source: str, min_length: int = 12) -> set[str]:
    """Stripped lines of the statements inside each function of ``source`` (classes: inside each
    method), docstrings and comments left out: the lines that give an answer away, which no
    shipped lab, hint or lab page may contain."""
    lines = source.splitlines()
    found: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                visit(member)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                body = body[1:]
            for stmt in body:
                found.update(line.strip() for line in lines[stmt.lineno - 1:stmt.end_lineno])

    for node in ast.parse(source).body:
        visit(node)
    return {line for line in found if len(line) >= min_length and not line.startswith("#")}
