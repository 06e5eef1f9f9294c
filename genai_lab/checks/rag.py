"""Checks for the RAG lab: a chunker with overlap, cosine top-k, recall@k / MRR, RRF and a grounded
prompt that abstains.

Each check compares the learner's function with a reference on fixed inputs: the package's own
tested code (:mod:`genai_lab.rag`), PyTorch (``cosine_similarity`` + ``topk``), or, for the prompt,
the format the lab specifies (:func:`reference_grounded_prompt`).
"""

from __future__ import annotations

from typing import Callable

from . import CheckResult, Exercise, check_function, describe_difference, expect, run_check

_TEXT = ("Retrieval-augmented generation looks up documents first. "
         "Then the model answers with them in its prompt. ") * 3


def check_chunker(fn: Callable) -> CheckResult:
    """``fn(text, size, overlap) -> list[str]``: windows of ``size`` characters stepping ``size - overlap``."""
    from ..rag.chunking import fixed_size_chunks

    cases = [((text, size, overlap), {}, fixed_size_chunks(text, size, overlap))
             for text, size, overlap in [("abcdefghij", 4, 1), ("abcdefghij", 5, 0), ("abcdefghij", 20, 5),
                                         ("", 3, 1), (_TEXT, 60, 15), ("今日は晴れです。明日は雨でしょう！", 6, 2)]]
    return check_function(fn, cases, name="chunk_with_overlap")


def check_cosine_top_k(fn: Callable) -> CheckResult:
    """``fn(query (D,), rows (N, D), k) -> (indices (k,), scores (k,))`` vs PyTorch."""
    import torch

    g = torch.Generator().manual_seed(0)
    cases = []
    for n, d, k, scale in [(10, 4, 3, False), (50, 16, 5, True), (7, 8, 7, True)]:
        rows = torch.randn(n, d, generator=g)
        if scale:  # vectors of different lengths: cosine must ignore the length
            rows = rows * torch.rand(n, 1, generator=g) * 10
        query = torch.randn(d, generator=g)
        ref = torch.nn.functional.cosine_similarity(rows, query[None], dim=1)
        top = torch.topk(ref, k)
        cases.append(((query, rows, k), {}, (top.indices, top.values)))

    def body():
        for i, ((query, rows, k), _, (idx, vals)) in enumerate(cases, 1):
            out = fn(query, rows, k)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                return f"case {i}: return (indices, scores), got {type(out).__name__}"
            msg = (describe_difference(torch.as_tensor(out[0]).long(), idx, path="indices")
                   or describe_difference(torch.as_tensor(out[1]).float(), vals, atol=1e-5, path="scores"))
            if msg:
                dot = torch.topk(rows @ query, k)
                same_indices = torch.equal(torch.as_tensor(out[0]).long(), dot.indices)
                if same_indices and torch.allclose(torch.as_tensor(out[1]).float(), dot.values, atol=1e-4):
                    msg += " — looks like: the dot product without dividing by the vector lengths (not the cosine)"
                return f"case {i} (N={rows.shape[0]}, D={rows.shape[1]}, k={k}): {msg}"
        return None

    return run_check("cosine_top_k", body)


def check_recall_mrr(recall_fn: Callable, mrr_fn: Callable) -> CheckResult:
    """``recall_fn(retrieved, gold, k)`` and ``mrr_fn([(retrieved, gold), …])`` vs the package.

    The package's :func:`~genai_lab.rag.evaluate.recall_at_k` is the chapter's and the bench's
    recall@k (one definition): the fraction of a question's gold items in its top ``k``.
    """
    from ..rag.evaluate import mean_reciprocal_rank, recall_at_k

    runs = [(["wine", "iris", "wine", "digits"], ["iris"]),
            (["wine", "iris", "wine", "digits"], ["iris", "digits"]),
            (["lfw", "rcv1"], ["iris"]),
            (["diabetes", "iris"], ["diabetes"]),
            (["", "wine", "", "iris"], ["iris"])]  # evidence level: "" marks a chunk without the evidence

    def body():
        for retrieved, gold in runs:
            for k in (1, 2, 3, 4):
                got, want = recall_fn(retrieved, gold, k), recall_at_k(retrieved, gold, k)
                msg = describe_difference(got, want, atol=1e-9)
                if msg:
                    return f"recall_at_k({retrieved}, {gold}, k={k}): {msg}"
        for subset in (runs[:1], runs[2:3], runs):
            msg = describe_difference(mrr_fn(subset), mean_reciprocal_rank(subset), atol=1e-9)
            if msg:
                return f"mean_reciprocal_rank over {len(subset)} run(s): {msg}"
        return None

    return run_check("recall_at_k and MRR", body)


