"""Chapter 10's measured experiments and the ``serving`` bench entry.

- :func:`serve_and_measure` starts a server for an engine in a background thread, runs a load sweep
  against it through HTTP (the same client that measures vLLM) and stops it;
- :func:`batching_experiment` serves the same model one request at a time and with batching, under
  the same concurrent load, and compares throughput (greedy answers are identical, so both do the
  same work);
- :func:`bench_serving` — the reference experiment: SmolLM2-135M-Instruct served offline, 1/4/16
  concurrent streaming clients, errors, TTFT and tokens/s percentiles, throughput, batching speed-up;
  and chapter 9's RAG rebuilt from LangChain parts, whose retrieval must match the hand-built one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bench import Metric, register
from .engine import ChatEngine
from .loadtest import LoadResult, load_sweep


@dataclass(frozen=True)
class ServingSettings:
    """The load a profile applies: client counts, answer length and requests per client."""

    concurrencies: tuple[int, ...] = (1, 4, 16)
    max_tokens: int = 16
    requests_per_client: float = 1.0
    min_requests: int = 4
    max_batch_size: int = 16


def serving_settings(cfg) -> ServingSettings:
    """``smoke``: 12-token answers, one request per client (≥ 2 per level); ``cpu``: 48-token answers,
    one request per client (≥ 4); ``gpu``: 64-token answers, two per client."""
    return cfg.pick(smoke=ServingSettings(max_tokens=12, min_requests=2),
                    cpu=ServingSettings(max_tokens=48, requests_per_client=1.0, min_requests=4),
                    gpu=ServingSettings(max_tokens=64, requests_per_client=2.0, min_requests=8))


def serve_and_measure(engine: ChatEngine, concurrencies, *, max_tokens: int, requests_per_client: float = 1.0,
                      min_requests: int = 4, app=None) -> list[LoadResult]:
    """Serve ``engine`` on a free localhost port, run :func:`~genai_lab.serve.loadtest.load_sweep`
    (one warm-up request first) and stop the server."""
    from .app import create_app
    from .runner import ServerThread

    app = app if app is not None else create_app(engine)
    with ServerThread(app) as server:
        return load_sweep(server.base_url + "/v1", engine.name, tuple(concurrencies), max_tokens=max_tokens,
                          requests_per_client=requests_per_client, min_requests=min_requests)


def batching_experiment(tokenizer, model, name: str, settings: ServingSettings,
                        concurrencies=None) -> dict[str, list[LoadResult]]:
    """The same load served ``"one at a time"`` (``max_batch_size=1``) and ``"batched"``
    (``max_batch_size=settings.max_batch_size``): ``{mode: [LoadResult per concurrency]}``."""
    concurrencies = tuple(concurrencies or settings.concurrencies)
    out = {}
    for mode, batch in (("one at a time", 1), ("batched", settings.max_batch_size)):
        engine = ChatEngine(tokenizer, model, name=name, max_batch_size=batch)
        try:
            out[mode] = serve_and_measure(engine, concurrencies, max_tokens=settings.max_tokens,
                                          requests_per_client=settings.requests_per_client,
                                          min_requests=settings.min_requests)
        finally:
            engine.close()
    return out


@register("serving", "SmolLM2-135M served over an OpenAI-compatible API: 1/4/16 streaming clients, "
          "batching; the RAG rebuilt from LangChain parts")
def bench_serving(cfg) -> list[Metric]:
    from ..models import load_smollm2
    from .models import SMOLLM2_ID

    settings = serving_settings(cfg)
    tok, model = load_smollm2(device=cfg.device)
    runs = batching_experiment(tok, model, SMOLLM2_ID, settings)
    seq = {r.concurrency: r for r in runs["one at a time"]}
    bat = {r.concurrency: r for r in runs["batched"]}
    top = max(settings.concurrencies)
    errors = sum(r.errors for rows in runs.values() for r in rows)
    if errors:
        from ..config import say

        messages = sorted({m for rows in runs.values() for r in rows for m in r.error_messages})
        say(f"[serving] {errors} failed requests: {'; '.join(messages)}")
    return [
        Metric("errors_all_levels", errors, higher_is_better=False, bar=0),
        Metric(f"clients_{top}_errors", seq[top].errors + bat[top].errors, higher_is_better=False, bar=0),
        Metric("ttft_p50_1_client_s", seq[1].ttft_p50, higher_is_better=False, unit="s"),
        Metric(f"ttft_p50_{top}_clients_s", seq[top].ttft_p50, higher_is_better=False, unit="s"),
        Metric(f"ttft_p95_{top}_clients_s", seq[top].ttft_p95, higher_is_better=False, unit="s"),
        Metric(f"ttft_p95_{top}_clients_batched_s", bat[top].ttft_p95, higher_is_better=False, unit="s"),
        Metric("tokens_per_s_p50_1_client", seq[1].tokens_per_s_p50, unit="tokens/s"),
        Metric(f"tokens_per_s_p95_{top}_clients", seq[top].tokens_per_s_p95, unit="tokens/s"),
        Metric("throughput_1_client", seq[1].throughput, unit="tokens/s"),
        Metric(f"throughput_{top}_clients", seq[top].throughput, unit="tokens/s"),
        Metric(f"throughput_{top}_clients_batched", bat[top].throughput, unit="tokens/s"),
        Metric("batching_speedup", bat[top].throughput / seq[top].throughput, unit="×",
               bar=cfg.pick(smoke=1.5, cpu=1.5, gpu=1.5)),
        *_langchain_metrics(cfg),
    ]


def _langchain_metrics(cfg) -> list[Metric]:
    """Chapter 9's RAG rebuilt from LangChain parts: its retrieval figures against the hand-built ones."""
    from .langchain_rag import compare_with_hand_built

    found = compare_with_hand_built(cfg)
    lc, hand = found["LangChain"], found["hand-built"]
    return [Metric("langchain_retrieval_gap", found["gap"], higher_is_better=False, bar=0.02),
            Metric("langchain_recall_at_5", lc["recall@5"]),
            Metric("hand_built_recall_at_5", hand["recall@5"])]


