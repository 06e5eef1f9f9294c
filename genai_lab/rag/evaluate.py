"""Evaluating retrieval: recall@k, precision@k and MRR over a question set with gold evidence.

One definition of **recall@k**, used by the chapter, the bench and the lab: for one question with
gold items G and a ranked list of retrieved chunks r_1, r_2, …,

- recall@k = |{g ∈ G found among r_1..r_k}| / |G|, and over a question set, its mean;
- precision@k = (relevant chunks among r_1..r_k) / k;
- reciprocal rank = 1 / (rank of the first relevant r_i), 0 when none is; MRR is its mean.

The gold item of a question is its **evidence**: a short passage of its gold file that a useful
chunk must contain (``level="evidence"``, the default). A chunk is relevant when it comes from the
gold file *and* contains the evidence. Each question has exactly one evidence passage, so recall@k
is the fraction of questions whose evidence chunk is among the top k. The looser
``level="source"`` counts any chunk of the right file; on fourteen files on distinct topics every
retriever saturates it, which is why it is not the bench bar.

A gold source matches a retrieved one when it equals it or is its trailing path
(``"iris.rst"`` matches ``"/…/descr/iris.rst"``), or, when it is a pattern, matches the file name
(``"09_rag*.ipynb"``).  The question sets live in ``genai_lab/rag/data/*.json``; ``"ja"`` is a
Japanese set over the project's Japanese corpus (:func:`japanese_index`), scored the same way.

The chapter's bench (``python -m genai_lab bench --chapter rag``) indexes the scikit-learn corpus
in memory and reports evidence recall@k and MRR of BM25, dense and hybrid retrieval; the bar is
hybrid ``evidence_recall@5`` ≥ 0.85 at every profile. It also reports the gain of reranking hybrid's
top 5 (:mod:`.rerank`) in evidence recall@3 and MRR, and the same retrievers on the Japanese
corpus (``ja_*`` metrics: BM25 on character bigrams, the English-trained MiniLM, hybrid, and the
multilingual embedder where the hub path has it). Answers are scored by exact match on the
extracted answer (:mod:`.scoring`), not by substring.
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
QUESTION_SETS = {"sklearn": "sklearn_questions.json", "book": "book_questions.json", "ja": "ja_questions.json"}


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
    """Fraction of the ``gold`` items found among the first ``k`` ``retrieved`` items (one question).

    ``retrieved``: what each ranked result is (best first; ``""`` for a result that is not relevant).
    Over a question set, recall@k is the mean of this; with one gold item per question, that is the
    fraction of questions whose gold item is in the top ``k``.
    """
    _check_lists(retrieved, gold)
    _check_k(k)
    top = retrieved[:k]
    found = sum(any(_source_matches(r, g) for r in top) for g in set(gold))
    return found / len(set(gold))


def precision_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """Fraction of the first ``k`` ranks that hold a relevant result (a missing rank counts as not)."""
    _check_lists(retrieved, gold)
    _check_k(k)
    return sum(any(_source_matches(r, g) for g in gold) for r in retrieved[:k]) / k


def _check_k(k) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")


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
    """A question set: ``{"questions": [{"question", "sources", "evidence", "answer"?}, …], "unanswerable": […]}``.

    ``answer`` (when present) is the short gold answer, or a list of accepted forms of it.
    """
    if name not in QUESTION_SETS:
        raise ValueError(f"name must be one of {sorted(QUESTION_SETS)}, got {name!r}")
    return json.loads((DATA_DIR / QUESTION_SETS[name]).read_text(encoding="utf-8"))


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def evidence_found(chunk_text: str, evidence: str) -> bool:
    """True when ``evidence`` occurs in ``chunk_text`` (case and whitespace ignored)."""
    return _normalise(evidence) in _normalise(chunk_text)


LEVELS = ("evidence", "source")


def relevance_labels(hits, question: dict, level: str = "evidence") -> list[str]:
    """What each hit counts as for ``question``: its source when relevant at ``level``, else ``""``.

    At ``"evidence"`` level a hit is relevant when its chunk contains ``question["evidence"]``
    (its source must still be gold, which :func:`recall_at_k` checks); at ``"source"`` level every
    hit keeps its source. Feed the result to :func:`recall_at_k` with ``question["sources"]``.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if not isinstance(question, dict) or "sources" not in question \
            or (level == "evidence" and "evidence" not in question):
        raise ValueError("question must be a dict with 'sources' (and 'evidence' at evidence level)")
    if level == "source":
        return [h.chunk.source for h in hits]
    return [h.chunk.source if evidence_found(h.chunk.text, question["evidence"]) else "" for h in hits]


