"""Evaluating retrieval: recall@k and MRR over a question set with gold sources.

For one question with gold sources G and a ranked list of retrieved chunk sources r_1, r_2, …:

- recall@k = |G ∩ {r_1..r_k}| / |G| (did the right file make it into the top k?);
- reciprocal rank = 1 / (rank of the first r_i in G), 0 when none is; MRR is its mean.

A gold source matches a retrieved one when it equals it or is its trailing path
(``"iris.rst"`` matches ``"/…/descr/iris.rst"``), or, when it is a pattern, matches the file name
(``"09_rag*.ipynb"``).  The question sets live in
``genai_lab/rag/data/*.json``.

The chapter's bench (``python -m genai_lab bench --chapter rag``) indexes the scikit-learn corpus
in memory and reports recall@5 and MRR of BM25, dense and hybrid retrieval; the bar is hybrid
recall@5 ≥ 0.85 at the smoke profile.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
from pathlib import Path
from typing import Sequence

from ..bench import Metric, register

DATA_DIR = Path(__file__).with_name("data")
QUESTION_SETS = {"sklearn": "sklearn_questions.json", "book": "book_questions.json"}


def _source_matches(retrieved: str, gold: str) -> bool:
    if any(ch in gold for ch in "*?["):  # a pattern such as "09_rag*.ipynb" matches the file name
        return fnmatch.fnmatchcase(retrieved.rsplit("/", 1)[-1], gold)
    return retrieved == gold or retrieved.endswith("/" + gold.lstrip("/"))


def _check_lists(retrieved, gold) -> None:
    if isinstance(retrieved, str) or not isinstance(retrieved, Sequence):
        raise TypeError("retrieved must be a list of sources (str), best first")
    if isinstance(gold, str) or not isinstance(gold, (Sequence, set, frozenset)):
        raise TypeError("gold must be a list or set of sources (str)")
    if not gold:
        raise ValueError("gold must name at least one source")


def recall_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """Fraction of the ``gold`` sources found among the first ``k`` ``retrieved`` sources."""
    _check_lists(retrieved, gold)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    top = retrieved[:k]
    found = sum(any(_source_matches(r, g) for r in top) for g in set(gold))
    return found / len(set(gold))


def reciprocal_rank(retrieved: Sequence[str], gold: Sequence[str]) -> float:
    """``1 / rank`` of the first retrieved source that is gold (ranks from 1); 0 if none is."""
    _check_lists(retrieved, gold)
    for rank, r in enumerate(retrieved, start=1):
        if any(_source_matches(r, g) for g in gold):
            return 1.0 / rank
    return 0.0


def mean_reciprocal_rank(runs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> float:
    """Mean of :func:`reciprocal_rank` over ``[(retrieved, gold), …]``."""
    if not runs:
        raise ValueError("runs must not be empty")
    return sum(reciprocal_rank(r, g) for r, g in runs) / len(runs)


def load_questions(name: str = "sklearn") -> dict:
    """A question set: ``{"questions": [{"question", "sources", "answer"?}, …], "unanswerable": […]}``."""
    if name not in QUESTION_SETS:
        raise ValueError(f"name must be one of {sorted(QUESTION_SETS)}, got {name!r}")
    return json.loads((DATA_DIR / QUESTION_SETS[name]).read_text(encoding="utf-8"))


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def evidence_found(chunk_text: str, evidence: str) -> bool:
    """True when ``evidence`` occurs in ``chunk_text`` (case and whitespace ignored)."""
    return _normalise(evidence) in _normalise(chunk_text)


def evaluate_retrieval(search, questions: Sequence[dict], *, ks: Sequence[int] = (1, 3, 5),
                       depth: int = 10, level: str = "source") -> dict[str, float]:
    """Mean recall@k for each k in ``ks`` and MRR (over the top ``depth``) of ``search``.

    Args:
        search: ``search(question, k) -> list[Hit]`` (e.g. ``lambda q, k: index.search(q, k, "bm25")``).
        questions: dicts with ``"question"`` and ``"sources"`` (and ``"evidence"`` for
            ``level="evidence"``).
        level: ``"source"``: a hit is relevant when it comes from a gold file; ``"evidence"``:
            it must also contain the question's evidence passage (stricter: it measures whether
            the *chunk* holds the answer, which is what chunking changes).
    Returns:
        ``{"recall@1": …, "recall@3": …, "recall@5": …, "mrr": …}``.
    """
    if not callable(search):
        raise TypeError("search must be callable as search(question, k)")
    if not questions:
        raise ValueError("questions must not be empty")
    if level not in ("source", "evidence"):
        raise ValueError(f"level must be 'source' or 'evidence', got {level!r}")
    depth = max(depth, *ks)
    totals = {f"recall@{k}": 0.0 for k in ks}
    rr = 0.0
    for q in questions:
        if "question" not in q or "sources" not in q or (level == "evidence" and "evidence" not in q):
            raise ValueError("questions must be dicts with 'question', 'sources' (and 'evidence')")
        hits = search(q["question"], depth)
        retrieved = [h.chunk.source for h in hits]
        if level == "evidence":  # one relevant "source" per useful chunk: mark the others as misses
            retrieved = [r if evidence_found(h.chunk.text, q["evidence"]) else "" for r, h in zip(retrieved, hits)]
        for k in ks:
            totals[f"recall@{k}"] += recall_at_k(retrieved, q["sources"], k)
        rr += reciprocal_rank(retrieved, q["sources"])
    out = {key: v / len(questions) for key, v in totals.items()}
    out["mrr"] = rr / len(questions)
    return out


def compare_modes(index, questions: Sequence[dict], *, modes: Sequence[str] = ("bm25", "dense", "hybrid"),
                  ks: Sequence[int] = (1, 3, 5), level: str = "source") -> dict[str, dict[str, float]]:
    """``{mode: evaluate_retrieval(...)}`` for each retrieval mode of a :class:`RagIndex`."""
    return {mode: evaluate_retrieval(lambda q, k, m=mode: index.search(q, k, m), questions, ks=ks, level=level)
            for mode in modes}


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per mode, one column per metric."""
    cols = list(next(iter(results.values())).keys())
    lines = [f"{'retriever':10s} " + " ".join(f"{c:>9s}" for c in cols)]
    for mode, row in results.items():
        lines.append(f"{mode:10s} " + " ".join(f"{row[c]:9.3f}" for c in cols))
    return "\n".join(lines)