#: Questions for the dtype comparison: short factual and open questions, answered greedily.
DTYPE_PROMPTS = (
    "What is the capital of Japan?",
    "Explain in one sentence what a neural network is.",
    "Give three tips for writing clear code.",
    "Why is the sky blue?",
)


def dtype_experiment(tokenizer, model, *, dtypes=("float32", "bfloat16"), prompts=DTYPE_PROMPTS,
                     max_tokens: int = 24) -> dict:
    """The same chat model served in each of ``dtypes`` (one request at a time, greedy): weight memory,
    decoding speed and time to first token per request, and how many answers equal the first dtype's.

    Returns ``{dtype: {"weights_mb", "ms_per_token" (median over prompts), "ttft_ms" (median),
    "answers" (list of str), "same_answers" (int, vs the first dtype), "same_tokens" (fraction of answer
    tokens equal to the first dtype's, position by position)}}``.  ``model`` itself is not changed (each
    dtype gets a copy).
    """
    import copy
    import statistics

    import torch

    if not dtypes or not all(isinstance(d, str) and isinstance(getattr(torch, d, None), torch.dtype) for d in dtypes):
        raise ValueError(f"dtypes must name torch dtypes such as 'float32' or 'bfloat16', got {dtypes!r}")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty strings")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
        raise ValueError(f"max_tokens must be an int >= 2, got {max_tokens!r}")
    out: dict = {}
    reference = None
    for name in dtypes:
        copy_ = copy.deepcopy(model).to(getattr(torch, name)).eval()
        engine = ChatEngine(tokenizer, copy_, name=f"{name}")
        try:
            engine.generate([{"role": "user", "content": "Hi"}], max_tokens=2)  # warm-up, not measured
            gens = [engine.generate([{"role": "user", "content": p}], max_tokens=max_tokens) for p in prompts]
        finally:
            engine.close()
        per_token = [(g.finished - g.first_token) / (g.completion_tokens - 1) * 1000
                     for g in gens if g.completion_tokens >= 2]
        row = {"weights_mb": sum(p.numel() * p.element_size() for p in copy_.parameters()) / 2**20,
               "ms_per_token": statistics.median(per_token) if per_token else float("nan"),
               "ttft_ms": statistics.median(g.ttft * 1000 for g in gens),
               "answers": [g.text for g in gens], "tokens": [list(g.token_ids) for g in gens]}
        if reference is None:
            reference = row
        pairs = list(zip(row["tokens"], reference["tokens"]))
        row["same_answers"] = sum(a == b for a, b in pairs)
        total = sum(max(len(a), len(b)) for a, b in pairs)
        row["same_tokens"] = sum(x == y for a, b in pairs for x, y in zip(a, b)) / total if total else 1.0
        out[name] = row
        del copy_
    return out