def check_rrf(fn: Callable) -> CheckResult:
    """``fn(rankings, k=60) -> [(item, score), …]`` best first, vs the package."""
    from ..rag.index import reciprocal_rank_fusion

    cases = [((rankings,), {"k": k}, [tuple(p) for p in reciprocal_rank_fusion(rankings, k=k)])
             for rankings, k in [([["a", "b", "c"], ["b", "d", "a"]], 60),
                                 ([["x", "y"], ["y", "z"], ["z", "y", "x"]], 1),
                                 ([["only"]], 60)]]

    def body():
        for i, ((rankings,), kwargs, expected) in enumerate(cases, 1):
            got = fn(rankings, **kwargs)
            got = [tuple(p) for p in got] if isinstance(got, (list, tuple)) else got
            msg = describe_difference(got, expected, atol=1e-9)
            if msg:
                return f"case {i} ({rankings}, k={kwargs['k']}): {msg}"
        return None

    return run_check("reciprocal_rank_fusion", body)


def reference_grounded_prompt(question: str, passages: list[str], similarities: list[float],
                              min_similarity: float = 0.4) -> str | None:
    """The lab's grounded prompt: ``None`` (abstain) when the best similarity is below the threshold.

    Else ``"Context:\n[1] p1\n\n[2] p2\n\nQuestion: q"``: passages numbered from 1 in rank order,
    a blank line between blocks, the question last.
    """
    if not passages or max(similarities) < min_similarity:
        return None
    numbered = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
    return f"Context:\n{numbered}\n\nQuestion: {question}"


def check_grounded_prompt(fn: Callable) -> CheckResult:
    """``fn(question, passages, similarities, min_similarity=0.4) -> str | None`` vs the lab's format."""
    q = "How many samples are in the wine dataset?"
    passages = ["Wine recognition dataset. Number of Instances: 178", "Iris plants dataset. 150 instances",
                "Optical recognition of handwritten digits"]
    cases = []
    full = reference_grounded_prompt(q, passages, [1.0])
    for sims, threshold in [([0.71, 0.42, 0.15], 0.4), ([0.35, 0.30, 0.12], 0.4), ([0.40, 0.20, 0.10], 0.4),
                            ([0.10, 0.55, 0.30], 0.4), ([0.71, 0.42, 0.15], 0.8)]:
        want = reference_grounded_prompt(q, passages, sims, threshold)
        best, first = max(sims), sims[0]
        # what each classic mistake returns on this case (``...`` where it makes no difference)
        mistakes = {
            "the passages are numbered from 0; number them [1], [2], … as the answer will cite them":
                lambda w=want: ... if w is None else w.replace("[1]", "[0]").replace("[2]", "[1]")
                .replace("[3]", "[2]"),
            "the question comes before the context; put it last, after the passages":
                lambda w=want: ... if w is None else f"Question: {q}\n\n" + w.rsplit("\n\nQuestion:", 1)[0],
            "it never abstains: return None when the best similarity is below min_similarity":
                lambda w=want: ... if w is not None else full,
            "it abstains at a similarity equal to the threshold: abstain only when the best one is *below* it":
                lambda w=want, b=best, t=threshold: ... if b != t else None,
            "it looks at the first passage's similarity only: abstain when the *best* one is below the threshold":
                lambda w=want, f=first, b=best, t=threshold: ... if (f < t) == (b < t) else (None if f < t else full),
        }
        cases.append(((q, passages, sims), {"min_similarity": threshold}, expect(want, mistakes, path="prompt")))
    cases.append(((q, [], []), {}, expect(None, path="prompt (no passages: abstain)")))
    return check_function(fn, cases, name="grounded_prompt")


# --------------------------------------------------------------------------- the lab's exercises
# ``chunker.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/rag.py).
chunker = Exercise(
    "rag", "chunker", check_chunker, ("chunk_with_overlap",),
    "move a start index forward by size - overlap each time; stop once a window reaches the end "
    "of the text. Try the example from the task by hand first.")
cosine_top_k = Exercise(
    "rag", "cosine_top_k", check_cosine_top_k, ("cosine_top_k",),
    "divide the query and each row by their lengths, then one matrix-vector product gives every "
    "cosine; torch.topk returns the best values and their indices.")
recall_mrr = Exercise(
    "rag", "recall_mrr", check_recall_mrr, ("recall_at_k", "mean_reciprocal_rank"),
    "recall: sets make the overlap easy (repeats must not count twice). MRR: walk each retrieved "
    "list with ranks starting at 1 and stop at the first gold source.")
rrf = Exercise(
    "rag", "rrf", check_rrf, ("reciprocal_rank_fusion",),
    "accumulate scores in a dict keyed by item, one pass over each ranking with ranks from 1, "
    "then sort the items by score, highest first.")
grounded_prompt = Exercise(
    "rag", "grounded_prompt", check_grounded_prompt, ("grounded_prompt",),
    "first decide: if there are no passages or max(similarities) < min_similarity, return None. Then "
    "build the numbered blocks with enumerate(passages, 1) and join them and the question with blank "
    "lines (\"\\n\\n\").")
