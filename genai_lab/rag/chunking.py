"""Chunking (チャンキング): cut documents into pieces small enough to embed and to quote.

Four strategies, all measured in characters (so Japanese, written without spaces, works the same
way as English):

- ``fixed``: windows of ``size`` characters that overlap by ``overlap`` characters;
- ``sentence``: whole sentences packed up to ``size`` characters (English ``.!?`` followed by a
  space, Japanese ``。！？`` with no space needed);
- ``paragraph``: whole paragraphs (blank-line separated) packed up to ``size`` characters;
- ``heading``: sections under Markdown (``#``) or reStructuredText (underlined) headings, each
  chunk starting with its heading path, so "Number of Instances: 178" still says *which* dataset.

>>> fixed_size_chunks("abcdefghij", size=4, overlap=1)
['abcd', 'defg', 'ghij']
>>> split_sentences("今日は晴れです。明日は雨でしょう！本当ですか？")
['今日は晴れです。', '明日は雨でしょう！', '本当ですか？']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .corpus import Document

STRATEGIES = ("fixed", "sentence", "paragraph", "heading")


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document.

    Attributes:
        source: the document's path (see :class:`~genai_lab.rag.corpus.Document`).
        index: position of the chunk in its document (0, 1, …).
        text: the chunk's text (for ``heading`` chunks it starts with the heading path).
    """

    source: str
    index: int
    text: str

    @property
    def id(self) -> str:
        """``source#index``: how answers cite a chunk."""
        return f"{self.source}#{self.index}"

    @property
    def label(self) -> str:
        """``file#index`` (file name only), short enough to print."""
        return f"{self.source.rsplit('/', 1)[-1]}#{self.index}"


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")


def _check_size(size, name: str = "size") -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{name} must be a positive int (characters), got {size!r}")


def fixed_size_chunks(text: str, size: int = 500, overlap: int = 100) -> list[str]:
    """Windows of ``size`` characters, each starting ``size - overlap`` after the previous one.

    The last window ends exactly at the end of ``text``'s walk (it may be shorter); an empty text
    gives no chunk. Overlap repeats the border so a fact cut in two is whole in one window.
    """
    _check_text(text)
    _check_size(size)
    if not isinstance(overlap, int) or isinstance(overlap, bool) or not 0 <= overlap < size:
        raise ValueError(f"overlap must be an int with 0 <= overlap < size ({size}), got {overlap!r}")
    step = size - overlap
    chunks = []
    start = 0
    while start < len(text):
        chunks.append(text[start:start + size])
        if start + size >= len(text):
            break
        start += step
    return chunks