def evaluate_retrieval(search, questions: Sequence[dict], *, ks: Sequence[int] = (1, 3, 5),
                       depth: int = 10, level: str = "evidence") -> dict[str, float]:
    """Mean recall@k for each k in ``ks`` and MRR (over the top ``depth``) of ``search``.

    Args:
        search: ``search(question, k) -> list[Hit]`` (e.g. ``lambda q, k: index.search(q, k, "bm25")``).
        questions: dicts with ``"question"``, ``"sources"`` and ``"evidence"`` (not needed for
            ``level="source"``).
        level: ``"evidence"``: a hit is relevant when it comes from a gold file and contains the
            question's evidence passage (it measures whether the *chunk* holds the answer, which is
            what chunking changes); ``"source"``: any chunk of a gold file counts.
    Returns:
        ``{"recall@1": …, "recall@3": …, "recall@5": …, "mrr": …}``.
    """
    if not callable(search):
        raise TypeError("search must be callable as search(question, k)")
    if not questions:
        raise ValueError("questions must not be empty")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    depth = max(depth, *ks)
    totals = {f"recall@{k}": 0.0 for k in ks}
    rr = 0.0
    for q in questions:
        if not isinstance(q, dict) or "question" not in q:
            raise ValueError("questions must be dicts with 'question', 'sources' (and 'evidence')")
        retrieved = relevance_labels(search(q["question"], depth), q, level)
        for k in ks:
            totals[f"recall@{k}"] += recall_at_k(retrieved, q["sources"], k)
        rr += reciprocal_rank(retrieved, q["sources"])
    out = {key: v / len(questions) for key, v in totals.items()}
    out["mrr"] = rr / len(questions)
    return out


def compare_modes(index, questions: Sequence[dict], *, modes: Sequence[str] = ("bm25", "dense", "hybrid"),
                  ks: Sequence[int] = (1, 3, 5), level: str = "evidence") -> dict[str, dict[str, float]]:
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


#: How the Japanese corpus is chunked: heading chunks (each starts with its document's title) of at
#: most 120 characters, about two per document, cut at 。！？ (see :mod:`.chunking`).
JAPANESE_CHUNKING = {"strategy": "heading", "chunk_size": 120, "overlap": 20}


def japanese_index(embedder=None, *, strategy: str = JAPANESE_CHUNKING["strategy"],
                   chunk_size: int = JAPANESE_CHUNKING["chunk_size"], overlap: int = JAPANESE_CHUNKING["overlap"]):
    """An in-memory :class:`RagIndex` over :func:`~genai_lab.rag.corpus.japanese_corpus`.

    ``embedder``: an :class:`~genai_lab.rag.embed.Embedder` (default: all-MiniLM-L6-v2, trained on
    English; pass :func:`~genai_lab.rag.embed.multilingual_embedder` on the hub path). BM25 needs
    no embedder: it tokenizes Japanese into overlapping character bigrams (:mod:`.bm25`).
    """
    from .corpus import japanese_corpus
    from .index import RagIndex
    from .stores import MemoryStore

    index = RagIndex(MemoryStore(), embedder, strategy=strategy, chunk_size=chunk_size, overlap=overlap)
    index.add_documents(japanese_corpus())
    return index


