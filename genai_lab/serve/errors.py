"""Request checking for the OpenAI-compatible API: limits, and errors in OpenAI's JSON shape.

Every refused request gets a 4xx status and the body OpenAI's own API sends, which the official
client turns into a typed exception (``openai.BadRequestError`` for 400, ``NotFoundError`` for
404, …)::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "messages", "code": null}}

The checks here are plain functions of the decoded JSON body, so they are tested without a server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Roles a chat message may have (``developer`` is OpenAI's newer name for ``system``).
ROLES = ("system", "developer", "user", "assistant")


class APIError(Exception):
    """A request the server refuses: HTTP ``status`` and OpenAI's error fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests get a 400 (or 413 for a huge body).

    ``max_prompt_tokens`` bounds the chat template's tokens; ``max_tokens`` the answer's.  Both
    protect the server: a CPU decodes tens of tokens per second, so one 8k-token request would hold
    the model for minutes while everyone else waits.
    """

    max_prompt_tokens: int = 2048
    max_tokens: int = 512
    default_max_tokens: int = 128
    max_messages: int = 64
    max_body_bytes: int = 1_000_000
    max_embedding_inputs: int = 64

    def __post_init__(self) -> None:
        for name in ("max_prompt_tokens", "max_tokens", "default_max_tokens", "max_messages",
                     "max_body_bytes", "max_embedding_inputs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.default_max_tokens > self.max_tokens:
            raise ValueError("default_max_tokens must be <= max_tokens")


def bad(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def _number(body: dict, name: str, default: float, low: float, high: float, *, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(f"{name} must be a number, got {value!r}", name)
    if value > high or value < low or (low_open and value == low):
        interval = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise bad(f"{name} must be in {interval}, got {value!r}", name)
    return float(value)


def message_text(message: dict, index: int) -> str:
    """The text of one message: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(f"messages[{index}].content: only text parts are supported "
                          f"({{'type': 'text', 'text': ...}})", f"messages[{index}].content")
            parts.append(part["text"])
        return "".join(parts)
    if content is None and message.get("role") == "assistant":
        return ""
    raise bad(f"messages[{index}].content must be a string or a list of text parts", f"messages[{index}].content")


def check_messages(messages, limits: Limits) -> list[dict]:
    """Plain ``[{"role", "content"}]`` messages, or an :class:`APIError` saying what is wrong."""
    if messages is None:
        raise bad("messages is required", "messages")
    if not isinstance(messages, list):
        raise bad(f"messages must be a list of messages, got {type(messages).__name__}", "messages")
    if not messages:
        raise bad("messages must hold at least one message", "messages")
    if len(messages) > limits.max_messages:
        raise bad(f"messages holds {len(messages)} messages; at most {limits.max_messages} are allowed", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise bad(f"messages[{i}] must be an object with role and content", f"messages[{i}]")
        role = m.get("role")
        if role not in ROLES:
            raise bad(f"messages[{i}].role must be one of {list(ROLES)}, got {role!r}", f"messages[{i}].role")
        out.append({"role": "system" if role == "developer" else role, "content": message_text(m, i)})
    if out[-1]["role"] == "assistant":
        raise bad("the last message must not be the assistant's: there is nothing to answer", "messages")
    if not any(m["content"].strip() for m in out if m["role"] == "user"):
        raise bad("messages must hold a user message with some text", "messages")
    return out


@dataclass
class ChatParams:
    """A checked chat request."""

    model: str
    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    stream: bool
    include_usage: bool
    seed: int | None
    stop: tuple[str, ...]


def check_chat_request(body, limits: Limits) -> ChatParams:
    """Check a ``/v1/chat/completions`` body (not yet the model name or the prompt's length)."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model is required (a model id from /v1/models)", "model")
    messages = check_messages(body.get("messages"), limits)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if max_tokens is None:
        max_tokens = limits.default_max_tokens
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise bad(f"{param} must be a positive integer, got {max_tokens!r}", param)
    elif max_tokens > limits.max_tokens:
        raise bad(f"{param} is {max_tokens}; this server generates at most {limits.max_tokens} tokens", param)
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0, low_open=True)
    n = body.get("n")
    if n is not None and n != 1:
        raise bad(f"n must be 1 on this server, got {n!r}", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad(f"stream must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("stream_options must be an object", "stream_options")
    include_usage = bool(options.get("include_usage", False))
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad(f"seed must be an integer, got {seed!r}", "seed")
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (stop,)
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) and s for s in stop):
        stop = tuple(stop)
    else:
        raise bad("stop must be a string or a list of at most 4 non-empty strings", "stop")
    if stop and not all(stop):
        raise bad("stop strings must not be empty", "stop")
    return ChatParams(model, messages, max_tokens, temperature, top_p, stream, include_usage, seed, stop)


def check_embedding_request(body, limits: Limits) -> tuple[str, list[str], str]:
    """``(model, texts, encoding_format)`` of a ``/v1/embeddings`` body."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model is required (a model id from /v1/models)", "model")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad("input must be a string or a non-empty list of strings (token arrays are not supported)", "input")
    if len(texts) > limits.max_embedding_inputs:
        raise bad(f"input holds {len(texts)} texts; at most {limits.max_embedding_inputs} per request", "input")
    if any(not t.strip() for t in texts):
        raise bad("input must not contain empty strings", "input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad(f"encoding_format must be 'float' or 'base64', got {fmt!r}", "encoding_format")
    return model, texts, fmt