def sklearn_index(cfg=None, *, strategy: str = "heading", chunk_size: int = 500, overlap: int = 100, embedder=None):
    """An in-memory :class:`RagIndex` over the scikit-learn dataset descriptions (embeddings cached)."""
    from .corpus import sklearn_descr_dir
    from .index import RagIndex
    from .stores import MemoryStore

    index = RagIndex(MemoryStore(), embedder, strategy=strategy, chunk_size=chunk_size, overlap=overlap)
    index.update([sklearn_descr_dir()])
    return index


def synthetic_corpus(folder: str | Path, n_files: int, *, seed: int = 0) -> Path:
    """Write ``n_files`` seeded text files of paragraphs of varied length into ``folder``.

    A stand-in for "a large folder of notes" when measuring indexing speed or interrupting it:
    the same ``seed`` always writes the same bytes. Returns ``folder``.
    """
    import random

    if isinstance(n_files, bool) or not isinstance(n_files, int) or n_files < 1:
        raise ValueError(f"n_files must be a positive int, got {n_files!r}")
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(n_files):
        paragraphs = [" ".join(rng.choice(vocab) for _ in range(rng.choice((8, 20, 40, 70, 90)))).capitalize() + "."
                      for _ in range(rng.randint(3, 12))]
        (folder / f"doc{f:04d}.txt").write_text(f"# Document {f}\n\n" + "\n\n".join(paragraphs) + "\n")
    return folder


