"""The chapter-9 RAG rebuilt from LangChain parts, with this chapter's server as its chat model.

Which part maps to which::

    hand-built (genai_lab.rag)                 LangChain
    ─────────────────────────────────────────  ─────────────────────────────────────────────────
    chunk_documents(..., "heading", 500)       the same chunks, as langchain_core Documents
    Embedder (all-MiniLM-L6-v2, unit vectors)  langchain_huggingface.HuggingFaceEmbeddings (same folder)
    PgVectorStore / MemoryStore (cosine)       langchain_postgres.PGVector (cosine, same PostgreSQL)
    RagIndex.dense_search(question, k)         vectorstore.similarity_search_with_score / as_retriever
    build_messages(question, hits)             ChatPromptTemplate with the same rules and numbered passages
    generate_reply(SmolLM2 in this process)    langchain_openai.ChatOpenAI(base_url=<this server>/v1)

The chain is LangChain's expression language (``retriever | format | prompt | llm | parser``);
the model runs in the server, reached over HTTP through the official ``openai`` client inside
``ChatOpenAI``.  LangChain is imported only when these functions run.
"""

from __future__ import annotations

from typing import Sequence


def _require_langchain():
    try:
        import langchain_core  # noqa: F401
        import langchain_huggingface  # noqa: F401
        import langchain_openai  # noqa: F401
        import langchain_postgres  # noqa: F401
    except ImportError as exc:  # pragma: no cover - they are in requirements.txt
        raise ImportError("the LangChain RAG needs `pip install langchain-core langchain-postgres "
                          "langchain-huggingface langchain-openai` (pinned in requirements.txt)") from exc


def sqlalchemy_url(dsn: str) -> str:
    """A PostgreSQL DSN as the SQLAlchemy URL PGVector takes (driver psycopg 3):
    ``postgresql://…`` → ``postgresql+psycopg://…``."""
    if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise ValueError(f"dsn must be a PostgreSQL URL such as 'postgresql://user@host/db', got {dsn!r}")
    if dsn.startswith("postgresql+psycopg://"):
        return dsn
    return "postgresql+psycopg://" + dsn.split("://", 1)[1]


def minilm_embeddings(device: str = "cpu"):
    """``HuggingFaceEmbeddings`` on the local all-MiniLM-L6-v2 folder (offline), unit-length vectors
    like :class:`genai_lab.rag.embed.Embedder`."""
    _require_langchain()
    from langchain_huggingface import HuggingFaceEmbeddings

    from ..models import minilm_path

    return HuggingFaceEmbeddings(model_name=str(minilm_path()), model_kwargs={"device": device},
                                 encode_kwargs={"normalize_embeddings": True})


def chunks_to_documents(chunks) -> list:
    """The book's :class:`~genai_lab.rag.chunking.Chunk` objects as LangChain ``Document``s
    (``metadata``: ``source`` and ``index``)."""
    _require_langchain()
    from langchain_core.documents import Document

    chunks = list(chunks)
    if not chunks or not all(hasattr(c, "source") and hasattr(c, "index") and hasattr(c, "text") for c in chunks):
        raise ValueError("chunks must be a non-empty list of genai_lab.rag Chunk objects")
    return [Document(page_content=c.text, metadata={"source": c.source, "index": c.index}) for c in chunks]


def build_vectorstore(dsn: str, chunks, embeddings=None, *, collection: str = "chapter10"):
    """A fresh ``PGVector`` collection (cosine distance) in the PostgreSQL at ``dsn`` holding ``chunks``."""
    _require_langchain()
    import logging
    import warnings

    from langchain_postgres import PGVector
    from langchain_postgres.vectorstores import DistanceStrategy

    if not isinstance(collection, str) or not collection:
        raise ValueError(f"collection must be a non-empty str, got {collection!r}")
    docs = chunks_to_documents(chunks)
    embeddings = embeddings if embeddings is not None else minilm_embeddings()
    quiet = logging.getLogger("genai_lab.serve.langchain")  # PGVector logs "Collection not found" on a fresh one
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings():  # PGVector warns that its v2 class exists; v1 is the documented one
        warnings.simplefilter("ignore")
        store = PGVector(embeddings=embeddings, connection=sqlalchemy_url(dsn), collection_name=collection,
                         distance_strategy=DistanceStrategy.COSINE, pre_delete_collection=True, use_jsonb=True,
                         logger=quiet)
    store.add_documents(docs, ids=[f"{d.metadata['source']}#{d.metadata['index']}" for d in docs])
    return store


