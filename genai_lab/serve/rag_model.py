"""Chapter 9's RAG pipeline served as a model: ``"genai-lab-rag"`` on ``/v1/chat/completions``.

A request to the RAG model runs chapter 9's :func:`~genai_lab.rag.generate.answer_question` steps,
split so that the generation goes through the server's :class:`~genai_lab.serve.engine.ChatEngine`
(streamed, queued and batched like any other request)::

    last user message ──► injection check (400 when it carries instructions for the model)
        ──► retrieve k chunks (hybrid, or any search) ──► drop chunks that look like injection
        ──► best cosine < min_similarity?  ──yes──► "I don't know." (the model is not asked)
        ──► chapter 9's grounded prompt (rules, fenced numbered passages), fitted to the context
        ──► ChatEngine (one line: the short answer) ──► citation: the model's own [n] if it wrote
            one, else the passage that makes its answer most likely (chapter 9's cite_passage)
        ──► the answer with its [n], and the numbered sources it was given

The response is OpenAI's shape with two extra fields the official client keeps (its models
accept unknown fields: ``completion.model_extra["sources"]``): ``sources``, one dict per numbered
passage (``index``, ``source``, ``score``, ``text``, ``cited``), and ``rag`` (abstained, best
similarity, flagged and dropped chunks, the cited numbers, whether every cited number names a given
passage).  A streamed answer sends them in a last chunk with ``"choices": []`` (the shape of
OpenAI's usage chunk), after the citation marker's own content piece.

The RAG model answers with one line (generation stops at the first newline): the rules ask for the
short answer only, chapter 9 scores only the first line, and so the citation marker can be sent at
the end of a stream and still sit where chapter 9 puts it, after the answer.  Earlier turns of the
conversation are not used: each question is retrieved and answered on its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from ..rag.generate import (IDK, best_similarity, build_messages, cite_passage, fit_to_context,
                            looks_like_injection, prompt_tokens)
from ..rag.scoring import cited_passages
from ..rag.stores import Hit

#: The id clients use for the RAG model.
RAG_MODEL_ID = "genai-lab-rag"


class PromptInjectionError(ValueError):
    """The question carries instructions aimed at the model (the server answers 400)."""


@dataclass
class RagPlan:
    """What retrieval decided for one question, before the model is asked.

    ``hits`` are the passages the prompt numbers ``[1]``, ``[2]``…; ``flagged`` were retrieved but
    dropped as likely prompt injections; ``dropped`` did not fit the model's context; ``messages`` is
    the grounded prompt (``None`` when retrieval abstained).
    """

    question: str
    hits: list[Hit]
    flagged: list[Hit] = field(default_factory=list)
    dropped: list[Hit] = field(default_factory=list)
    abstained: bool = False
    best_similarity: float = -1.0
    messages: list[dict] | None = None
    prompt_tokens: int | None = None


@dataclass
class RagCitation:
    """The citation of a finished answer: the text to append (``" [2]"`` or ``""``), and what it cites."""

    marker: str
    cited: list[int]
    in_range: bool
    self_cited: bool


class RagModel:
    """Chapter 9's retrieval and grounded prompt, served by a chat engine.

    Args:
        index: a :class:`~genai_lab.rag.index.RagIndex` (e.g.
            :func:`genai_lab.rag.evaluate.sklearn_index`), used for retrieval and for the
            abstention similarity.
        name: the model id clients ask for.
        k: passages retrieved per question.
        mode: the index's retrieval mode (``"hybrid"``, ``"dense"`` or ``"bm25"``).
        min_similarity: abstain when no kept passage reaches this cosine similarity to the question.
        max_chars: each passage is cut to this many characters in the prompt (as in chapter 9).
        search: ``search(question, k) -> list[Hit]`` replacing ``index.search`` (e.g.
            :func:`genai_lab.rag.rerank.reranked_search`).
        cite: add the measured citation when the model wrote none (chapter 9's ``add_citation``).

    Defaults are chapter 9's :func:`~genai_lab.rag.generate.answer_question` settings.
    """

    def __init__(self, index, *, name: str = RAG_MODEL_ID, k: int = 3, mode: str = "hybrid",
                 min_similarity: float = 0.4, max_chars: int = 600, search: Callable | None = None,
                 cite: bool = True):
        if not callable(getattr(index, "search", None)) or not hasattr(index, "embedder"):
            raise TypeError(f"index must be a genai_lab.rag RagIndex, got {type(index).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if mode not in ("hybrid", "dense", "bm25"):
            raise ValueError(f"mode must be 'hybrid', 'dense' or 'bm25', got {mode!r}")
        if isinstance(min_similarity, bool) or not isinstance(min_similarity, (int, float)) \
                or not -1.0 <= min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be a number in [-1, 1], got {min_similarity!r}")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ValueError(f"max_chars must be a positive int, got {max_chars!r}")
        if search is not None and not callable(search):
            raise TypeError("search must be callable as search(question, k)")
        self.index, self.name, self.k, self.mode = index, name, k, mode
        self.min_similarity, self.max_chars, self.cite = float(min_similarity), max_chars, bool(cite)
        self._search = search or (lambda q, n: index.search(q, n, mode))
        self._lock = threading.Lock()  # the embedder's cache and BM25 are built lazily: one request at a time

    # ------------------------------------------------------------------ before the model
    @staticmethod
    def question_of(messages: list[dict]) -> str:
        """The question: the text of the last user message (earlier turns are not used)."""
        for m in reversed(messages):
            if m["role"] == "user" and m["content"].strip():
                return m["content"].strip()
        raise ValueError("messages must hold a user message with some text")

    @staticmethod
    def check_question(question: str) -> None:
        """Raise :class:`PromptInjectionError` when ``question`` carries instructions for the model."""
        if looks_like_injection(question):
            raise PromptInjectionError("the question looks like a prompt injection (it gives the model "
                                       "instructions); ask a question about the documents instead")

    def plan(self, question: str, tokenizer, *, max_prompt_tokens: int) -> RagPlan:
        """Retrieve, drop injected passages, decide whether to abstain, build the fitted prompt.

        Raises:
            ValueError: ``question`` alone (with the rules, before retrieval) or with one passage does
                not fit in ``max_prompt_tokens``.
        """
        if isinstance(max_prompt_tokens, bool) or not isinstance(max_prompt_tokens, int) or max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be a positive int, got {max_prompt_tokens!r}")
        alone = prompt_tokens(tokenizer, build_messages(question, [], max_chars=self.max_chars))
        if alone > max_prompt_tokens:  # the input-length guard comes before any retrieval
            raise ValueError(f"the question is too long: {alone} tokens with the rules, this server reads at most "
                             f"{max_prompt_tokens}")
        with self._lock:
            hits = list(self._search(question, self.k))
            flagged = [h for h in hits if looks_like_injection(h.chunk.text)]
            kept = [h for h in hits if h not in flagged]
            sim = best_similarity(self.index, question, kept)
        if sim < self.min_similarity:
            return RagPlan(question, kept, flagged, abstained=True, best_similarity=sim)
        kept, dropped, n_tokens = fit_to_context(tokenizer, question, kept, max_tokens=max_prompt_tokens,
                                                 max_chars=self.max_chars)
        return RagPlan(question, kept, flagged, dropped, False, sim,
                       build_messages(question, kept, max_chars=self.max_chars), n_tokens)

    # ------------------------------------------------------------------ after the model
    def citation(self, plan: RagPlan, reply: str, tokenizer=None, model=None) -> RagCitation:
        """The citation of ``reply``: its own ``[n]`` markers, else (with ``cite``) the passage
        :func:`~genai_lab.rag.generate.cite_passage` measures, as a marker to append."""
        own = cited_passages(reply)
        n_hits = len(plan.hits)
        if own:
            return RagCitation("", own, all(1 <= n <= n_hits for n in own), True)
        answer = reply.strip().partition("\n")[0].strip()
        if plan.abstained or not self.cite or not plan.hits or answer in ("", IDK) or model is None:
            return RagCitation("", [], True, False)
        n = cite_passage(tokenizer, model, plan.question, answer, plan.hits, max_chars=self.max_chars)
        marker = f"[{n}]" if reply.endswith((" ", "\n")) else f" [{n}]"
        return RagCitation(marker, [n], 1 <= n <= n_hits, False)

    def sources(self, plan: RagPlan, citation: RagCitation) -> list[dict]:
        """The numbered passages the answer was given, as the response's ``sources`` field (none when
        retrieval abstained: the answer rests on no passage)."""
        if plan.abstained:
            return []
        return [{"index": i, "source": h.chunk.label, "score": round(float(h.score), 4),
                 "text": h.chunk.text[:self.max_chars].strip(), "cited": i in citation.cited}
                for i, h in enumerate(plan.hits, 1)]

    @staticmethod
    def report(plan: RagPlan, citation: RagCitation) -> dict:
        """The response's ``rag`` field: how the answer was grounded."""
        return {"abstained": plan.abstained, "best_similarity": round(float(plan.best_similarity), 4),
                "cited": citation.cited, "citations_in_range": citation.in_range,
                "self_cited": citation.self_cited,
                "flagged_as_injection": [h.chunk.label for h in plan.flagged],
                "dropped_for_context": [h.chunk.label for h in plan.dropped]}


def sklearn_rag_model(cfg=None, **kwargs) -> RagModel:
    """The RAG model over chapter 9's corpus (the scikit-learn dataset descriptions, in memory)."""
    from ..rag.evaluate import sklearn_index

    return RagModel(sklearn_index(cfg), **kwargs)
