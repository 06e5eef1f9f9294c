"""What it takes to ship (chapter 10): a release gate, latency metrics from the request log, cost.

- :func:`evaluate_served_rag` asks the RAG model *through the HTTP API* (the official ``openai``
  client) every question of a question set and scores each reply the way chapter 9 does: exact match
  of the extracted answer, and the citation checked against the sources the response carried;
  unanswerable questions must be answered "I don't know.";
- :class:`ReleaseGate` states the figures a release must reach, and :meth:`ReleaseGate.check` says
  which pass — a deployment pipeline runs it against the new server and stops on a fail;
- :func:`latency_summary` turns the server's request log (``app.state.request_log``) into the
  numbers a service is watched by: requests, errors, p50/p95 time to first token and total latency;
- :func:`cost_per_million_tokens`: measured tokens per second per core → the price of a million answer
  tokens at a stated price per core-hour (an assumption the caller names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..rag.generate import IDK
from .loadtest import percentile


# ---------------------------------------------------------------------------------- latency metrics
def latency_summary(entries: Iterable[dict], *, path: str = "/v1/chat/completions", model: str | None = None) -> dict:
    """Counts and p50/p95 latencies (seconds) of the logged requests to ``path`` (and ``model``).

    ``entries``: the request log (``app.state.request_log``). Errors are counted by class (4xx, 5xx);
    the latencies are over the answered (200) requests that logged them. A refused request is logged
    before its model is known, so with ``model`` given only answered requests are counted.
    """
    if isinstance(path, bool) or not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"path must be a URL path such as '/v1/chat/completions', got {path!r}")
    rows = [e for e in entries if isinstance(e, dict) and e.get("path") == path
            and (model is None or e.get("model") == model)]
    ok = [e for e in rows if e.get("status") == 200]

    def pct(key: str, q: float) -> float:
        return percentile([e[key] for e in ok if isinstance(e.get(key), (int, float))], q)

    return {"requests": len(rows), "ok": len(ok),
            "errors_4xx": sum(400 <= e.get("status", 0) < 500 for e in rows),
            "errors_5xx": sum(e.get("status", 0) >= 500 for e in rows),
            "completion_tokens": sum(e.get("completion_tokens") or 0 for e in ok),
            "ttft_p50_s": pct("ttft_s", 50), "ttft_p95_s": pct("ttft_s", 95),
            "total_p50_s": pct("total_s", 50), "total_p95_s": pct("total_s", 95)}


# ---------------------------------------------------------------------------------- cost
def cost_per_million_tokens(tokens_per_s: float, *, cores: int, price_per_core_hour: float) -> float:
    """Price of a million answer tokens when ``cores`` cores produce ``tokens_per_s`` and each core-hour
    costs ``price_per_core_hour``: ``price / (tokens_per_s / cores × 3600) × 10⁶``."""
    for name, value in (("tokens_per_s", tokens_per_s), ("price_per_core_hour", price_per_core_hour)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores must be a positive int, got {cores!r}")
    tokens_per_core_hour = tokens_per_s / cores * 3600
    return price_per_core_hour / tokens_per_core_hour * 1e6


# ---------------------------------------------------------------------------------- release gate
def _reply_fields(completion) -> tuple[str, list[dict], dict]:
    extra = getattr(completion, "model_extra", None) or {}
    return completion.choices[0].message.content or "", list(extra.get("sources") or []), dict(extra.get("rag") or {})


def evaluate_served_rag(client, model: str, questions: Sequence[dict], unanswerable: Sequence[str] = (), *,
                        max_tokens: int = 40) -> list[dict]:
    """Ask the served RAG ``model`` each question through ``client`` (an ``openai.OpenAI``) and score it.

    Args:
        questions: chapter 9's question dicts; those with an ``answer`` are asked and scored.
        unanswerable: questions the corpus does not answer; the reply must be "I don't know.".
    Returns:
        one dict per question: ``question``, ``kind`` (``"answerable"``/``"unanswerable"``), ``reply``,
        ``sources`` (labels of the passages given), ``error`` (``None``, or the API error); answerable
        rows add ``gold``, ``answer`` (extracted), ``em``, ``f1``, ``cited`` (numbers), ``in_range``
        (every cited number names a passage the response listed), ``citation_valid`` (chapter 9's
        :func:`~genai_lab.rag.scoring.check_citation` with the gold answer); unanswerable rows add
        ``abstained``.
    """
    import openai

    from ..rag.scoring import check_citation, exact_match, extract_answer, token_f1

    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty str, got {model!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
    asked = [q for q in questions if isinstance(q, dict) and q.get("answer")]
    if isinstance(unanswerable, str) or not all(isinstance(u, str) and u.strip() for u in unanswerable):
        raise TypeError("unanswerable must be a list of non-empty question strings")
    if not asked and not unanswerable:
        raise ValueError("questions must hold at least one question with an 'answer' (or give unanswerable ones)")
    rows = []
    for kind, items in (("answerable", asked), ("unanswerable", [{"question": u} for u in unanswerable])):
        for q in items:
            row = {"question": q["question"], "kind": kind, "reply": "", "sources": [], "error": None}
            try:
                done = client.chat.completions.create(model=model, max_tokens=max_tokens, temperature=0,
                                                      messages=[{"role": "user", "content": q["question"]}])
            except openai.APIError as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                done = None
            if done is not None:
                reply, sources, report = _reply_fields(done)
                row.update(reply=reply, sources=[s.get("source", "") for s in sources], rag=report)
                passages = [s.get("text", "") for s in sources]
            if kind == "answerable":
                gold = q["answer"]
                answer = extract_answer(row["reply"], gold, q["question"])
                check = check_citation(row["reply"], passages if done is not None else [], gold)
                row.update(gold=gold, answer=answer, em=exact_match(answer, gold), f1=token_f1(answer, gold),
                           cited=list(check.cited), in_range=check.in_range, citation_valid=check.valid)
            else:
                row["abstained"] = done is not None and row["reply"].strip() == IDK
            rows.append(row)
    return rows


def summarize_gate_run(rows: Sequence[dict]) -> dict:
    """Means over :func:`evaluate_served_rag` rows: ``exact_match``, ``token_f1``, ``citation_valid``,
    ``citations_in_range`` (answered replies whose cited numbers all name a given passage), ``cited``
    (replies that cite something), ``abstention`` (unanswerable questions answered "I don't know."),
    plus the counts ``answerable``, ``unanswerable`` and ``errors``."""
    if not rows:
        raise ValueError("rows must not be empty")
    ans = [r for r in rows if r["kind"] == "answerable"]
    una = [r for r in rows if r["kind"] == "unanswerable"]

    def mean(values) -> float:
        values = list(values)
        return sum(values) / len(values) if values else float("nan")

    return {"answerable": len(ans), "unanswerable": len(una), "errors": sum(r["error"] is not None for r in rows),
            "exact_match": mean(float(r["em"]) for r in ans), "token_f1": mean(r["f1"] for r in ans),
            "citation_valid": mean(float(r["citation_valid"]) for r in ans),
            "citations_in_range": mean(float(r["in_range"]) for r in ans),
            "cited": mean(float(bool(r["cited"])) for r in ans),
            "abstention": mean(float(r["abstained"]) for r in una)}


@dataclass(frozen=True)
class ReleaseGate:
    """The figures a release must reach on the evaluation set (fractions in [0, 1]).

    A new model, prompt, retriever or server version ships only when :meth:`check` passes: the gate
    turns "it seemed fine when I tried it" into a test that a deployment pipeline runs.
    """

    min_exact_match: float
    min_citation_valid: float
    min_citations_in_range: float = 1.0
    min_abstention: float = 0.0
    max_errors: int = 0

    def __post_init__(self) -> None:
        for name in ("min_exact_match", "min_citation_valid", "min_citations_in_range", "min_abstention"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
        if isinstance(self.max_errors, bool) or not isinstance(self.max_errors, int) or self.max_errors < 0:
            raise ValueError(f"max_errors must be an int >= 0, got {self.max_errors!r}")

    def check(self, summary: dict) -> dict[str, tuple[float, float, bool]]:
        """``{figure: (measured, required, passed)}`` for each figure of ``summary`` the gate bounds
        (abstention only when unanswerable questions were asked)."""
        if not isinstance(summary, dict):
            raise TypeError("summary must be the dict summarize_gate_run returns")
        out = {}
        for key, need in (("exact_match", self.min_exact_match), ("citation_valid", self.min_citation_valid),
                          ("citations_in_range", self.min_citations_in_range), ("abstention", self.min_abstention)):
            value = summary[key]
            if key == "abstention" and not summary.get("unanswerable"):
                continue
            out[key] = (value, need, bool(value >= need))
        out["errors"] = (summary["errors"], self.max_errors, summary["errors"] <= self.max_errors)
        return out

    def passed(self, summary: dict) -> bool:
        """True when every figure passes."""
        return all(ok for _, _, ok in self.check(summary).values())

    @staticmethod
    def format(checked: dict) -> str:
        """One line per figure: measured, required, PASS/FAIL."""
        lines = []
        for key, (value, need, ok) in checked.items():
            sign = "≤" if key == "errors" else "≥"
            shown = f"{value:d}" if isinstance(value, int) else f"{value:.2f}"
            want = f"{need:d}" if isinstance(need, int) else f"{need:.2f}"
            lines.append(f"{key:20s} {shown:>6s}  (gate {sign} {want})  {'PASS' if ok else 'FAIL'}")
        return "\n".join(lines)
