"""Corpora: read a folder of ``.md``, ``.txt``, ``.rst`` and ``.ipynb`` files into documents.

A :class:`Document` is one file's text plus its SHA-256 content hash; the hash is what makes
re-indexing idempotent (an unchanged file is skipped, a changed one is re-embedded).

Two demo corpora ship with the book, both offline:

- :func:`sklearn_descr_dir`: the dataset descriptions that come inside the scikit-learn package
  (``sklearn/datasets/descr/*.rst``: iris, wine, digits, 20 newsgroups, …), real third-party text;
- :func:`book_dir`: the book's own chapters ("ask the book").

A third, small one is Japanese: :func:`japanese_corpus` (about fifty short documents the project wrote on
the book's topics and a few general facts, ``data/ja_corpus.json``), with its question set
``data/ja_questions.json``; :func:`write_japanese_corpus` writes it out as ``.md`` files to index
like any folder.
"""

from __future__ import annotations

import hashlib
import json
import re
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


class UnreadableFileError(ValueError):
    """A corpus file is not text we can index (not UTF-8, or binary); the message says why."""


#: Share of control characters (other than tab, newline, carriage return, form feed) above which
#: a UTF-8 file is treated as binary rather than text.
MAX_CONTROL_SHARE = 0.05
_CONTROL = re.compile("[\x01-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(data: bytes, name: str = "file") -> str:
    """Decode ``data`` as UTF-8 text (a leading BOM is dropped), refusing what is not text.

    No replacement characters, no silent guessing: a file that is not valid UTF-8 or that looks
    binary (NUL bytes, many control characters) raises :class:`UnreadableFileError` naming the
    first bad byte, so the caller can skip it and say so.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if b"\x00" in data:
        raise UnreadableFileError(f"{name} is binary (NUL byte at offset {data.index(0)}), not text")
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                                  "convert it to UTF-8 to index it") from None
    control = len(_CONTROL.findall(text))
    if text and control / len(text) > MAX_CONTROL_SHARE:
        raise UnreadableFileError(f"{name} looks binary ({control} control characters in {len(text)}), not text")
    return text


def read_document(path: str | Path) -> Document:
    """Read one supported file into a :class:`Document` (strict UTF-8, see :func:`decode_text`).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        UnreadableFileError: the file is not UTF-8 text (a ``ValueError``).
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"path {str(path)!r} does not exist or is not a file")
    if p.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ValueError(f"path {str(path)!r} is not one of {SUPPORTED_SUFFIXES}")
    raw = decode_text(p.read_bytes(), p.as_posix())
    if p.suffix.lower() == ".ipynb":
        try:
            text = notebook_text(raw)
        except ValueError:
            raise UnreadableFileError(f"{p.as_posix()} is not notebook JSON") from None
    else:
        text = raw
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


def load_corpus(paths: str | Path | Iterable[str | Path], *,
                skipped: list[tuple[str, str]] | None = None) -> list[Document]:
    """Read every supported file under ``paths`` into documents (empty files are dropped).

    Files that are not UTF-8 text (see :func:`decode_text`) are left out; pass a list as
    ``skipped`` to receive ``(path, reason)`` for each of them.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no supported file with text was found (an empty corpus).
    """
    if skipped is not None and not isinstance(skipped, list):
        raise TypeError(f"skipped must be a list or None, got {type(skipped).__name__}")
    docs, left_out = [], []
    for f in corpus_files(paths):
        try:
            docs.append(read_document(f))
        except UnreadableFileError as exc:
            left_out.append((f.as_posix(), str(exc)))
    if skipped is not None:
        skipped.extend(left_out)
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        shown = [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        why = f" ({len(left_out)} skipped as not UTF-8 text: {left_out[0][1]})" if left_out else ""
        raise ValueError(f"paths {shown} hold no {'/'.join(SUPPORTED_SUFFIXES)} file with text: "
                         f"the corpus is empty{why}")
    return docs


def sklearn_descr_dir() -> Path:
    """The folder of dataset descriptions inside the installed scikit-learn (offline, real text)."""
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "descr"


def book_dir() -> Path:
    """The book's chapters (``book/`` in the repository): the "ask the book" corpus."""
    from ..config import REPO_ROOT

    return REPO_ROOT / "book"


#: The Japanese corpus written for the book (``{"documents": [{"id", "title", "text"}, …]}``).
JAPANESE_CORPUS_FILE = Path(__file__).with_name("data") / "ja_corpus.json"
#: The folder name Japanese documents live under (their ``source`` is ``ja/<id>.md``).
JAPANESE_FOLDER = "ja"


def japanese_document_text(title: str, text: str) -> str:
    """One Japanese document as Markdown: ``# title``, a blank line, the text, a final newline."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty str, got {title!r}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty str, got {text!r}")
    return f"# {title.strip()}\n\n{text.strip()}\n"


def japanese_corpus() -> list[Document]:
    """The project's Japanese corpus: one :class:`Document` per entry of ``data/ja_corpus.json``.

    Each ``source`` is ``ja/<id>.md`` (a name, not a file on disk; the question set's
    ``sources`` name ``<id>.md``, which matches it), each text a short Markdown document (see
    :func:`japanese_document_text`). Index it with ``RagIndex.add_documents``.
    """
    data = json.loads(JAPANESE_CORPUS_FILE.read_text(encoding="utf-8"))
    return [Document(source=f"{JAPANESE_FOLDER}/{d['id']}.md", text=japanese_document_text(d["title"], d["text"]))
            for d in data["documents"]]


def write_japanese_corpus(folder: str | Path) -> Path:
    """Write :func:`japanese_corpus` into ``folder`` as ``<id>.md`` files (UTF-8); returns ``folder``.

    For indexing it like any folder of notes (``python -m genai_lab rag index FOLDER``).
    """
    if not isinstance(folder, (str, Path)):
        raise TypeError(f"folder must be a str or Path, got {type(folder).__name__}")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    for doc in japanese_corpus():
        (folder / doc.name).write_text(doc.text, encoding="utf-8")
    return folder
