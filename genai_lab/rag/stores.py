"""Vector stores behind one interface: an exact in-memory store and PostgreSQL + pgvector.

A store keeps, for every document, its content hash and its chunks with their embeddings:

- :meth:`VectorStore.document_hashes` → ``{source: sha256}`` (what is indexed, and which version);
- :meth:`VectorStore.replace_document` / :meth:`VectorStore.delete_document` keep that in sync;
- :meth:`VectorStore.search` → the ``k`` best :class:`Hit` for a query vector (D,).

:class:`MemoryStore` is the embedded default: exact search with NumPy, saved as three small files
(``meta.json``, ``chunks.json``, ``vectors.npy``) so another process finds it.
:class:`~genai_lab.rag.pgvector_store.PgVectorStore` is the same thing in a real database.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .chunking import Chunk
from .embed import METRICS, similarity


@contextmanager
def deferred_interrupt():
    """Hold Ctrl-C (SIGINT) back until the block ends, so that a write is never left half done.

    In the main thread only (elsewhere signals cannot be handled and the block runs as is); a
    SIGINT that arrived meanwhile is raised as ``KeyboardInterrupt`` right after the block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. ``score``: larger is better (cosine, −L2, inner product, BM25 or RRF)."""

    chunk: Chunk
    score: float

    def as_dict(self) -> dict:
        return {"source": self.chunk.source, "chunk": self.chunk.index, "score": round(float(self.score), 6),
                "text": self.chunk.text}


class VectorStore(ABC):
    """What every store offers (see the module docstring)."""

    metric: str = "cosine"

    @property
    @abstractmethod
    def dim(self) -> int | None:
        """Vector length the store holds (``None`` while empty and unconfigured)."""

    @abstractmethod
    def document_hashes(self) -> dict[str, str]:
        """``{source: sha256}`` of every indexed document."""

    @abstractmethod
    def replace_document(self, source: str, sha256: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Store ``chunks`` (with ``vectors`` of shape (len(chunks), dim)) as the whole of ``source``."""

    @abstractmethod
    def delete_document(self, source: str) -> None:
        """Remove ``source`` and all its chunks (no error if absent)."""

    @abstractmethod
    def search(self, query_vector: np.ndarray, k: int = 5, *, source: str | None = None) -> list[Hit]:
        """The ``k`` chunks closest to ``query_vector`` (D,), best first.

        ``source``: a metadata filter; only chunks of that document are searched (fewer than ``k``
        come back when it has fewer chunks).
        """

    @abstractmethod
    def chunks(self) -> list[Chunk]:
        """Every stored chunk, ordered by source then index."""

    def count(self) -> int:
        """Number of stored chunks."""
        return len(self.chunks())

    def close(self) -> None:
        """Release connections (no-op for the memory store)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # shared argument checks -------------------------------------------------
    def _check_vectors(self, chunks: Sequence[Chunk], vectors) -> np.ndarray:
        if not all(isinstance(c, Chunk) for c in chunks):
            raise TypeError("chunks must hold Chunk objects")
        if hasattr(vectors, "detach"):
            vectors = vectors.detach().cpu().numpy()
        if not isinstance(vectors, np.ndarray):
            raise TypeError(f"vectors must be a numpy array, got {type(vectors).__name__}")
        if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
            raise ValueError(f"vectors must have shape ({len(chunks)}, dim), got {vectors.shape}")
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise ValueError(f"wrong embedding dimension: vectors have {vectors.shape[1]} numbers, "
                             f"the store holds {self.dim}-dimensional vectors")
        return vectors.astype(np.float32, copy=False)

    def _check_query(self, query_vector, k, source=None) -> np.ndarray:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if source is not None and not isinstance(source, str):
            raise TypeError(f"source must be a str (a document's path) or None, got {type(source).__name__}")
        if hasattr(query_vector, "detach"):
            query_vector = query_vector.detach().cpu().numpy()
        if not isinstance(query_vector, np.ndarray) or query_vector.ndim != 1:
            raise ValueError("query_vector must be a numpy array of shape (D,)")
        if self.dim is not None and query_vector.shape[0] != self.dim:
            raise ValueError(f"wrong embedding dimension: query_vector has {query_vector.shape[0]} numbers, "
                             f"the store holds {self.dim}-dimensional vectors")
        return query_vector.astype(np.float32, copy=False)


class MemoryStore(VectorStore):
    """Exact search over all vectors in memory; optionally persisted to a folder.

    Args:
        path: folder to load from and save to (``None``: memory only).
        metric: ``"cosine"`` (default), ``"l2"`` or ``"ip"``.
        dim: expected vector length (``None``: taken from the first document or the saved files).
    """

    def __init__(self, path: str | Path | None = None, *, metric: str = "cosine", dim: int | None = None) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.metric = metric
        self._dim = dim
        self.path = Path(path) if path is not None else None
        self._docs: dict[str, tuple[str, list[Chunk], np.ndarray]] = {}
        self._matrix: tuple[list[Chunk], np.ndarray] | None = None
        if self.path is not None and (self.path / "meta.json").is_file():
            self._load()

    @property
    def dim(self) -> int | None:
        return self._dim

    def document_hashes(self) -> dict[str, str]:
        return {s: h for s, (h, _, _) in sorted(self._docs.items())}

    def replace_document(self, source, sha256, chunks, vectors) -> None:
        vectors = self._check_vectors(chunks, vectors)
        if self._dim is None:
            self._dim = int(vectors.shape[1])
        self._docs[source] = (sha256, list(chunks), vectors)
        self._matrix = None

    def delete_document(self, source) -> None:
        self._docs.pop(source, None)
        self._matrix = None

    def _all(self) -> tuple[list[Chunk], np.ndarray]:
        if self._matrix is None:
            chunks = [c for s in sorted(self._docs) for c in self._docs[s][1]]
            mats = [self._docs[s][2] for s in sorted(self._docs)]
            self._matrix = (chunks, np.concatenate(mats) if mats else np.zeros((0, self._dim or 0), np.float32))
        return self._matrix

    def chunks(self) -> list[Chunk]:
        return list(self._all()[0])

    def search(self, query_vector, k: int = 5, *, source: str | None = None) -> list[Hit]:
        q = self._check_query(query_vector, k, source)
        chunks, X = self._all()
        if source is not None:  # the metadata filter: only that document's rows
            keep = [i for i, c in enumerate(chunks) if c.source == source]
            chunks, X = [chunks[i] for i in keep], X[keep]
        if not chunks:
            return []
        scores = similarity(q, X, self.metric)
        order = np.argsort(-scores, kind="stable")[:k]
        return [Hit(chunks[i], float(scores[i])) for i in order]

    # persistence --------------------------------------------------------------
    def save(self) -> None:
        """Write the store to ``path`` (atomically: a crash never leaves half a store)."""
        if self.path is None:
            raise ValueError("path must be set to save a MemoryStore")
        self.path.mkdir(parents=True, exist_ok=True)
        chunks, X = self._all()
        meta = {"metric": self.metric, "dim": self._dim, "documents": self.document_hashes()}
        payload = {"chunks.json": json.dumps([[c.source, c.index, c.text] for c in chunks]).encode(),
                   "meta.json": json.dumps(meta, indent=1).encode()}
        with deferred_interrupt():  # Ctrl-C waits until the three files agree
            tmp_vec = self.path / "vectors.npy.tmp"
            with open(tmp_vec, "wb") as fh:
                np.save(fh, X)
            for name, data in payload.items():
                (self.path / (name + ".tmp")).write_bytes(data)
            for name in ("vectors.npy", "chunks.json", "meta.json"):  # meta last: it marks a complete save
                os.replace(self.path / (name + ".tmp"), self.path / name)

    def _load(self) -> None:
        meta = json.loads((self.path / "meta.json").read_text())
        if meta.get("metric") != self.metric:
            raise ValueError(f"metric {self.metric!r} differs from the saved store's {meta.get('metric')!r} "
                             f"in {self.path}")
        saved_dim = meta.get("dim")
        if self._dim is not None and saved_dim is not None and saved_dim != self._dim:
            raise ValueError(f"wrong embedding dimension: the store in {self.path} holds {saved_dim}-dimensional "
                             f"vectors, expected {self._dim}")
        self._dim = saved_dim
        rows = json.loads((self.path / "chunks.json").read_text())
        X = np.load(self.path / "vectors.npy")
        if len(rows) != X.shape[0]:
            raise ValueError(f"the store in {self.path} is damaged ({len(rows)} chunks, {X.shape[0]} vectors): "
                             "delete that folder and index again")
        by_source: dict[str, list[int]] = {}
        for i, (source, _, _) in enumerate(rows):
            by_source.setdefault(source, []).append(i)
        for source, sha in meta["documents"].items():
            idx = by_source.get(source, [])
            self._docs[source] = (sha, [Chunk(*rows[i]) for i in idx], X[idx])
