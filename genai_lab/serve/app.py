"""An OpenAI-compatible HTTP server for the book's models (FastAPI).

Endpoints (the subset of OpenAI's API that a chat app needs)::

    GET  /v1/models              the served model ids
    POST /v1/chat/completions    a chat answer; "stream": true sends it as server-sent events
    POST /v1/embeddings          sentence embeddings (all-MiniLM-L6-v2, 384 numbers per text)
    GET  /health                 liveness, and how many requests wait / are decoding
    GET  /                       a chat page (static/index.html) that streams answers

Because the API has OpenAI's shape, the official ``openai`` client talks to it unchanged::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=[...])

**Streaming** uses server-sent events (SSE): the response stays open and each new piece of the
answer is sent as one ``data: {json}`` line followed by a blank line; ``data: [DONE]`` ends it.
Lines starting with ``:`` are comments, sent while a request waits in the queue.

The model runs in the :class:`~genai_lab.serve.engine.ChatEngine`'s worker thread, never on the
event loop, so health checks and bad requests are answered while an answer is being generated.
Every finished request is logged (``app.state.request_log``, and the ``genai_lab.serve`` logger)
with its token counts and latencies.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import threading
import time
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .engine import ChatEngine, QueueFullError
from .errors import APIError, Limits, check_chat_request, check_embedding_request

log = logging.getLogger("genai_lab.serve")
STATIC_DIR = Path(__file__).with_name("static")
#: The id clients use for the embedding model.
EMBEDDING_MODEL_ID = "all-MiniLM-L6-v2"


class Embeddings:
    """A sentence embedder behind a lock (``encode`` runs in a thread pool, never on the event loop).

    Args:
        model: a ``SentenceTransformer`` (e.g. ``load_minilm("sentence")``), or ``None`` to load
            MiniLM on the first request.
    """

    def __init__(self, model=None, name: str = EMBEDDING_MODEL_ID):
        self._model, self.name = model, name
        self._lock = threading.Lock()

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                from ..models import load_minilm

                self._model = load_minilm("sentence")
            return self._model

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.model.tokenizer(texts)["input_ids"]]

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def encode(self, texts: list[str]):
        """``(N, D)`` float32 unit vectors."""
        model = self.model
        with self._lock:
            return model.encode(texts, convert_to_numpy=True, normalize_embeddings=True,
                                show_progress_bar=False).astype("float32")


def create_app(engine: ChatEngine | None = None, *, model: str = "smollm2", embeddings: Embeddings | None = None,
               limits: Limits | None = None, max_batch_size: int = 1, log_size: int = 1000,
               keepalive_s: float = 15.0) -> FastAPI:
    """Build the FastAPI app.

    Args:
        engine: the chat model to serve; ``None`` loads ``model`` by name
            (:func:`~genai_lab.serve.models.load_chat_engine`).
        model: a registered model name (``"smollm2"``) or a local folder, used when ``engine`` is ``None``.
        embeddings: the embedding model; ``None`` serves MiniLM, loaded on the first request.
        limits: request limits (:class:`~genai_lab.serve.errors.Limits`).
        max_batch_size: with ``engine=None``: how many requests the engine decodes together.
        log_size: how many finished requests ``app.state.request_log`` keeps.
        keepalive_s: while a streamed request waits for its next piece longer than this, the
            stream sends an SSE comment line (``: waiting``), which clients ignore, so that neither
            they nor a proxy in between give up on a long queue.

    The app closes the engine's worker when it shuts down (only an engine it loaded itself).
    """
    owns_engine = engine is None
    if engine is None:
        from .models import load_chat_engine

        engine = load_chat_engine(model, max_batch_size=max_batch_size)
    if not isinstance(engine, ChatEngine):
        raise TypeError(f"engine must be a ChatEngine, got {type(engine).__name__}")
    limits = limits or Limits()
    if isinstance(keepalive_s, bool) or not isinstance(keepalive_s, (int, float)) or not keepalive_s > 0:
        raise ValueError(f"keepalive_s must be a positive number of seconds, got {keepalive_s!r}")
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, got {type(limits).__name__}")
    embeddings = embeddings or Embeddings()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if owns_engine:  # stop the worker thread of an engine this app loaded itself
            await asyncio.to_thread(engine.close)

    app = FastAPI(title="genai-lab OpenAI-compatible server", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.engine, app.state.embeddings, app.state.limits = engine, embeddings, limits
    app.state.request_log = collections.deque(maxlen=log_size)
    app.state.started = time.time()

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        _record(app, request.url.path, exc.status, error=exc.message)
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        return JSONResponse(APIError(404, f"no route {request.method} {request.url.path}",
                                     code="not_found").body(), status_code=404)

    @app.exception_handler(405)
    async def wrong_method(request: Request, exc):
        return JSONResponse(APIError(405, f"method {request.method} is not allowed on {request.url.path}").body(),
                            status_code=405)

    # ------------------------------------------------------------------ read-only routes
    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.name, "waiting": engine.waiting, "decoding": engine.active,
                "uptime_s": round(time.time() - app.state.started, 1)}

    @app.get("/v1/models")
    async def list_models():
        created = int(app.state.started)
        return {"object": "list", "data": [
            {"id": engine.name, "object": "model", "created": created, "owned_by": "genai-lab"},
            {"id": embeddings.name, "object": "model", "created": created, "owned_by": "genai-lab"}]}

    @app.get("/")
    async def chat_page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ------------------------------------------------------------------ chat
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        params = check_chat_request(await _json_body(request, limits), limits)
        if params.model != engine.name:
            raise APIError(404, f"The model {params.model!r} does not exist on this server; "
                                f"it serves {engine.name!r}", param="model", code="model_not_found")
        prompt_ids = await run_in_threadpool(engine.encode_chat, params.messages)  # a long prompt takes a while
        if len(prompt_ids) > limits.max_prompt_tokens:
            raise APIError(400, f"the messages are {len(prompt_ids)} tokens long; this server reads at most "
                                f"{limits.max_prompt_tokens}", param="messages", code="context_length_exceeded")
        if len(prompt_ids) + params.max_tokens > engine.context_length:
            raise APIError(400, f"{len(prompt_ids)} prompt tokens + max_tokens {params.max_tokens} exceed the "
                                f"model's context of {engine.context_length}", param="max_tokens",
                           code="context_length_exceeded")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        try:
            gen = engine.submit(prompt_ids, max_tokens=params.max_tokens, temperature=params.temperature,
                                top_p=params.top_p, seed=params.seed, stop=params.stop,
                                listener=lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev))
        except QueueFullError as exc:
            raise APIError(429, f"the server is busy: {exc}; retry later", code="rate_limit_exceeded",
                           type="rate_limit_error") from exc
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": engine.name}
        if params.stream:
            return StreamingResponse(_sse(app, request, gen, events, meta, params.include_usage, keepalive_s),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            while True:
                kind, value = await events.get()
                if kind == "error":
                    raise APIError(500, value, type="server_error")
                if kind == "done":
                    break
        except asyncio.CancelledError:
            gen.cancel()
            raise
        _record(app, request.url.path, 200, gen=gen)
        return {**meta, "object": "chat.completion", "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                             "finish_reason": gen.finish_reason, "logprobs": None}],
                "usage": _usage(gen)}

    # ------------------------------------------------------------------ embeddings
    @app.post("/v1/embeddings")
    async def create_embeddings(request: Request):
        model_id, texts, fmt = check_embedding_request(await _json_body(request, limits), limits)
        if model_id != embeddings.name:
            raise APIError(404, f"The model {model_id!r} does not exist on this server; embeddings come from "
                                f"{embeddings.name!r}", param="model", code="model_not_found")
        counts = await run_in_threadpool(embeddings.count_tokens, texts)
        longest = max(counts)
        if longest > embeddings.max_tokens:
            raise APIError(400, f"input[{counts.index(longest)}] is {longest} tokens; {embeddings.name} reads at "
                                f"most {embeddings.max_tokens}", param="input", code="context_length_exceeded")
        t0 = time.perf_counter()
        vectors = await run_in_threadpool(embeddings.encode, texts)
        data = []
        for i, vec in enumerate(vectors):
            value = base64.b64encode(vec.astype("<f4").tobytes()).decode() if fmt == "base64" else vec.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        _record(app, request.url.path, 200, prompt_tokens=sum(counts), seconds=time.perf_counter() - t0)
        return {"object": "list", "data": data, "model": embeddings.name,
                "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}}

    return app


# ---------------------------------------------------------------------------------- helpers
async def _json_body(request: Request, limits: Limits):
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > limits.max_body_bytes:
        raise APIError(413, f"the request body is {int(size):,} bytes; at most {limits.max_body_bytes:,} are accepted")
    raw = await request.body()
    if len(raw) > limits.max_body_bytes:
        raise APIError(413, f"the request body is {len(raw):,} bytes; at most {limits.max_body_bytes:,} are accepted")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from exc


def _usage(gen) -> dict:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens}


def _sse_line(payload) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


async def _sse(app, request, gen, events, meta, include_usage: bool, keepalive_s: float):
    """The chunks of a streamed answer, in OpenAI's ``chat.completion.chunk`` format."""
    def chunk(delta: dict, finish=None) -> dict:
        return {**meta, "object": "chat.completion.chunk", "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    try:
        yield _sse_line(chunk({"role": "assistant", "content": ""}))
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), timeout=keepalive_s)
            except asyncio.TimeoutError:  # still queued: an SSE comment keeps clients and proxies from timing out
                yield ": waiting\n\n"
                continue
            if kind == "text":
                yield _sse_line(chunk({"content": value}))
            elif kind == "error":
                _record(app, request.url.path, 500, error=value)
                yield _sse_line(APIError(500, value, type="server_error").body())
                break
            else:
                yield _sse_line(chunk({}, gen.finish_reason))
                if include_usage:
                    yield _sse_line({**meta, "object": "chat.completion.chunk", "choices": [], "usage": _usage(gen)})
                _record(app, request.url.path, 200, gen=gen, stream=True)
                break
        yield _sse_line("[DONE]")
    finally:
        if gen.finish_reason is None:  # the client went away before the end: stop decoding for it
            gen.cancel()


def _record(app, path: str, status: int, *, gen=None, stream: bool = False, error: str | None = None,
            prompt_tokens: int | None = None, seconds: float | None = None) -> None:
    """One line of the request log: status, tokens and latencies (seconds)."""
    entry = {"time": time.time(), "path": path, "status": status}
    if gen is not None:
        entry.update(stream=stream, prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
                     queued_s=round(gen.started - gen.submitted, 4) if gen.started else None,
                     ttft_s=round(gen.ttft, 4) if gen.ttft is not None else None,
                     total_s=round(gen.finished - gen.submitted, 4) if gen.finished else None,
                     batch_size=gen.batch_size, finish_reason=gen.finish_reason)
    if prompt_tokens is not None:
        entry["prompt_tokens"] = prompt_tokens
    if seconds is not None:
        entry["total_s"] = round(seconds, 4)
    if error is not None:
        entry["error"] = error
    app.state.request_log.append(entry)
    log.info("%s %s %s", status, path, {k: v for k, v in entry.items() if k not in ("time", "path", "status")})
