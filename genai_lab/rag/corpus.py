"""Corpora: read a folder of ``.md``, ``.txt``, ``.rst`` and ``.ipynb`` files into documents.

A :class:`Document` is one file's text plus its SHA-256 content hash; the hash is what makes
re-indexing idempotent (an unchanged file is skipped, a changed one is re-embedded).

Two demo corpora ship with the book, both offline:

- :func:`sklearn_descr_dir`: the dataset descriptions that come inside the scikit-learn package
  (``sklearn/datasets/descr/*.rst``: iris, wine, digits, 20 newsgroups, …), real third-party text;
- :func:`book_dir`: the book's own chapters ("ask the book").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

#: File types that :func:`load_corpus` reads.
SUPPORTED_SUFFIXES = (".md", ".txt", ".rst", ".ipynb")
#: Folders never descended into (virtual environments, build output, checkpoints, caches).
SKIPPED_DIRS = {"_build", "__pycache__", "node_modules", "site-packages"}


@dataclass(frozen=True)
class Document:
    """One file of a corpus.

    Attributes:
        source: absolute POSIX path of the file (unique key in every store).
        text: the readable text (for notebooks: markdown and code cells, no outputs).
    """

    source: str
    text: str

    @property
    def sha256(self) -> str:
        """SHA-256 of the text: the content hash that decides whether to re-index."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def name(self) -> str:
        """The file name (``iris.rst``), handy for printing."""
        return Path(self.source).name


def notebook_text(raw: str) -> str:
    """The readable text of a notebook's JSON: markdown cells as they are, code cells fenced.

    Outputs are dropped (they are large, change on every run and are not prose).
    """
    if not isinstance(raw, str):
        raise TypeError(f"raw must be a str holding notebook JSON, got {type(raw).__name__}")
    try:
        nb = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"raw is not notebook JSON: {exc}") from None
    parts = []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        if not src.strip():
            continue
        if cell.get("cell_type") == "code":
            parts.append(f"```python\n{src.rstrip()}\n```")
        elif cell.get("cell_type") == "markdown":
            parts.append(src.strip())
    return "\n\n".join(parts)


def read_document(path: str | Path) -> Document:
    """Read one supported file into a :class:`Document` (UTF-8; undecodable bytes replaced)."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"path {str(path)!r} does not exist or is not a file")
    if p.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ValueError(f"path {str(path)!r} is not one of {SUPPORTED_SUFFIXES}")
    raw = p.read_text(encoding="utf-8", errors="replace")
    text = notebook_text(raw) if p.suffix.lower() == ".ipynb" else raw
    return Document(source=p.as_posix(), text=text)


def corpus_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Every supported file under ``paths`` (files or folders), sorted, hidden folders skipped.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("paths must name at least one file or folder")
    found: set[Path] = set()
    for raw in paths:
        if not isinstance(raw, (str, Path)):
            raise TypeError(f"paths must hold str or Path, got {type(raw).__name__}")
        p = Path(raw).expanduser().resolve()
        if not p.exists():
            raise FileNotFoundError(f"path {str(raw)!r} does not exist")
        if p.is_file():
            if p.suffix.lower() in SUPPORTED_SUFFIXES:
                found.add(p)
            continue
        for f in p.rglob("*"):
            rel = f.relative_to(p).parts
            if any(part.startswith(".") or part in SKIPPED_DIRS for part in rel[:-1]):
                continue
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in SUPPORTED_SUFFIXES:
                found.add(f)
    return sorted(found)


def load_corpus(paths: str | Path | Iterable[str | Path]) -> list[Document]:
    """Read every supported file under ``paths`` into documents (empty files are dropped).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no supported file with text was found (an empty corpus).
    """
    docs = [read_document(f) for f in corpus_files(paths)]
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        shown = [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        raise ValueError(f"paths {shown} hold no {'/'.join(SUPPORTED_SUFFIXES)} file with text: "
                         "the corpus is empty")
    return docs


def sklearn_descr_dir() -> Path:
    """The folder of dataset descriptions inside the installed scikit-learn (offline, real text)."""
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "descr"


def book_dir() -> Path:
    """The book's chapters (``book/`` in the repository): the "ask the book" corpus."""
    from ..config import REPO_ROOT

    return REPO_ROOT / "book"