def indexing_throughput(folder: str | Path, embedder=None) -> dict:
    """Index ``folder`` into a fresh in-memory store with no embedding cache; chunks per second.

    Returns ``{"chunks", "seconds", "chunks_per_s"}`` (the model is loaded before the clock starts).
    """
    from .embed import Embedder
    from .index import RagIndex
    from .stores import MemoryStore

    model = embedder.model if embedder is not None else None
    fresh = Embedder(model, cache_path=False, **({"name": embedder.name} if embedder is not None else {}))
    index = RagIndex(MemoryStore(), fresh)  # loads the model (and reads its dimension) before timing
    report = index.update(folder)
    return {"chunks": report.chunks, "seconds": report.seconds, "chunks_per_s": report.chunks / report.seconds}


def answer_accuracy(index, questions: Sequence[dict], tokenizer, model, *, closed_book: bool = False,
                    k: int = 3, max_new_tokens: int = 40) -> float:
    """Fraction of questions whose generated answer contains the expected ``answer`` string.

    ``closed_book=True`` asks the model without any context (what it "knows"); otherwise it
    answers from the top-``k`` hybrid chunks with :func:`~genai_lab.rag.generate.answer_question`.
    """
    from .generate import answer_question, closed_book_answer

    asked = [q for q in questions if q.get("answer")]
    if not asked:
        raise ValueError("questions must contain at least one question with an 'answer'")
    correct = 0
    for q in asked:
        if closed_book:
            text = closed_book_answer(q["question"], tokenizer, model, max_new_tokens=max_new_tokens)
        else:
            text = answer_question(index, q["question"], tokenizer, model, k=k, max_new_tokens=max_new_tokens).text
        correct += _normalise(q["answer"]) in _normalise(text)
    return correct / len(asked)


@register("rag", "RAG on the scikit-learn dataset descriptions: BM25 vs dense vs hybrid, grounded vs closed-book")
def bench_rag(cfg) -> list[Metric]:
    """Retrieval (recall@5, MRR per mode) and answer accuracy of SmolLM2 with and without retrieval."""
    start = time.perf_counter()
    index = sklearn_index(cfg)
    questions = load_questions("sklearn")["questions"]
    results = compare_modes(index, questions, ks=(5,))
    evidence = compare_modes(index, questions, ks=(5,), modes=("hybrid",), level="evidence")["hybrid"]
    metrics = []
    for mode in ("bm25", "dense", "hybrid"):
        bar = cfg.pick(smoke=0.85, cpu=None, gpu=None) if mode == "hybrid" else None
        metrics.append(Metric(f"{mode}_recall@5", results[mode]["recall@5"], True, bar))
        metrics.append(Metric(f"{mode}_mrr", results[mode]["mrr"], True, None))
    metrics.append(Metric("hybrid_evidence_recall@5", evidence["recall@5"], True, None))
    retrieval_seconds = time.perf_counter() - start
    metrics.append(Metric("index_and_retrieval_seconds", retrieval_seconds, False, None, unit="s"))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # embedding speed, no cache: what a new folder costs
        speed = indexing_throughput(synthetic_corpus(tmp, cfg.pick(smoke=6, cpu=40, gpu=200)), index.embedder)
    metrics.append(Metric("index_chunks_per_s", speed["chunks_per_s"], True, None, unit="chunks/s"))

    from .generate import load_reader

    tok, model, _ = load_reader(cfg)
    answerable = [q for q in questions if q.get("answer")]
    answerable = answerable[:cfg.pick(smoke=4, cpu=len(answerable), gpu=len(answerable))]
    grounded = answer_accuracy(index, answerable, tok, model)
    closed = answer_accuracy(index, answerable, tok, model, closed_book=True)
    metrics.append(Metric("grounded_answer_accuracy", grounded, True, None))
    metrics.append(Metric("closed_book_answer_accuracy", closed, True, None))
    metrics.append(Metric("answer_questions", len(answerable), True, None))
    return metrics
