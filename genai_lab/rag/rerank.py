"""Reranking: a second, slower look at the first retriever's candidates.

A retriever compares a query vector with chunk vectors computed *separately* (a bi-encoder), or counts
shared words (BM25): fast enough for millions of chunks, but the question and the passage never meet
inside one model. A **reranker** reads the question and each candidate passage *together* and scores
how well they match; it is far too slow for the whole corpus, so it only re-orders the top
``candidates`` of the first stage::

    question → hybrid search, top 10 → reranker scores each (question, passage) pair → new top k

Two rerankers:

- :class:`LLMReranker` (offline, every profile): SmolLM2-135M-Instruct scores a passage by **query
  likelihood** (Sachan et al., 2022, "UPR"): shown the passage alone and asked to write a question it
  answers, how likely is the user's question, per token? The mean log-probability is the score. No
  training; one forward pass per candidate.
- :class:`CrossEncoderReranker` (hub path): a cross-encoder trained for passage ranking on MS MARCO
  (:data:`CROSS_ENCODER`), used when the hub is cached or reachable (:func:`load_reranker` at the
  ``gpu`` profile).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

from .stores import Hit

#: The hub path's reranker (registry name): a 6-layer MiniLM cross-encoder trained on MS MARCO passage ranking.
CROSS_ENCODER = "cross-encoder"
#: The instruction the LLM reranker shows with each passage (the question is then scored as the reply).
QUERY_PROMPT = "Passage:\n{passage}\n\nWrite a question that this passage answers."


def _check_passages(passages) -> None:
    if isinstance(passages, str) or not all(isinstance(p, str) for p in passages):
        raise TypeError("passages must be a list of str")


def _check_question(question) -> None:
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty str, got {question!r}")


def _check_hits(hits) -> None:
    if not isinstance(hits, (list, tuple)) or not all(isinstance(h, Hit) for h in hits):
        raise TypeError("hits must be a list of Hit (what a search returns)")


class Reranker:
    """Scores ``(question, passage)`` pairs; :meth:`rerank` re-orders hits by that score."""

    name = "reranker"

    def score(self, question: str, passages: Sequence[str]) -> list[float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def rerank(self, question: str, hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
        """``hits`` sorted by this reranker's score (best first; ties keep the first stage's order).

        Each returned :class:`Hit` carries the reranker's score (not the retriever's). ``k``: keep
        the best ``k`` (default: all).
        """
        _check_question(question)
        _check_hits(hits)
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ValueError(f"k must be a positive int or None, got {k!r}")
        if not hits:
            return []
        scores = self.score(question, [h.chunk.text for h in hits])
        order = sorted(range(len(hits)), key=lambda i: -scores[i])  # stable: ties keep the first order
        return [replace(hits[i], score=float(scores[i])) for i in order][:k]


class LLMReranker(Reranker):
    """Query-likelihood reranking with a causal LM: score = mean log p(question | passage) per token.

    Args:
        tokenizer, model: a chat model and its tokenizer (e.g. :func:`genai_lab.models.load_smollm2`).
        max_chars: each passage is cut to this many characters (as in the grounded prompt).
        batch_size: passages scored in one padded forward pass (1, the default, is fastest on a CPU).
    """

    name = "SmolLM2 query likelihood"

    def __init__(self, tokenizer, model, *, max_chars: int = 600, batch_size: int = 1) -> None:
        if tokenizer is None or model is None:
            raise ValueError("tokenizer and model must be given (e.g. from genai_lab.models.load_smollm2())")
        if not isinstance(max_chars, int) or max_chars < 1:
            raise ValueError(f"max_chars must be a positive int, got {max_chars!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.tokenizer, self.model, self.max_chars, self.batch_size = tokenizer, model, max_chars, batch_size

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        """Mean log-probability of the question's tokens after each passage (higher = more relevant)."""
        import torch

        _check_question(question)
        _check_passages(passages)
        if not passages:
            return []
        tok = self.tokenizer
        target = tok(question.strip(), add_special_tokens=False)["input_ids"]
        prompts = [tok(tok.apply_chat_template(
            [{"role": "user", "content": QUERY_PROMPT.format(passage=p[:self.max_chars].strip())}],
            add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"] for p in passages]
        out = []
        for start in range(0, len(prompts), self.batch_size):  # one padded batch of passages at a time
            batch = prompts[start:start + self.batch_size]
            width = max(len(p) for p in batch) + len(target)
            pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, prompt in enumerate(batch):  # right padding: each row is prompt + question, then pad
                ids[row, :len(prompt) + len(target)] = torch.tensor(prompt + target)
                mask[row, :len(prompt) + len(target)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.model.device),
                                    attention_mask=mask.to(self.model.device)).logits.float()
            for row, prompt in enumerate(batch):
                positions = torch.arange(len(prompt) - 1, len(prompt) + len(target) - 1)
                logp = logits[row, positions].log_softmax(-1)
                out.append(float(logp.gather(1, torch.tensor(target, device=logp.device)[:, None]).mean()))
        return out


class CrossEncoderReranker(Reranker):
    """A sentence-transformers cross-encoder (question and passage in one BERT-style input → a score)."""

    def __init__(self, path, *, device: str | None = None, name: str = "cross-encoder") -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(str(path), device=device)
        self.name = name

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        _check_question(question)
        _check_passages(passages)
        if not passages:
            return []
        return [float(s) for s in self.model.predict([(question, p) for p in passages], show_progress_bar=False)]


def load_reranker(cfg, tokenizer=None, model=None) -> Reranker:
    """The reranker of a profile: the hub cross-encoder at ``gpu`` when it is cached or reachable,
    else :class:`LLMReranker` over ``tokenizer``/``model`` (SmolLM2-135M-Instruct when not given)."""
    if cfg.profile == "gpu":
        from ..models import hub_model_path

        path = hub_model_path(CROSS_ENCODER)
        if path is not None:
            return CrossEncoderReranker(path, device=cfg.device, name="ms-marco-MiniLM-L-6-v2 cross-encoder")
    if tokenizer is None or model is None:
        from ..models import load_smollm2

        tokenizer, model = load_smollm2(device=cfg.device)
    return LLMReranker(tokenizer, model)


def reranked_search(index, reranker: Reranker, *, candidates: int = 10, mode: str = "hybrid") -> Callable:
    """``search(question, k)``: the top ``candidates`` of ``index.search(…, mode)``, reranked, cut to ``k``.

    Feed it to :func:`genai_lab.rag.evaluate.evaluate_retrieval`. Ranks beyond ``candidates`` are not
    returned, so recall@k for k ≥ ``candidates`` equals the first stage's.
    """
    if not isinstance(reranker, Reranker):
        raise TypeError(f"reranker must be a Reranker, got {type(reranker).__name__}")
    if not isinstance(candidates, int) or isinstance(candidates, bool) or candidates < 1:
        raise ValueError(f"candidates must be a positive int, got {candidates!r}")

    def search(question: str, k: int) -> list[Hit]:
        return reranker.rerank(question, index.search(question, max(k, candidates), mode)[:candidates], k)

    return search
