"""A small, real RAG toolkit: chunk a folder of documents, embed, store, retrieve, evaluate, answer.

Pieces (one module each, imported on demand so ``import genai_lab.rag`` stays cheap):

- :mod:`.corpus`: read ``.md``/``.txt``/``.rst``/``.ipynb`` folders; the two demo corpora;
- :mod:`.chunking`: fixed-size with overlap, sentence, paragraph and heading-aware chunks;
- :mod:`.embed`: all-MiniLM-L6-v2 embeddings (cached) and cosine / L2 / inner product;
- :mod:`.stores` and :mod:`.pgvector_store`: the exact in-memory store and PostgreSQL + pgvector;
- :mod:`.bm25`: lexical BM25; :mod:`.index`: :class:`RagIndex` with dense, BM25 and hybrid (RRF)
  search and idempotent re-indexing;
- :mod:`.evaluate`: evidence-level recall@k, precision@k, MRR, the question sets and the chapter's bench;
- :mod:`.rerank`: a second stage that re-orders the top candidates (SmolLM2 query likelihood offline,
  a cross-encoder on the hub path);
- :mod:`.scoring`: exact match and token F1 on the extracted answer, and checked citations;
- :mod:`.generate`: grounded answers with SmolLM2 (citations, "I don't know", injection guard);
- :mod:`.cli`: ``python -m genai_lab rag index|ask``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Document": "corpus", "load_corpus": "corpus", "sklearn_descr_dir": "corpus", "book_dir": "corpus",
    "Chunk": "chunking", "chunk_text": "chunking", "chunk_documents": "chunking",
    "fixed_size_chunks": "chunking", "split_sentences": "chunking",
    "Embedder": "embed", "Hit": "stores", "VectorStore": "stores", "MemoryStore": "stores",
    "PgVectorStore": "pgvector_store", "start_local_server": "pgvector_store",
    "BM25": "bm25", "RagIndex": "index", "open_index": "index", "reciprocal_rank_fusion": "index",
    "IndexingInterrupted": "index",
    "recall_at_k": "evaluate", "precision_at_k": "evaluate", "reciprocal_rank": "evaluate",
    "load_questions": "evaluate", "compare_modes": "evaluate",
    "Reranker": "rerank", "LLMReranker": "rerank", "CrossEncoderReranker": "rerank",
    "load_reranker": "rerank", "reranked_search": "rerank",
    "exact_match": "scoring", "token_f1": "scoring", "extract_answer": "scoring", "check_citation": "scoring",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
