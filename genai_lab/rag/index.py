"""The RAG index: corpus → chunks → embeddings → a vector store, plus BM25 and hybrid search.

>>> index = RagIndex(MemoryStore())                       # doctest: +SKIP
>>> index.update([sklearn_descr_dir()])                   # doctest: +SKIP
IndexReport(added=14, updated=0, deleted=0, unchanged=0, chunks=133)
>>> index.search("How many wines are in the wine dataset?", k=3)   # doctest: +SKIP

Re-indexing is idempotent: each document is stored with a hash of its text *and* of the
chunking/embedding settings; an unchanged file is skipped, a changed one replaced, and a file that
disappeared from an indexed folder is deleted from the store.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Iterable, Sequence

import numpy as np

from .bm25 import BM25
from .chunking import STRATEGIES, chunk_documents
from .corpus import Document, load_corpus
from .embed import Embedder
from .stores import Hit, MemoryStore, VectorStore

MODES = ("dense", "bm25", "hybrid")


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], k: int = 60) -> list[tuple[Hashable, float]]:
    """Fuse ranked lists: ``score(d) = Σ_lists 1 / (k + rank(d))`` with ranks counted from 1.

    Cormack, Clarke & Büttcher (2009). Only ranks matter, so lists whose scores live on different
    scales (cosine vs BM25) combine without any tuning. Returns ``[(item, score), …]``, best
    first; ties keep the order in which items were first seen.

    >>> reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=60)[0][0]
    'b'
    """
    if isinstance(rankings, (str, bytes)) or not isinstance(rankings, Sequence):
        raise TypeError("rankings must be a list of ranked lists")
    if not isinstance(k, (int, float)) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be a non-negative number, got {k!r}")
    scores: dict[Hashable, float] = {}
    for ranking in rankings:
        if isinstance(ranking, (str, bytes)) or not isinstance(ranking, Sequence):
            raise TypeError("rankings must hold lists of items")
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


@dataclass
class IndexReport:
    """What :meth:`RagIndex.update` did (lists of sources) and how long it took.

    ``added``/``updated`` list the documents written to the store; after an interruption the
    ones not reached yet are in ``pending``. ``chunks`` counts chunks written, ``embedded`` the
    texts actually run through the model (the rest came from the embedding cache).
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    chunks: int = 0  # chunks written to the store in this update
    seconds: float = 0.0
    embedded: int = 0  # chunks run through the embedding model (cache misses)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): files that are not text
    pending: list[str] = field(default_factory=list)  # documents left to do when interrupted

    def __repr__(self) -> str:
        return (f"IndexReport(added={len(self.added)}, updated={len(self.updated)}, deleted={len(self.deleted)}, "
                f"unchanged={len(self.unchanged)}, chunks={self.chunks}, seconds={self.seconds:.1f})")


class IndexingInterrupted(KeyboardInterrupt):
    """Ctrl-C arrived during :meth:`RagIndex.add_documents`: what was finished is stored and saved.

    ``report`` (an :class:`IndexReport`) lists the documents written before the interruption and,
    in ``pending``, those still to do; running the same update again continues from there.
    """

    def __init__(self, report: IndexReport) -> None:
        super().__init__(f"indexing interrupted: {len(report.added) + len(report.updated)} documents stored, "
                         f"{len(report.pending)} left")
        self.report = report


