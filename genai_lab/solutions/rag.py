"""Reference solutions of `labs/09_rag_lab.ipynb`: Lab 9: the core pieces of retrieval.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.rag`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

import torch


def chunk_with_overlap(text: str, size: int, overlap: int) -> list[str]:
    """Split ``text`` into windows of ``size`` characters that overlap by ``overlap`` characters."""
    step = size - overlap
    chunks = []
    start = 0
    while start < len(text):
        chunks.append(text[start:start + size])
        if start + size >= len(text):
            break
        start += step
    return chunks


def cosine_top_k(query: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (k,) and cosine similarities (k,) of the ``k`` rows most similar to ``query``."""
    q = query / query.norm()
    x = rows / rows.norm(dim=1, keepdim=True)
    scores = x @ q
    top = torch.topk(scores, k)
    return top.indices, top.values


def recall_at_k(retrieved: list[str], gold: list[str], k: int) -> float:
    """Fraction of ``gold`` found in ``retrieved[:k]``."""
    top = set(retrieved[:k])
    gold = set(gold)
    return len(gold & top) / len(gold)


def mean_reciprocal_rank(runs: list[tuple[list[str], list[str]]]) -> float:
    """Mean over ``(retrieved, gold)`` pairs of 1 / rank of the first gold source (0 if none)."""
    total = 0.0
    for retrieved, gold in runs:
        for rank, source in enumerate(retrieved, start=1):
            if source in gold:
                total += 1.0 / rank
                break
    return total / len(runs)


def reciprocal_rank_fusion(rankings: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Fuse ranked lists with RRF; returns (item, score) pairs, best first."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def grounded_prompt(question: str, passages: list[str], similarities: list[float],
                    min_similarity: float = 0.4) -> str | None:
    """The user message of a grounded answer, or ``None`` to abstain ("I don't know")."""
    if not passages or max(similarities) < min_similarity:
        return None
    blocks = [f"[{i}] {passage}" for i, passage in enumerate(passages, start=1)]
    return "Context:\n" + "\n\n".join(blocks) + "\n\nQuestion: " + question