def japanese_metrics(results: dict[str, dict[str, float]], prefix: str = "ja_") -> list[Metric]:
    """Bench metrics ``{prefix}{mode}_recall@k`` and ``{prefix}{mode}_mrr`` from :func:`compare_modes`."""
    return [Metric(f"{prefix}{mode}_{key}", value, True, None)
            for mode, row in results.items() for key, value in row.items()]


def bench_japanese(cfg, embedder=None) -> list[Metric]:
    """The rag bench's Japanese figures: ``ja_{bm25,dense,hybrid}_{recall@1,recall@5,mrr}`` and ``ja_questions``.

    ``embedder`` is the dense retriever's (default all-MiniLM-L6-v2). On the hub path (``gpu``
    profile, model cached or hub reachable) the multilingual embedder adds
    ``ja_multilingual_{dense,hybrid}_*``; elsewhere those are left out, not faked.
    """
    from .embed import multilingual_embedder

    questions = load_questions("ja")["questions"]
    metrics = japanese_metrics(compare_modes(japanese_index(embedder), questions, ks=(1, 5)))
    metrics.append(Metric("ja_questions", len(questions), True, None))
    multi = multilingual_embedder(cfg) if cfg.profile == "gpu" else None  # hub path only (a 470 MB model)
    if multi is not None:
        multi_results = compare_modes(japanese_index(multi), questions, modes=("dense", "hybrid"), ks=(1, 5))
        metrics.extend(japanese_metrics(multi_results, prefix="ja_multilingual_"))
    return metrics


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


def score_answers(index, questions: Sequence[dict], tokenizer, model, *, k: int = 3,
                  max_new_tokens: int = 40, progress: bool = False) -> list[dict]:
    """Ask every question that has an ``answer`` closed-book and grounded, and score both replies.

    Grounded replies come from :func:`~genai_lab.rag.generate.answer_question` (top-``k`` hybrid
    chunks). Scores (:mod:`.scoring`): exact match (``em``) and token F1 (``f1``) of the extracted
    answer, the old substring verdict (``contains``), and for the grounded reply the check of its
    citation against the passages it was given (``citation``, a :class:`~.scoring.CitationCheck`:
    valid when a cited passage contains the expected answer). ``progress`` shows a bar (one step
    per question).

    Returns:
        one dict per question: ``question``, ``gold``, and ``closed``/``grounded`` dicts with
        ``reply``, ``answer``, ``em``, ``f1``, ``contains``; ``grounded`` also has ``citation``,
        ``self_cited`` (the model wrote the marker itself rather than :func:`~.generate.cite_passage`
        measuring it) and ``passages`` (the texts it was given, ``[1]`` first).
    """
    from tqdm.auto import tqdm

    from .generate import answer_question, closed_book_answer
    from .scoring import check_citation, exact_match, extract_answer, substring_match, token_f1

    asked = [q for q in questions if q.get("answer")]
    if not asked:
        raise ValueError("questions must contain at least one question with an 'answer'")

    def scored(reply: str, gold, question: str) -> dict:
        answer = extract_answer(reply, gold, question)
        return {"reply": reply, "answer": answer, "em": exact_match(answer, gold), "f1": token_f1(answer, gold),
                "contains": substring_match(reply, gold)}

    rows = []
    for q in tqdm(asked, desc="answering", disable=not progress):
        closed = closed_book_answer(q["question"], tokenizer, model, max_new_tokens=max_new_tokens)
        grounded = answer_question(index, q["question"], tokenizer, model, k=k, max_new_tokens=max_new_tokens)
        row = {"question": q["question"], "gold": q["answer"], "closed": scored(closed, q["answer"], q["question"]),
               "grounded": scored(grounded.text, q["answer"], q["question"])}
        row["grounded"]["citation"] = check_citation(grounded.text, grounded.passages, q["answer"])
        row["grounded"]["self_cited"] = grounded.self_cited
        row["grounded"]["passages"] = grounded.passages
        rows.append(row)
    return rows


