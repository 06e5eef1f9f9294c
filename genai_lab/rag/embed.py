"""Embeddings (埋め込み) and the three similarity measures of vector search.

:class:`Embedder` turns texts into unit vectors with all-MiniLM-L6-v2 (offline, 384 numbers per
text) and remembers every vector it computed in a small SQLite file under the data cache, keyed
by a hash of model and text, so re-indexing or re-running a notebook never embeds the same chunk
twice. New texts are embedded longest-first in tokens (a batch is padded to its longest text) and
committed to that cache every few batches, so an interrupted run keeps what it computed.

Similarity, for a query ``q`` (D,) and rows ``X`` (N, D):

===============  ==========================  =========================  ==========
measure          formula                     best                       pgvector
===============  ==========================  =========================  ==========
cosine           q·x / (‖q‖‖x‖) in [-1, 1]   largest                    ``<=>`` = 1 − cosine
L2 (Euclidean)   ‖q − x‖                     smallest                   ``<->``
inner product    q·x                         largest                    ``<#>`` = −q·x
===============  ==========================  =========================  ==========

For unit vectors ``‖q − x‖² = 2 − 2·cos``, so all three rank rows identically; they disagree
only when lengths differ (see :func:`rank_by`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
METRICS = ("cosine", "l2", "ip")
#: pgvector's distance operator for each metric (smaller distance = more similar).
PGVECTOR_OPERATORS = {"cosine": "<=>", "l2": "<->", "ip": "<#>"}


def _as_matrix(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    return x.astype(np.float32, copy=False)


def _check_pair(query, rows) -> tuple[np.ndarray, np.ndarray]:
    q, X = _as_matrix(query, "query"), _as_matrix(rows, "rows")
    if q.ndim != 1:
        raise ValueError(f"query must have shape (D,), got {q.shape}")
    if X.ndim != 2 or X.shape[1] != q.shape[0]:
        raise ValueError(f"rows must have shape (N, {q.shape[0]}), got {X.shape}")
    return q, X


def cosine_similarity(query, rows) -> np.ndarray:
    """Cosine similarity of ``query`` (D,) with each row of ``rows`` (N, D) → (N,) in [-1, 1]."""
    q, X = _check_pair(query, rows)
    denom = np.linalg.norm(X, axis=1) * np.linalg.norm(q)
    return (X @ q) / np.maximum(denom, 1e-12)


def l2_distance(query, rows) -> np.ndarray:
    """Euclidean distance of ``query`` (D,) to each row of ``rows`` (N, D) → (N,), ≥ 0."""
    q, X = _check_pair(query, rows)
    return np.linalg.norm(X - q, axis=1)


def inner_product(query, rows) -> np.ndarray:
    """Dot product of ``query`` (D,) with each row of ``rows`` (N, D) → (N,)."""
    q, X = _check_pair(query, rows)
    return X @ q


def similarity(query, rows, metric: str = "cosine") -> np.ndarray:
    """Scores (N,) where *larger is better* for every metric: cosine, −L2 distance, inner product."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if metric == "cosine":
        return cosine_similarity(query, rows)
    if metric == "l2":
        return -l2_distance(query, rows)
    return inner_product(query, rows)


def rank_by(query, rows, metric: str = "cosine") -> np.ndarray:
    """Row indices (N,) from most to least similar under ``metric`` (ties keep row order)."""
    return np.argsort(-similarity(query, rows, metric), kind="stable")