class RagIndex:
    """Index and search a corpus.

    Args:
        store: a :class:`~genai_lab.rag.stores.VectorStore` (memory or pgvector).
        embedder: an :class:`~genai_lab.rag.embed.Embedder` (default: all-MiniLM-L6-v2, cached).
        strategy, chunk_size, overlap: how documents are chunked (see :mod:`.chunking`).
    """

    def __init__(self, store: VectorStore, embedder: Embedder | None = None, *, strategy: str = "heading",
                 chunk_size: int = 500, overlap: int = 100) -> None:
        if not isinstance(store, VectorStore):
            raise TypeError(f"store must be a VectorStore, got {type(store).__name__}")
        if embedder is not None and not isinstance(embedder, Embedder):
            raise TypeError(f"embedder must be an Embedder, got {type(embedder).__name__}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        if not isinstance(overlap, int) or not 0 <= overlap < chunk_size:
            raise ValueError(f"overlap must be an int in [0, chunk_size), got {overlap!r}")
        self.store = store
        self.embedder = embedder or Embedder()
        self.strategy, self.chunk_size, self.overlap = strategy, chunk_size, overlap
        self.server = None  # a local PostgreSQL started for this index, if any
        self._bm25: tuple[list, BM25] | None = None
        self._check_dimension()

    def _check_dimension(self) -> None:
        if self.store.dim is not None and self.embedder.dim != self.store.dim:
            raise ValueError(f"wrong embedding dimension: the store holds {self.store.dim}-dimensional vectors, "
                             f"the embedder {self.embedder.name!r} makes {self.embedder.dim}")

    def _version(self, content_sha: str) -> str:
        settings = f"{self.embedder.name}|{self.strategy}|{self.chunk_size}|{self.overlap}|{content_sha}"
        return hashlib.sha256(settings.encode()).hexdigest()

    # indexing -------------------------------------------------------------------
    def update(self, paths: str | Path | Iterable[str | Path], *, progress: bool = False,
               documents: Sequence[Document] | None = None,
               skipped: Sequence[tuple[str, str]] = ()) -> IndexReport:
        """Bring the store in line with the files under ``paths``; returns what changed.

        ``documents`` (optional): the corpus of ``paths`` already read with :func:`load_corpus`
        (it is not read twice); ``skipped``: the ``(path, reason)`` pairs that read reported.
        Documents are embedded and stored in groups, so Ctrl-C keeps every finished document
        (see :class:`IndexingInterrupted`) and the next update continues where this one stopped.

        Raises:
            FileNotFoundError: a path does not exist.
            ValueError: the paths hold no supported file (empty corpus).
            IndexingInterrupted: Ctrl-C; the finished part is stored.
        """
        start = time.perf_counter()
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        skipped = list(skipped)
        if documents is None:
            documents = load_corpus(paths, skipped=skipped)
        docs = list(documents)
        roots = [Path(p).expanduser().resolve() for p in paths]
        existing = self.store.document_hashes()
        try:
            report = self.add_documents(docs, progress=progress, existing=existing)
        except IndexingInterrupted as exc:
            exc.report.skipped = skipped
            exc.report.seconds = time.perf_counter() - start
            raise
        report.skipped = skipped
        present = {d.source for d in docs}
        for source in existing:
            p = Path(source)
            inside = any(p == r or (r.is_dir() and r in p.parents) for r in roots)
            if inside and source not in present:
                self.store.delete_document(source)
                report.deleted.append(source)
        self._changed()
        report.seconds = time.perf_counter() - start
        return report

    #: chunks embedded and written per step of :meth:`add_documents` (a step is what Ctrl-C can lose
    #: from the store; the embedding cache keeps its vectors anyway).
    group_chunks = 128

    def add_documents(self, documents: Sequence[Document], *, progress: bool = False,
                      existing: dict[str, str] | None = None) -> IndexReport:
        """Index ``documents`` (new or changed ones only; nothing is deleted).

        Work goes in steps of about :attr:`group_chunks` chunks: embed (longest texts together),
        write each document whole, next step. Ctrl-C raises :class:`IndexingInterrupted` after
        saving every document already written.
        """
        if isinstance(documents, Document) or not all(isinstance(d, Document) for d in documents):
            raise TypeError("documents must be a list of Document")
        if existing is None:
            existing = self.store.document_hashes()
        report = IndexReport()
        todo = []
        for doc in documents:
            version = self._version(doc.sha256)
            if existing.get(doc.source) == version:
                report.unchanged.append(doc.source)
            else:
                todo.append((doc, version))
        computed_before = self.embedder.computed
        report.pending = [d.source for d, _ in todo]
        try:
            if todo:
                self._write_in_steps(todo, existing, report, progress)
        except KeyboardInterrupt:
            report.embedded = self.embedder.computed - computed_before
            self._changed()
            raise IndexingInterrupted(report) from None
        except BaseException:
            self._changed()  # keep the documents finished before the failure
            raise
        report.embedded = self.embedder.computed - computed_before
        self._changed()
        return report

    def _write_in_steps(self, todo, existing, report, progress) -> None:
        chunks = chunk_documents([d for d, _ in todo], self.strategy, self.chunk_size, self.overlap)
        by_source: dict[str, list] = {}
        for c in chunks:
            by_source.setdefault(c.source, []).append(c)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(chunks), unit="chunk", desc="indexing")
        try:
            self._steps(todo, by_source, existing, report, bar)
        finally:
            if bar is not None:
                bar.close()  # now, so that nothing is drawn after the caller's last word

    def _steps(self, todo, by_source, existing, report, bar) -> None:
        step: list = []
        size = 0
        for n, item in enumerate(todo):
            step.append(item)
            size += len(by_source.get(item[0].source, ()))
            if size < self.group_chunks and n < len(todo) - 1:
                continue
            texts = [c.text for d, _ in step for c in by_source.get(d.source, ())]
            vectors = self.embedder.encode(texts) if texts else None
            row = 0
            for doc, version in step:
                doc_chunks = by_source.get(doc.source, [])
                doc_vectors = (vectors[row:row + len(doc_chunks)] if vectors is not None
                               else np.zeros((0, self.embedder.dim), np.float32))
                row += len(doc_chunks)
                self.store.replace_document(doc.source, version, doc_chunks, doc_vectors)
                (report.updated if doc.source in existing else report.added).append(doc.source)
                report.pending.pop(0)  # pending follows the order of todo
                report.chunks += len(doc_chunks)
            if bar is not None:
                bar.update(len(texts))
            step, size = [], 0

    def remove_document(self, source: str) -> None:
        """Delete one document (by its ``source``) from the index."""
        if not isinstance(source, str):
            raise TypeError(f"source must be a str, got {type(source).__name__}")
        self.store.delete_document(source)
        self._changed()

    def _changed(self) -> None:
        if isinstance(self.store, MemoryStore) and self.store.path is not None:
            self.store.save()
        self._bm25 = None

    # searching ------------------------------------------------------------------
    def _check(self, query: str, k: int) -> None:
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query must be a non-empty str, got {query!r}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")

    def dense_search(self, query: str, k: int = 5) -> list[Hit]:
        """Embedding search in the vector store (score: cosine similarity by default)."""
        self._check(query, k)
        return self.store.search(self.embedder.encode([query])[0], k)

    def bm25_search(self, query: str, k: int = 5) -> list[Hit]:
        """Keyword search with BM25 over every stored chunk (built on first use)."""
        self._check(query, k)
        if self._bm25 is None:
            chunks = self.store.chunks()
            if not chunks:
                return []
            self._bm25 = (chunks, BM25([c.text for c in chunks]))
        chunks, bm25 = self._bm25
        idx, scores = bm25.top_k(query, k)
        return [Hit(chunks[i], float(s)) for i, s in zip(idx, scores)]

    def hybrid_search(self, query: str, k: int = 5, *, candidates: int = 30, rrf_k: int = 60) -> list[Hit]:
        """Dense and BM25 top-``candidates`` fused with :func:`reciprocal_rank_fusion`."""
        self._check(query, k)
        dense = self.dense_search(query, max(candidates, k))
        lexical = self.bm25_search(query, max(candidates, k))
        by_id = {h.chunk.id: h.chunk for h in dense + lexical}
        fused = reciprocal_rank_fusion([[h.chunk.id for h in dense], [h.chunk.id for h in lexical]], k=rrf_k)
        return [Hit(by_id[i], s) for i, s in fused[:k]]

    def search(self, query: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
        """Top-``k`` chunks for ``query`` with ``mode`` ``"dense"``, ``"bm25"`` or ``"hybrid"``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return {"dense": self.dense_search, "bm25": self.bm25_search, "hybrid": self.hybrid_search}[mode](query, k)

    def count(self) -> int:
        """Chunks in the store."""
        return self.store.count()

    def close(self) -> None:
        """Close the store (and stop a local PostgreSQL this index started)."""
        self.store.close()
        if self.server is not None:
            from .pgvector_store import stop_local_server

            stop_local_server(self.server)
            self.server = None


def default_index_dir() -> Path:
    """``<cache>/rag/index``: where the memory store of the CLI's default index lives."""
    from ..config import cache_dir

    return cache_dir() / "rag" / "index"


def open_index(store: str = "memory", *, db: str | None = None, path: str | Path | None = None,
               embedder: Embedder | None = None, **index_kwargs) -> RagIndex:
    """Open the persistent index: ``store="memory"`` (files under ``path`` or
    :func:`default_index_dir`) or ``store="pgvector"`` (the DSN ``db``, or a local server whose
    data lives under ``path`` or ``<cache>/rag/pgdata``).
    """
    if store not in ("memory", "pgvector"):
        raise ValueError(f"store must be 'memory' or 'pgvector', got {store!r}")
    embedder = embedder or Embedder()
    if store == "memory":
        if db is not None:
            raise ValueError("db is only used with store='pgvector'")
        return RagIndex(MemoryStore(Path(path) if path else default_index_dir()), embedder, **index_kwargs)
    from .pgvector_store import PgVectorStore, start_local_server

    server = None
    if db is None:
        server, db = start_local_server(path)
    try:
        index = RagIndex(PgVectorStore(db, dim=embedder.dim), embedder, **index_kwargs)
    except Exception:
        if server is not None:
            from .pgvector_store import stop_local_server

            stop_local_server(server)
        raise
    index.server = server
    return index
