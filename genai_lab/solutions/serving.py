"""Reference solutions of the serving lab (labs/10_serving_lab.ipynb)."""

from __future__ import annotations

import json
import math
import threading
import time

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse


def streaming_app(pieces_for, model: str):
    """A FastAPI app with ``POST /v1/chat/completions`` that streams the answer as server-sent events.

    ``pieces_for(messages, max_tokens)`` yields the answer's pieces of text.  With ``"stream": true``
    the response (``text/event-stream``) is a role chunk, one ``chat.completion.chunk`` per piece
    (``{"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}``), a last chunk
    with an empty delta and ``finish_reason: "stop"``, then ``data: [DONE]``; every event is one line
    ``data: <json>`` followed by a blank line.  Without ``stream`` it answers one ``chat.completion``.
    """
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        pieces = pieces_for(body["messages"], body.get("max_tokens", 16))
        meta = {"id": "chatcmpl-lab", "created": int(time.time()), "model": model}

        def chunk(delta, finish=None):
            return {**meta, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(pieces)}
            return {**meta, "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}

        def events():
            yield f"data: {json.dumps(chunk({'role': 'assistant', 'content': ''}))}\n\n"
            for piece in pieces:
                yield f"data: {json.dumps(chunk({'content': piece}))}\n\n"
            yield f"data: {json.dumps(chunk({}, 'stop'))}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def scheduler_step(running, waiting, max_batch_size: int):
    """One step of a continuous-batching scheduler.

    ``running`` and ``waiting`` are lists of ``[request_id, tokens_left]``.  In one step:

    1. every running request decodes one token (its ``tokens_left`` falls by 1);
    2. requests with no tokens left finish and leave the batch;
    3. waiting requests join, oldest first, while the batch holds fewer than ``max_batch_size``.

    Returns ``(running, waiting, finished_ids)`` as new lists; the inputs are left unchanged.
    """
    decoded = [[rid, left - 1] for rid, left in running]
    finished = [rid for rid, left in decoded if left <= 0]
    still = [[rid, left] for rid, left in decoded if left > 0]
    free = max(0, max_batch_size - len(still))
    joined = [list(r) for r in waiting[:free]]
    return still + joined, [list(r) for r in waiting[free:]], finished


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values`` with linear interpolation (NumPy's default)."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def measure_latency(send, n_requests: int, concurrency: int) -> dict:
    """Call ``send()`` ``n_requests`` times from ``concurrency`` threads at once and time each call.

    Returns ``{"latencies": [seconds of each successful call], "errors": failed calls, "wall": seconds
    for all, "p50": …, "p95": …}``.  A call that raises counts as an error, not as a latency.
    """
    latencies, errors = [], 0
    lock = threading.Lock()
    todo = iter(range(n_requests))

    def client():
        nonlocal errors
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            start = time.perf_counter()
            try:
                send()
            except Exception:
                with lock:
                    errors += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "wall": wall,
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}
