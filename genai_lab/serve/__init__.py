"""Serving an LLM (chapter 10): an OpenAI-compatible server, a chat page, and a load test.

- :mod:`.engine` — :class:`ChatEngine`: one worker thread owns the model and decodes requests, one
  at a time or several together (batching with the KV cache); text streams out as it is generated;
- :mod:`.errors` — request limits and checks, errors in OpenAI's JSON shape;
- :mod:`.app` — :func:`create_app`: the FastAPI app (``/v1/models``, ``/v1/chat/completions`` with
  and without streaming, ``/v1/embeddings``, ``/health``, the chat page at ``/``);
- :mod:`.models` — which chat model to load by name, and a tiny one for tests;
- :mod:`.runner` — :class:`ServerThread`: uvicorn in a background thread on a free port;
- :mod:`.loadtest` — concurrent streaming clients against any OpenAI-compatible endpoint: time to
  first token and tokens/s at p50/p95, throughput, errors;
- :mod:`.experiments` — the measured experiments (load sweep, batching, float32 vs bfloat16) and the
  ``serving`` bench entry;
- :mod:`.rag_model` — :class:`RagModel`: chapter 9's RAG pipeline served as the model ``genai-lab-rag``
  (retrieval, grounded prompt, the engine's answer with a checked ``[n]`` citation, its sources);
- :mod:`.shipping` — the release gate (the RAG question set through the HTTP API), latency metrics
  from the request log, and the cost per million tokens;
- :mod:`.langchain_rag` — chapter 9's RAG rebuilt from LangChain parts (PGVector, HuggingFaceEmbeddings,
  ChatOpenAI pointed at this server), scored like the hand-built pipeline;
- :mod:`.cli` — ``python -m genai_lab serve``.

Names are imported on first use, so ``import genai_lab.serve`` needs neither torch nor FastAPI.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ChatEngine": ".engine", "Generation": ".engine", "QueueFullError": ".engine",
    "APIError": ".errors", "Limits": ".errors",
    "create_app": ".app", "Embeddings": ".app",
    "load_chat_engine": ".models", "load_chat_model": ".models", "tiny_chat_model": ".models",
    "ServerThread": ".runner",
    "run_load": ".loadtest", "load_sweep": ".loadtest", "LoadResult": ".loadtest",
    "RagModel": ".rag_model", "sklearn_rag_model": ".rag_model", "RAG_MODEL_ID": ".rag_model",
    "ReleaseGate": ".shipping", "evaluate_served_rag": ".shipping", "latency_summary": ".shipping",
    "cost_per_million_tokens": ".shipping",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
