"""A bounded load test for any OpenAI-compatible chat endpoint (this book's server, vLLM, …).

``concurrency`` clients each keep one streaming request open at a time, taking the next prompt as
soon as their answer ends (a *closed loop*), until ``requests`` requests have been sent.  For every
request it measures, from the client's side:

- **TTFT** (time to first token): from sending the request to the first piece of answer text —
  what a user waits before anything appears (queueing + reading the prompt + one step);
- **TPOT** (time per output token) after the first: ``(end - first token) / (tokens - 1)``; its
  inverse is the request's decoding speed in tokens/s;
- **latency**: from sending to the end of the answer;

and for the whole run: **throughput** (answer tokens of all requests / wall seconds), requests/s and
**errors** (any non-200 answer or broken stream).  Percentiles: p50 is the median request, p95 the
request that 95 % of requests did better than (for tokens/s: the speed 95 % of requests reached).

Only ``httpx`` and the SSE wire format are used, so the numbers include no client-library
overhead, and the same call measures vLLM::

    load_sweep("http://gpu-box:8000/v1", "HuggingFaceTB/SmolLM2-135M-Instruct", [1, 4, 16])
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import time
from dataclasses import asdict, dataclass, field

#: Requests the load test cycles through: short prompts that ask for long answers, so every answer
#: runs to ``max_tokens`` and each load level does the same work.
DEFAULT_PROMPTS = (
    "Write a short story about a robot who learns to paint.",
    "Explain step by step how a neural network learns from data.",
    "Describe the water cycle in detail.",
    "Give five tips for writing clear code, with an example for each.",
    "Explain why the sky is blue to a ten-year-old.",
    "Describe a day in the life of a medieval farmer.",
    "Compare Python and C: list their main differences and explain each.",
    "Write a poem about the ocean at night.",
)


@dataclass
class RequestResult:
    """One request as the client saw it (seconds are measured from sending it)."""

    ok: bool
    seconds: float
    ttft: float | None = None
    completion_tokens: int = 0
    chunks: int = 0
    error: str | None = None

    @property
    def tpot(self) -> float | None:
        """Seconds per answer token after the first (None with fewer than 2 tokens)."""
        if not self.ok or self.ttft is None or self.completion_tokens < 2:
            return None
        return (self.seconds - self.ttft) / (self.completion_tokens - 1)


@dataclass
class LoadResult:
    """The summary of one load level (``concurrency`` clients); :meth:`row` gives it as a dict."""

    concurrency: int
    requests: int
    errors: int
    wall_seconds: float
    completion_tokens: int
    ttft_p50: float
    ttft_p95: float
    latency_p50: float
    latency_p95: float
    tokens_per_s_p50: float
    tokens_per_s_p95: float
    throughput: float           # answer tokens per second, all requests together
    requests_per_s: float
    error_messages: list[str] = field(default_factory=list)
    results: list[RequestResult] = field(default_factory=list, repr=False)

    def row(self) -> dict:
        out = asdict(self)
        out.pop("results")
        return out


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0–100, linear interpolation) of ``values``; NaN when there are none."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q!r}")
    data = sorted(float(v) for v in values if v is not None)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(concurrency: int, results: list[RequestResult], wall_seconds: float) -> LoadResult:
    """Percentiles and totals of one load level."""
    good = [r for r in results if r.ok]
    tpots = [r.tpot for r in good if r.tpot]
    tokens = sum(r.completion_tokens for r in good)
    p50_tpot, p95_tpot = percentile(tpots, 50), percentile(tpots, 95)
    errors = [r.error or "error" for r in results if not r.ok]
    return LoadResult(
        concurrency=concurrency, requests=len(results), errors=len(errors), wall_seconds=wall_seconds,
        completion_tokens=tokens,
        ttft_p50=percentile([r.ttft for r in good], 50), ttft_p95=percentile([r.ttft for r in good], 95),
        latency_p50=percentile([r.seconds for r in good], 50), latency_p95=percentile([r.seconds for r in good], 95),
        tokens_per_s_p50=1 / p50_tpot if p50_tpot > 0 else math.nan,
        tokens_per_s_p95=1 / p95_tpot if p95_tpot > 0 else math.nan,
        throughput=tokens / wall_seconds if wall_seconds > 0 else math.nan,
        requests_per_s=len(good) / wall_seconds if wall_seconds > 0 else math.nan,
        error_messages=sorted(set(errors))[:5], results=results)


async def stream_one(client, base_url: str, model: str, prompt: str, *, max_tokens: int,
                     temperature: float = 0.0, api_key: str | None = None) -> RequestResult:
    """Send one streaming chat request and time it (TTFT, tokens, total)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": temperature, "stream": True, "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    start = time.perf_counter()
    ttft, chunks, usage = None, 0, None
    try:
        async with client.stream("POST", base_url.rstrip("/") + "/chat/completions", json=body,
                                 headers=headers) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                try:
                    text = json.loads(text)["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    pass
                return RequestResult(False, time.perf_counter() - start,
                                     error=f"HTTP {response.status_code}: {text[:200]}")
            done = False
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    return RequestResult(False, time.perf_counter() - start, ttft, error=str(event["error"])[:200])
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        chunks += 1
                        if ttft is None:
                            ttft = time.perf_counter() - start
            if not done:
                return RequestResult(False, time.perf_counter() - start, ttft, error="the stream ended without [DONE]")
    except Exception as exc:  # a refused connection, a timeout, a broken stream: all count as errors
        return RequestResult(False, time.perf_counter() - start, ttft, error=f"{type(exc).__name__}: {exc}"[:200])
    tokens = usage["completion_tokens"] if usage and "completion_tokens" in usage else chunks
    return RequestResult(True, time.perf_counter() - start, ttft, tokens, chunks)


async def _run_level(base_url, model, concurrency, requests, prompts, max_tokens, temperature, api_key, timeout):
    import httpx

    counter = iter(range(requests))
    results: list[RequestResult] = []
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        async def worker():
            for i in counter:  # shared iterator: each request is taken by exactly one client
                results.append(await stream_one(client, base_url, model, prompts[i % len(prompts)],
                                                max_tokens=max_tokens, temperature=temperature, api_key=api_key))
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return summarize(concurrency, results, wall)


def _run_async(coro):
    """Run ``coro`` on a fresh event loop in its own thread (works inside Jupyter's running loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run_load(base_url: str, model: str, *, concurrency: int = 1, requests: int | None = None,
             prompts=DEFAULT_PROMPTS, max_tokens: int = 32, temperature: float = 0.0,
             api_key: str | None = None, timeout: float = 300.0) -> LoadResult:
    """Measure one load level: ``concurrency`` streaming clients sending ``requests`` requests in all.

    Args:
        base_url: the API root, e.g. ``"http://127.0.0.1:8000/v1"`` (what ``openai.OpenAI`` takes).
        model: the model id to ask for.
        requests: how many requests in all (default: ``2 * concurrency``, at least 4).
        max_tokens: the longest answer asked for; ``temperature=0`` makes answers repeatable.
    """
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http(s) URL such as 'http://127.0.0.1:8000/v1', got {base_url!r}")
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty str, got {model!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    requests = max(4, 2 * concurrency) if requests is None else requests
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError(f"requests must be a positive int, got {requests!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty strings")
    return _run_async(_run_level(base_url, model, concurrency, requests, prompts, max_tokens, temperature,
                                 api_key, timeout))


def load_sweep(base_url: str, model: str, concurrencies=(1, 4, 16), *, requests_per_client: float = 2,
               min_requests: int = 4, warmup: bool = True, **kwargs) -> list[LoadResult]:
    """:func:`run_load` at each concurrency (``max(min_requests, requests_per_client × c)`` requests).

    ``warmup`` first sends one unmeasured request (the first forward pass of a model is slower).
    """
    if not concurrencies or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in concurrencies):
        raise ValueError(f"concurrencies must be positive ints, got {concurrencies!r}")
    if warmup:
        run_load(base_url, model, concurrency=1, requests=1, **kwargs)
    return [run_load(base_url, model, concurrency=c, requests=max(min_requests, math.ceil(requests_per_client * c)),
                     **kwargs) for c in concurrencies]


def format_table(results: list[LoadResult]) -> str:
    """A plain-text table of a sweep, one row per load level."""
    head = (f"{'clients':>7} {'requests':>8} {'errors':>6} {'TTFT p50':>9} {'TTFT p95':>9} "
            f"{'tok/s p50':>9} {'tok/s p95':>9} {'throughput':>10}")
    lines = [head]
    for r in results:
        lines.append(f"{r.concurrency:>7} {r.requests:>8} {r.errors:>6} {r.ttft_p50:>8.2f}s {r.ttft_p95:>8.2f}s "
                     f"{r.tokens_per_s_p50:>9.1f} {r.tokens_per_s_p95:>9.1f} {r.throughput:>7.1f} t/s")
    return "\n".join(lines)