def close_vectorstore(vectorstore) -> None:
    """Close the database connections of a ``PGVector`` (before its server is stopped)."""
    engine = getattr(vectorstore, "_engine", None)
    if engine is not None:
        engine.dispose()


def to_hits(results) -> list:
    """``similarity_search_with_score`` results (cosine *distance*) as the book's ``Hit``s (cosine similarity)."""
    from ..rag.chunking import Chunk
    from ..rag.stores import Hit

    return [Hit(Chunk(doc.metadata["source"], int(doc.metadata["index"]), doc.page_content), 1.0 - float(dist))
            for doc, dist in results]


def retrieval_figures(vectorstore, questions: Sequence[dict], *, ks=(1, 3, 5), level: str = "evidence") -> dict:
    """Recall@k and MRR of the LangChain vector store on ``questions``, scored exactly like
    chapter 9 (:func:`genai_lab.rag.evaluate.evaluate_retrieval`)."""
    from ..rag.evaluate import evaluate_retrieval

    return evaluate_retrieval(lambda q, k: to_hits(vectorstore.similarity_search_with_score(q, k=k)),
                              questions, ks=ks, level=level)


def chat_model(base_url: str, model: str, *, max_tokens: int = 48, temperature: float = 0.0):
    """``langchain_openai.ChatOpenAI`` pointed at an OpenAI-compatible server (this chapter's, or vLLM)."""
    _require_langchain()
    from langchain_openai import ChatOpenAI

    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http(s) URL ending in /v1, got {base_url!r}")
    return ChatOpenAI(base_url=base_url, api_key="not-needed", model=model, temperature=temperature,
                      max_tokens=max_tokens, max_retries=0, timeout=120)


def format_passages(docs) -> str:
    """Numbered passages, as chapter 9's :func:`~genai_lab.rag.generate.format_context` writes them."""
    from ..rag.generate import format_context

    return format_context(to_hits([(d, 0.0) for d in docs]))


def rag_chain(vectorstore, llm, *, k: int = 3):
    """``question -> {"answer", "sources"}``: retrieve ``k`` chunks, prompt with chapter 9's rules, ask ``llm``."""
    _require_langchain()
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

    from ..rag.generate import RULES

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    prompt = ChatPromptTemplate.from_messages([
        ("system", RULES.replace("{", "{{").replace("}", "}}")),
        ("human", "Context:\n<context>\n{context}\n</context>\n\nQuestion: {question}")])
    retriever = vectorstore.as_retriever(search_kwargs={"k": k})
    answer = ({"context": lambda x: format_passages(x["docs"]), "question": lambda x: x["question"]}
              | prompt | llm | StrOutputParser())
    return (RunnableParallel(docs=retriever, question=RunnablePassthrough())
            | RunnableParallel(answer=answer,
                               sources=RunnableLambda(lambda x: [f"{d.metadata['source'].rsplit('/', 1)[-1]}"
                                                                 f"#{d.metadata['index']}" for d in x["docs"]])))


def compare_with_hand_built(cfg=None, *, ks=(1, 3, 5)) -> dict:
    """Chapter 9's hand-built dense retriever and the LangChain rebuild on the same question set:
    ``{"hand-built": figures, "LangChain": figures, "gap": largest absolute difference}``.

    Starts a local PostgreSQL + pgvector in a temporary folder and stops it before returning.
    """
    import tempfile
    from pathlib import Path

    from ..rag import evaluate
    from ..rag.pgvector_store import start_local_server, stop_local_server

    questions = evaluate.load_questions("sklearn")["questions"]
    index = evaluate.sklearn_index(cfg)
    hand = evaluate.compare_modes(index, questions, modes=("dense",), ks=ks)["dense"]
    with tempfile.TemporaryDirectory() as tmp:
        server, dsn = start_local_server(Path(tmp) / "pgdata")
        try:
            store = build_vectorstore(dsn, index.store.chunks())
            try:
                lc = retrieval_figures(store, questions, ks=ks)
            finally:
                close_vectorstore(store)
        finally:
            stop_local_server(server)
    return {"hand-built": hand, "LangChain": lc, "gap": max(abs(lc[k] - hand[k]) for k in hand)}