# A sentence ends at Japanese/Chinese 。！？ (no space needed), at . ! ? followed by whitespace
# or the end, optionally followed by closing quotes/brackets, or at a blank line.
_SENTENCE_END = re.compile(r"[。！？]+[」』）”’\"')\]]*|[.!?]+[”’\"')\]]*(?=\s|$)|\n[ \t]*\n")
_CJK_END = ("。", "！", "？", "」", "』", "）")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (stripped, none empty); works without spaces for Japanese."""
    _check_text(text)
    sentences, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        piece = text[start:m.end()].strip()
        if piece:
            sentences.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _join(a: str, b: str) -> str:
    if not a:
        return b
    return a + ("" if a.endswith(_CJK_END) else " ") + b


def _pack(pieces: Iterable[str], size: int, joiner) -> list[str]:
    """Greedily pack pieces into chunks of at most ``size`` characters (long pieces are cut)."""
    chunks, current = [], ""
    for piece in pieces:
        if len(piece) > size:
            if current:
                chunks.append(current)
                current = ""
            chunks.extend(fixed_size_chunks(piece, size, 0))
            continue
        candidate = joiner(current, piece)
        if len(candidate) <= size:
            current = candidate
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def sentence_chunks(text: str, size: int = 500) -> list[str]:
    """Whole sentences packed into chunks of at most ``size`` characters."""
    _check_text(text)
    _check_size(size)
    return _pack(split_sentences(text), size, _join)


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs: blocks separated by blank lines (stripped, none empty)."""
    _check_text(text)
    return [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def paragraph_chunks(text: str, size: int = 500) -> list[str]:
    """Whole paragraphs packed into chunks of at most ``size`` characters.

    A paragraph longer than ``size`` is split by sentences (and a sentence longer than that by
    characters).
    """
    _check_text(text)
    _check_size(size)
    pieces = []
    for para in split_paragraphs(text):
        pieces.extend([para] if len(para) <= size else sentence_chunks(para, size))
    return _pack(pieces, size, lambda a, b: f"{a}\n\n{b}" if a else b)


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'*+#`:.])\1{2,}\s*$")


def split_sections(text: str) -> list[tuple[str, str]]:
    """``[(heading path, body), …]`` from Markdown ``#`` headings and underlined RST titles.

    The heading path joins the enclosing headings with `` > `` (``"Wine dataset > Data Set
    Characteristics"``); text before the first heading has the path ``""``. Lines inside
    fenced code blocks are never headings.
    """
    _check_text(text)
    lines = text.splitlines()
    sections: list[tuple[str, list[str]]] = []
    path: list[tuple[int, str]] = []  # (level, title)
    rst_levels: list[str] = []  # underline characters in order of first use
    body: list[str] = []
    in_fence = False
    i = 0

    def flush():
        heading = " > ".join(t for _, t in path)
        if any(line.strip() for line in body):
            sections.append((heading, list(body)))
        body.clear()

    def open_heading(level: int, title: str):
        flush()
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title.strip().strip("*").strip()))

    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            body.append(line)
            i += 1
            continue
        if not in_fence:
            m = _MD_HEADING.match(line)
            if m:
                open_heading(len(m.group(1)), m.group(2))
                i += 1
                continue
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            u = _RST_UNDERLINE.match(nxt)
            if (u and line.strip() and not _RST_UNDERLINE.match(line)
                    and len(nxt.strip()) >= len(line.strip()) and not line.startswith((" ", "\t"))):
                char = u.group(1)
                if char not in rst_levels:
                    rst_levels.append(char)
                if body and _RST_UNDERLINE.match(body[-1] or ""):  # overline above the title
                    body.pop()
                open_heading(rst_levels.index(char) + 1, line)
                i += 2
                continue
        body.append(line)
        i += 1
    flush()
    return [(h, "\n".join(b).strip()) for h, b in sections]


def heading_chunks(text: str, size: int = 500) -> list[str]:
    """Section-aware chunks: paragraphs of one section packed together, never across sections.

    Every chunk starts with its section's heading path on its own line, so each piece carries
    its context ("Wine recognition dataset > …"), which helps both the embedder and BM25.
    """
    _check_text(text)
    _check_size(size)
    chunks = []
    for heading, body in split_sections(text):
        prefix = f"{heading}\n" if heading else ""
        room = max(size - len(prefix), max(50, size // 2))
        chunks.extend(prefix + piece for piece in paragraph_chunks(body, room))
    return chunks


def chunk_text(text: str, strategy: str = "heading", size: int = 500, overlap: int = 100) -> list[str]:
    """Chunk one text with the named strategy (``overlap`` is used by ``fixed`` only)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "fixed":
        return fixed_size_chunks(text, size, overlap)
    if strategy == "sentence":
        return sentence_chunks(text, size)
    if strategy == "paragraph":
        return paragraph_chunks(text, size)
    return heading_chunks(text, size)


def chunk_documents(documents: Iterable[Document], strategy: str = "heading", size: int = 500,
                    overlap: int = 100) -> list[Chunk]:
    """Chunk every document; chunk ``index`` counts from 0 within each document."""
    out = []
    for doc in documents:
        if not isinstance(doc, Document):
            raise TypeError(f"documents must hold Document objects, got {type(doc).__name__}")
        for i, piece in enumerate(p for p in chunk_text(doc.text, strategy, size, overlap) if p.strip()):
            out.append(Chunk(doc.source, i, piece))
    return out