def summarize_answers(rows: Sequence[dict]) -> dict[str, float]:
    """Means over :func:`score_answers` rows: ``{closed,grounded}_{em,f1,contains}`` and ``citation_valid``."""
    if not rows:
        raise ValueError("rows must not be empty")
    out = {f"{setting}_{key}": sum(float(r[setting][key]) for r in rows) / len(rows)
           for setting in ("closed", "grounded") for key in ("em", "f1", "contains")}
    out["citation_valid"] = sum(r["grounded"]["citation"].valid for r in rows) / len(rows)
    return out


@register("rag", "RAG on the scikit-learn dataset descriptions: BM25 vs dense vs hybrid, grounded vs closed-book")
def bench_rag(cfg) -> list[Metric]:
    """Evidence recall@k and MRR per retriever, and exact-match answers of SmolLM2 with and without retrieval."""
    start = time.perf_counter()
    index = sklearn_index(cfg)
    questions = load_questions("sklearn")["questions"]
    evidence = compare_modes(index, questions, ks=(1, 5))
    source = compare_modes(index, questions, ks=(5,), level="source")
    metrics = [Metric("evidence_recall@5", evidence["hybrid"]["recall@5"], True,
                      cfg.pick(smoke=0.85, cpu=0.85, gpu=0.85))]
    for mode in ("bm25", "dense", "hybrid"):
        metrics.append(Metric(f"{mode}_evidence_recall@1", evidence[mode]["recall@1"], True, None))
        metrics.append(Metric(f"{mode}_evidence_recall@5", evidence[mode]["recall@5"], True, None))
        metrics.append(Metric(f"{mode}_evidence_mrr", evidence[mode]["mrr"], True, None))
        metrics.append(Metric(f"{mode}_source_recall@5", source[mode]["recall@5"], True, None))
    retrieval_seconds = time.perf_counter() - start
    metrics.append(Metric("index_and_retrieval_seconds", retrieval_seconds, False, None, unit="s"))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # embedding speed, no cache: what a new folder costs
        speed = indexing_throughput(synthetic_corpus(tmp, cfg.pick(smoke=6, cpu=40, gpu=200)), index.embedder)
    metrics.append(Metric("index_chunks_per_s", speed["chunks_per_s"], True, None, unit="chunks/s"))

    metrics.extend(bench_japanese(cfg, index.embedder))  # Japanese: the same retrievers, same definitions

    from .generate import load_reader

    tok, model, _ = load_reader(cfg)
    answerable = [q for q in questions if q.get("answer")]
    answerable = answerable[:cfg.pick(smoke=4, cpu=len(answerable), gpu=len(answerable))]
    scores = summarize_answers(score_answers(index, answerable, tok, model))
    metrics.append(Metric("grounded_exact_match", scores["grounded_em"], True, None))
    metrics.append(Metric("closed_book_exact_match", scores["closed_em"], True, None))
    metrics.append(Metric("grounded_token_f1", scores["grounded_f1"], True, None))
    metrics.append(Metric("closed_book_token_f1", scores["closed_f1"], True, None))
    metrics.append(Metric("grounded_citation_valid", scores["citation_valid"], True, None))
    metrics.append(Metric("answer_questions", len(answerable), True, None))

    from .rerank import load_reranker, reranked_search

    reranker = load_reranker(cfg, tok, model)  # SmolLM2 query likelihood; the cross-encoder on gpu + hub
    subset = questions[:cfg.pick(smoke=8, cpu=len(questions), gpu=len(questions))]
    before = evaluate_retrieval(lambda q, k: index.search(q, k), subset, ks=(1, 3), depth=5)
    after = evaluate_retrieval(reranked_search(index, reranker, candidates=5), subset, ks=(1, 3), depth=5)
    metrics.append(Metric("reranked_evidence_recall@3", after["recall@3"], True, None))
    metrics.append(Metric("reranked_evidence_mrr", after["mrr"], True, None))
    metrics.append(Metric("rerank_mrr_gain", after["mrr"] - before["mrr"], True, None))
    metrics.append(Metric("rerank_recall@3_gain", after["recall@3"] - before["recall@3"], True, None))
    metrics.append(Metric("rerank_questions", len(subset), True, None))
    return metrics
