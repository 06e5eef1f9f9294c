"""Checks for the serving lab: a streaming endpoint, a continuous-batching scheduler step, and a
client that measures p50/p95 latency.

- the endpoint is served for real (uvicorn on a free localhost port, :class:`~genai_lab.serve.runner.ServerThread`)
  and read twice: raw bytes with ``httpx`` (the server-sent events format) and with the official
  ``openai`` client; its pieces arrive with a delay, so a response that is buffered to the end,
  not streamed, is caught;
- the scheduler step is compared with a reference on fixed cases and run to the end of a workload;
- the percentile is compared with NumPy, and the latency client is run on a fake request whose
  duration is known, so its latencies, its errors and its concurrency are checked without a model.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from typing import Callable

from . import CheckResult, Exercise, describe_difference, run_check

_PIECES = ["Tokyo", " is", " the", " capital", " of", " Japan", "."]
_DELAY = 0.15  # seconds between pieces of the check's answer


def _slow_pieces(messages, max_tokens):
    for piece in _PIECES[:max_tokens]:
        time.sleep(_DELAY)
        yield piece


def check_streaming_app(fn: Callable) -> CheckResult:
    """``fn(pieces_for, model) -> FastAPI app`` streaming OpenAI chunks as server-sent events."""

    def body():
        import httpx
        import openai

        from ..serve.runner import ServerThread

        app = fn(_slow_pieces, "lab-model")
        if app is None or not callable(app):
            return f"return the FastAPI app, got {type(app).__name__}"
        want = "".join(_PIECES)
        request = {"model": "lab-model", "messages": [{"role": "user", "content": "Capital of Japan?"}],
                   "max_tokens": len(_PIECES), "stream": True}
        with ServerThread(app) as server:
            start = time.perf_counter()
            first = None
            events = []
            with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=request, timeout=30) as r:
                if r.status_code != 200:
                    return f"POST /v1/chat/completions answered {r.status_code}: {r.read()[:200]!r}"
                kind = r.headers.get("content-type", "")
                if not kind.startswith("text/event-stream"):
                    return f"the streamed response must have content-type text/event-stream, got {kind!r}"
                raw = ""
                for text in r.iter_text():
                    raw += text
                    if first is None and _PIECES[0] in raw:
                        first = time.perf_counter() - start
            total = time.perf_counter() - start
            blocks = [b for b in raw.split("\n\n") if b.strip()]
            if not raw.endswith("\n\n"):
                return "every event must end with a blank line ('\\n\\n'), the last one too"
            for b in blocks:
                if not b.startswith("data: ") or "\n" in b:
                    return f"every event is one line 'data: <json>' then a blank line; got {b[:80]!r}"
                events.append(b[len("data: "):])
            if events[-1] != "[DONE]":
                return f"the stream must end with 'data: [DONE]', its last event is {events[-1][:60]!r}"
            try:
                chunks = [json.loads(e) for e in events[:-1]]
            except json.JSONDecodeError as exc:
                return f"each event before [DONE] must be JSON: {exc}"
            text = "".join((c.get("choices") or [{}])[0].get("delta", {}).get("content") or "" for c in chunks)
            if text != want:
                return f"the deltas join into {text!r}; the answer was {want!r}"
            finishes = [(c.get("choices") or [{}])[0].get("finish_reason") for c in chunks]
            if finishes[-1] != "stop" or any(f is not None for f in finishes[:-1]):
                return f"only the last chunk carries finish_reason 'stop' (got {finishes})"
            if first is None or first > total / 2:
                return (f"the first piece arrived after {first if first is None else round(first, 2)} s of "
                        f"{total:.2f} s: the answer is sent at the end, not streamed as it is made")
            # the official client reads the same stream
            client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=30)
            got = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model="lab-model", messages=request["messages"], max_tokens=len(_PIECES), stream=True) if c.choices)
            if got != want:
                return f"the openai client read {got!r} from the stream; the answer was {want!r}"
        return None

    return run_check("streaming_app", body)


def _reference_step(running, waiting, max_batch_size):
    from ..solutions.serving import scheduler_step

    return scheduler_step(running, waiting, max_batch_size)


def _simulate(step, requests, max_batch_size, limit=500):
    running, waiting, order, steps = [], [list(r) for r in requests], [], 0
    running, waiting = waiting[:max_batch_size], waiting[max_batch_size:]
    while running or waiting:
        running, waiting, finished = step(running, waiting, max_batch_size)
        order.extend(finished)
        steps += 1
        if steps > limit:
            break
    return steps, order


def check_scheduler_step(fn: Callable) -> CheckResult:
    """``fn(running, waiting, max_batch_size) -> (running, waiting, finished_ids)`` vs the reference."""
    cases = [
        ([["a", 3], ["b", 1]], [["c", 2], ["d", 5]], 2),      # b finishes, c joins
        ([["a", 1], ["b", 1]], [["c", 2], ["d", 5], ["e", 1]], 4),  # both finish, three join
        ([["a", 4]], [], 3),                                  # nothing waiting
        ([], [["a", 2], ["b", 2], ["c", 2]], 2),              # an idle batch fills up
        ([["a", 2], ["b", 2], ["c", 2]], [["d", 1]], 3),      # full: d keeps waiting
    ]

    def body():
        for i, (running, waiting, size) in enumerate(cases, 1):
            before = copy.deepcopy((running, waiting))
            got = fn(running, waiting, size)
            if (running, waiting) != before:
                return f"case {i}: the input lists were changed; return new lists instead"
            want = _reference_step(running, waiting, size)
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                return f"case {i}: return (running, waiting, finished_ids), got {type(got).__name__}"
            got = tuple([list(r) if isinstance(r, (tuple, list)) else r for r in part] for part in got)
            for label, g, w in zip(("running", "waiting", "finished_ids"), got, want):
                msg = describe_difference(g, w)
                if msg:
                    hint = ""
                    if label == "running" and not running and len(g) == 0 and want[0]:
                        hint = " — looks like: waiting requests never join"
                    elif label == "running" and running and len(g) < len(w):
                        hint = (" — looks like: static batching (new requests wait for the whole batch to end) "
                                "or finished ones kept their place")
                    return (f"case {i} (running={running}, waiting={waiting}, max_batch_size={size}): "
                            f"{label}: {msg}{hint}")
        requests = [[f"r{i}", n] for i, n in enumerate([5, 1, 3, 8, 2, 2, 6, 1, 4, 3])]
        want_steps, want_order = _simulate(_reference_step, requests, 4)
        got_steps, got_order = _simulate(fn, requests, 4)
        if (got_steps, got_order) != (want_steps, want_order):
            return (f"a workload of 10 requests (batch of 4) took {got_steps} steps finishing in the order "
                    f"{got_order}; continuous batching takes {want_steps} steps: {want_order}")
        return None

    return run_check("scheduler_step", body)


def check_latency_client(percentile_fn: Callable, measure_fn: Callable) -> CheckResult:
    """``percentile_fn(values, q)`` vs NumPy; ``measure_fn(send, n_requests, concurrency)`` on a fake
    request: latencies, errors, concurrency and its p50/p95."""

    def body():
        import numpy as np

        rng = np.random.default_rng(0)
        for values in ([3.0], [1.0, 2.0], [5.0, 1.0, 4.0, 2.0, 3.0], list(rng.exponential(1.0, 37))):
            for q in (0, 50, 90, 95, 99, 100):
                got = float(percentile_fn(list(values), q))
                msg = describe_difference(got, float(np.percentile(values, q)), atol=1e-9)
                if msg:
                    extra = ""
                    if abs(got - float(np.percentile(values, q, method="nearest"))) < 1e-12:
                        extra = " — looks like: the nearest value, without interpolating between two"
                    return f"percentile({[round(v, 3) for v in values][:6]}…, q={q}): {msg}{extra}"

        # a fake request: every 5th call takes 0.25 s, the others 0.05 s; call 7 fails
        counter = iter(range(1000))
        lock = threading.Lock()

        def send():
            with lock:
                i = next(counter)
            if i == 7:
                raise ConnectionError("the server went away")
            time.sleep(0.25 if i % 5 == 4 else 0.05)
            return "ok"

        start = time.perf_counter()
        out = measure_fn(send, 20, 4)
        wall = time.perf_counter() - start
        if not isinstance(out, dict) or not {"latencies", "errors", "p50", "p95"} <= set(out):
            return "return a dict with 'latencies', 'errors', 'wall', 'p50' and 'p95'"
        lat = list(out["latencies"])
        if out["errors"] != 1 or len(lat) != 19:
            return f"20 calls, one raising: expected 19 latencies and 1 error, got {len(lat)} and {out['errors']}"
        slow = sum(x >= 0.24 for x in lat)
        if slow != 4 or min(lat) < 0.045:
            return (f"the latencies are not the calls' durations (expected 4 of about 0.25 s and 15 of about "
                    f"0.05 s; got min {min(lat):.3f} s, {slow} slow)")
        if wall > 0.75 * (0.25 * 4 + 0.05 * 15):
            return (f"20 calls took {wall:.2f} s with concurrency 4 — about as long as one at a time "
                    f"({0.25 * 4 + 0.05 * 15:.2f} s): run the clients at the same time")
        for key, q in (("p50", 50), ("p95", 95)):
            msg = describe_difference(float(out[key]), float(np.percentile(lat, q)), atol=1e-6)
            if msg:
                return f"{key} of the measured latencies: {msg}"
        return None

    return run_check("latency_client", body)


streaming_app = Exercise(
    "serving", "streaming_app", check_streaming_app, ("streaming_app",),
    "build the events with a generator function and hand it to a StreamingResponse with the "
    "event-stream media type; json.dumps each chunk dict and end each event with two newlines. "
    "The last events are a chunk whose finish_reason is stop, then the [DONE] marker.")
scheduler_step = Exercise(
    "serving", "scheduler_step", check_scheduler_step, ("scheduler_step",),
    "work on copies: first count one token off every running request, then split off the ones at "
    "zero, then fill the free places from the front of the waiting list.")
latency_client = Exercise(
    "serving", "latency_client", check_latency_client, ("percentile", "measure_latency"),
    "percentile: sort, find the fractional position (n - 1) * q / 100 and interpolate between the two "
    "neighbours. Client: start `concurrency` threads that take requests from a shared counter under a "
    "lock; time each call with time.perf_counter and count exceptions as errors.")