def top_k(query, rows, k: int, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """``(indices, scores)`` of the ``k`` most similar rows, best first (exact search)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    scores = similarity(query, rows, metric)
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings with an on-disk cache.

    Args:
        model: anything with ``encode(list[str]) -> (N, D)`` (default: load all-MiniLM-L6-v2 via
            :func:`genai_lab.models.load_minilm` on first use).
        cache_path: SQLite file for cached vectors; ``None`` → ``<cache>/rag/embeddings.sqlite``;
            ``False`` disables caching.
        batch_size: texts per forward pass.
        device: torch device for the default model.
        commit_batches: batches embedded between two commits to the cache (an interrupted
            :meth:`encode` loses at most this many batches of work).
    """

    def __init__(self, model=None, *, cache_path: str | Path | None | bool = None,
                 batch_size: int = 32, device=None, name: str = MODEL_NAME, commit_batches: int = 4) -> None:
        if model is not None and not callable(getattr(model, "encode", None)):
            raise TypeError("model must have an encode(texts) method")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(commit_batches, bool) or not isinstance(commit_batches, int) or commit_batches < 1:
            raise ValueError(f"commit_batches must be a positive int, got {commit_batches!r}")
        self._model = model
        self.batch_size = batch_size
        self.commit_batches = commit_batches
        self.device = device
        self.name = name
        if cache_path is None:
            from ..config import cache_dir

            cache_path = cache_dir() / "rag" / "embeddings.sqlite"
        self.cache_path = Path(cache_path) if cache_path else None
        self._dim: int | None = None
        self.computed = 0  # texts actually run through the model (cache misses)

    @property
    def model(self):
        if self._model is None:
            from ..models import load_minilm

            self._model = load_minilm("sentence", device=self.device)
        return self._model

    @property
    def dim(self) -> int:
        """Length of each vector (384 for all-MiniLM-L6-v2)."""
        if self._dim is None:
            model = self.model
            getter = (getattr(model, "get_embedding_dimension", None)
                      or getattr(model, "get_sentence_embedding_dimension", None))
            self._dim = int(getter()) if getter else int(self.encode(["dimension probe"]).shape[1])
        return self._dim

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.name}\0{text}".encode("utf-8")).hexdigest()

    def _connect(self):
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.cache_path, timeout=30)
        con.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB)")
        return con

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Unit-length embeddings, shape (N, D) float32, in the order of ``texts``."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError("texts must be a list of str")
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must hold only str")
        if not texts:
            raise ValueError("texts must not be empty")
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        con = self._connect() if self.cache_path else None
        try:
            if con is not None:
                unique = list(dict.fromkeys(keys))
                for start in range(0, len(unique), 500):
                    part = unique[start:start + 500]
                    rows = con.execute(f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(part))})",
                                       part).fetchall()
                    found.update({k: np.frombuffer(v, dtype=np.float32) for k, v in rows})
            missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
            # longest first *in tokens*, so each batch holds texts of similar length (a batch is
            # padded to its longest text), and committed to the cache one group at a time: an
            # interrupted run keeps what it computed
            lengths = dict(zip(missing, self._token_lengths(missing)))
            missing.sort(key=lambda t: lengths[t], reverse=True)
            group = self.batch_size * self.commit_batches
            bar = None
            if progress and missing:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(missing), unit="chunk", desc="embedding")
            try:
                self._encode_missing(missing, group, found, con, bar)
            finally:
                if bar is not None:
                    bar.close()
        finally:
            if con is not None:
                con.close()
        out = np.stack([found[k] for k in keys]).astype(np.float32)
        self._dim = out.shape[1]
        return out

    def _token_lengths(self, texts: list[str]) -> list[int]:
        """Tokens per text as the model will see them (characters when the model has no tokenizer)."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None or not texts:
            return [len(t) for t in texts]
        limit = getattr(self.model, "max_seq_length", None) or 512
        try:
            ids = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]
        except Exception:  # an unusual tokenizer: fall back to characters
            return [len(t) for t in texts]
        return [len(i) for i in ids]

    def _encode_missing(self, missing, group, found, con, bar) -> None:
        """Embed ``missing`` (sorted by length) ``group`` texts at a time, committing each group.

        Each batch goes to the model on its own, so the model keeps our token-length order (a
        sentence-transformers call re-sorts its input by characters, which pads far more).
        """
        for start in range(0, len(missing), group):
            part = missing[start:start + group]
            vecs = np.concatenate([
                np.asarray(self.model.encode(part[b:b + self.batch_size], batch_size=self.batch_size,
                                             normalize_embeddings=True, convert_to_numpy=True,
                                             show_progress_bar=False), dtype=np.float32)
                for b in range(0, len(part), self.batch_size)])
            self.computed += len(part)
            new = {self._key(t): v for t, v in zip(part, vecs)}
            found.update(new)
            if con is not None:
                con.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                                [(k, v.tobytes()) for k, v in new.items()])
                con.commit()
            if bar is not None:
                bar.update(len(part))


def multilingual_embedder(cfg=None, **kwargs) -> Embedder | None:
    """The hub path's multilingual embedder, or ``None`` when it is neither cached nor reachable.

    paraphrase-multilingual-MiniLM-L12-v2 (registry name ``"multilingual-minilm"``) maps Japanese,
    English and 48 more languages into one space of 384 numbers, so a Japanese sentence lands near
    its English translation; all-MiniLM-L6-v2 was trained on English only. ``kwargs`` go to
    :class:`Embedder` (its cache keys carry the model's name, so the two never mix).
    """
    from ..models import hub_model_path

    path = hub_model_path("multilingual-minilm")
    if path is None:
        return None
    from sentence_transformers import SentenceTransformer

    device = kwargs.pop("device", getattr(cfg, "device", None))
    return Embedder(SentenceTransformer(str(path), device=device), name="paraphrase-multilingual-MiniLM-L12-v2",
                    device=device, **kwargs)
