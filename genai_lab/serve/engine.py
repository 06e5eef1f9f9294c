"""The generation engine behind the server: one worker thread owns the model and decodes requests.

A web server must never run a model on its event loop: a 2-second generation would freeze every
other request (health checks included) for 2 seconds.  So the HTTP handlers only *submit* work::

    handler → engine.submit(prompt_ids, ...) → Generation (a handle)  ─┐
                                                                       ▼
    worker thread: take waiting requests → prefill → decode token by token (KV cache)
                   → each new piece of text goes to its Generation's listener

``max_batch_size=1`` decodes one request at a time (requests wait in a queue, first come first
served).  With ``max_batch_size=B > 1`` the worker takes up to ``B`` requests that are waiting and
decodes them **together**: their prompts are left-padded into one ``(B, T)`` batch, and every
decoding step runs the model once for all of them, so the weights are read from memory once per
step instead of once per request.  This is *continuous batching* in its simplest form: a request
that ends leaves the batch at once (its rows of the KV cache are dropped), and a request that
arrives joins the running batch at the next step (its prompt is read on its own, then its cache is
left-padded to the batch's length and appended).  vLLM adds paged KV memory and chunked prefill.
Greedy decoding gives the same tokens either way (tested).

Sampling reuses :mod:`genai_lab.sampling` (temperature, top-p); ``temperature=0`` is greedy.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("genai_lab.serve")

#: What a listener receives: ``("text", str)`` for each new piece of the answer, then exactly one
#: ``("done", Generation)`` or ``("error", str)``.
Event = tuple


class QueueFullError(RuntimeError):
    """More requests are waiting than the engine accepts (the server answers 429)."""


@dataclass
class Generation:
    """One request in flight: its settings, its progress and its timings.

    Events go to ``listener(event)`` when one was given (the server passes a function that hands
    them to its event loop), else into a thread-safe queue that iterating the generation reads::

        for kind, value in engine.submit(ids, max_tokens=20):   # blocks until each piece arrives
            ...
    """

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    listener: Callable[[Event], None] | None = None
    id: int = 0
    lstrip: bool = False              # drop the answer's leading whitespace (before stop strings apply)
    # filled in by the worker
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    submitted: float = field(default_factory=time.perf_counter)
    started: float | None = None      # the worker took it (prefill begins)
    first_token: float | None = None  # the first answer token was chosen
    finished: float | None = None
    batch_size: int = 0               # how many requests were decoded together with this one
    cancelled: bool = False
    _events: queue.Queue = field(default_factory=queue.Queue, repr=False)

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def ttft(self) -> float | None:
        """Seconds from submission to the first answer token (queueing + prefill + one step)."""
        return None if self.first_token is None else self.first_token - self.submitted

    def cancel(self) -> None:
        """Stop decoding this request at the next step (e.g. the client went away)."""
        self.cancelled = True

    def emit(self, event: Event) -> None:
        if self.listener is None:
            self._events.put(event)
            return
        try:
            self.listener(event)
        except Exception:  # the receiver is gone (e.g. its event loop closed): stop decoding for it
            self.cancelled = True

    def __iter__(self):
        """Blocking iteration over the events (only without a listener)."""
        if self.listener is not None:
            raise TypeError("this generation sends its events to its listener; iterate one made without it")
        while True:
            event = self._events.get()
            yield event
            if event[0] in ("done", "error"):
                return

    def result(self) -> str:
        """Wait for the whole answer and return its text (raises ``RuntimeError`` on a failed request)."""
        for kind, value in self:
            if kind == "error":
                raise RuntimeError(value)
        return self.text


class TextStream:
    """Turns a growing list of token ids into new pieces of text, safe for multi-byte characters.

    Decoding token by token breaks characters that span tokens (an emoji, a Japanese character):
    the tokenizer yields ``"\\ufffd"`` until the last byte arrives.  We decode the whole answer
    each time and hold back an unfinished tail, plus (with ``stop`` strings) the last characters
    that could still grow into a stop string.  With ``lstrip`` the answer's leading whitespace is
    dropped first, so a stop string ``"\\n"`` ends the first line of text, not a leading newline.
    """

    def __init__(self, tokenizer, stop: tuple[str, ...] = (), *, lstrip: bool = False):
        self.tokenizer = tokenizer
        self.lstrip = bool(lstrip)
        self.stop = tuple(stop)
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.sent = 0
        self.text = ""

    def update(self, token_ids: list[int], final: bool = False) -> tuple[str, bool]:
        """New text to send and whether a stop string ended the answer."""
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        if self.lstrip:
            text = text.lstrip()
        hit = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if hit >= 0:
            text, final = text[:hit], True
        self.text = text
        end = len(text)
        if not final:
            if text.endswith("\ufffd"):
                end = len(text.rstrip("\ufffd"))
            end = max(self.sent, end - self.hold)
        piece = text[self.sent:end]
        self.sent = end
        return piece, hit >= 0


class ChatEngine:
    """A chat model served by one worker thread.

    Args:
        tokenizer, model: a Hugging Face causal LM with a chat template (e.g.
            :func:`genai_lab.models.load_smollm2`), in eval mode.
        name: the model id clients ask for (``"SmolLM2-135M-Instruct"``).
        max_batch_size: decode up to this many waiting requests together (1 = one at a time).
        max_queue: refuse new requests (:class:`QueueFullError`) while this many are waiting.
        batch_window: with ``max_batch_size > 1``, how long (seconds) the worker waits after the first
            request for others to join its batch (clients that start together are batched together).
    """

    def __init__(self, tokenizer, model, *, name: str, max_batch_size: int = 1, max_queue: int = 64,
                 batch_window: float = 0.01):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        for arg, value in (("max_batch_size", max_batch_size), ("max_queue", max_queue)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("tokenizer must have a chat template (an instruct/chat model)")
        self.tokenizer, self.model, self.name = tokenizer, model.eval(), name
        if not isinstance(batch_window, (int, float)) or not 0 <= batch_window <= 1:
            raise ValueError(f"batch_window must be a number of seconds in [0, 1], got {batch_window!r}")
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.batch_window = float(batch_window) if max_batch_size > 1 else 0.0
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self.eos_ids = _eos_ids(tokenizer, model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self._queue: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._open = threading.Event()
        self._open.set()
        self.active = 0
        self.joins_running: bool | None = None if max_batch_size > 1 else False  # known after a first batch
        self.batches: list[int] = []   # the size of every batch decoded (for measurements)
        self._thread = threading.Thread(target=self._work, name=f"engine-{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ client side
    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of ``messages`` as the model reads them (chat template + generation prompt)."""
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return list(enc["input_ids"])

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, prompt_ids: list[int], *, max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
               seed: int | None = None, stop: tuple[str, ...] | list[str] = (),
               listener: Callable[[Event], None] | None = None, lstrip: bool = False) -> Generation:
        """Queue one request and return its :class:`Generation` at once (decoding happens later).

        ``lstrip``: drop the answer's leading whitespace (see :class:`TextStream`)."""
        if not prompt_ids or not all(isinstance(i, int) for i in prompt_ids):
            raise ValueError("prompt_ids must be a non-empty list of token ids")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
        if len(prompt_ids) + max_tokens > self.context_length:
            raise ValueError(f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                             f"model's context of {self.context_length} tokens")
        if not (isinstance(temperature, (int, float)) and 0 <= temperature < math.inf):
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
        if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
            raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")
        if self._stop.is_set():
            raise RuntimeError("the engine is closed")
        if self._queue.qsize() >= self.max_queue:
            raise QueueFullError(f"{self._queue.qsize()} requests are waiting (max_queue={self.max_queue})")
        gen = Generation(list(prompt_ids), max_tokens, float(temperature), float(top_p), seed, tuple(stop),
                         listener, next(self._ids), bool(lstrip))
        self._queue.put(gen)
        return gen

    def generate(self, messages: list[dict], *, max_tokens: int = 64, **kwargs) -> Generation:
        """Submit chat ``messages`` and wait for the whole answer (the finished :class:`Generation`)."""
        gen = self.submit(self.encode_chat(messages), max_tokens=max_tokens, **kwargs)
        gen.result()
        return gen

    @contextlib.contextmanager
    def hold(self):
        """Inside this block the worker starts no new work; requests submitted meanwhile wait and are
        then decoded together (up to ``max_batch_size``).  For demonstrations and tests."""
        self._open.clear()
        try:
            yield self
        finally:
            self._open.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the batch it is decoding."""
        self._stop.set()
        self._open.set()
        self._queue.put(None)
        self._thread.join(timeout)

    # ------------------------------------------------------------------ worker side
    def _take(self, block: bool) -> list[Generation]:
        """Waiting requests to admit: up to the free places in the batch (blocking for the first one
        when nothing is decoding, then waiting ``batch_window`` for others to join it)."""
        free = self.max_batch_size - self.active
        taken: list[Generation] = []
        if free <= 0 or (not block and not self._open.is_set()):
            return taken
        deadline = None
        while len(taken) < free:
            try:
                if block and not taken:
                    item = self._queue.get()
                    self._open.wait()
                    deadline = time.perf_counter() + self.batch_window
                else:
                    wait = max(0.0, deadline - time.perf_counter()) if deadline else 0.0
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._stop.set()
                break
            if not item.cancelled:
                taken.append(item)
        return taken

    def _work(self) -> None:
        import torch

        running: _Batch | None = None
        with torch.inference_mode():
            while not self._stop.is_set():
                new: list[Generation] = []
                try:
                    # admit waiting requests: a new batch, or (continuous batching) into the running one
                    if running is None or self.joins_running:
                        new = self._take(block=running is None)
                    if new:
                        joined = _Batch.prefill(self, new)
                        if self.joins_running is None and joined is not None:
                            self.joins_running = self.max_batch_size > 1 and joined.can_merge()
                        running = joined if running is None else running.merge(joined)
                        self.active = len(running.gens) if running is not None else 0
                        if running is not None:
                            self.batches.append(len(running.gens))
                            for g in new:
                                g.batch_size = len(running.gens)
                    if running is not None:  # one decoding step for every request in the batch
                        running = running.step()
                except Exception as exc:  # the server keeps serving: these requests fail, the next run
                    log.exception("generation failed")
                    for g in (running.gens if running is not None else []) + new:
                        if g.finish_reason is None:
                            g.finished = time.perf_counter()
                            g.finish_reason = "error"
                            g.emit(("error", f"generation failed: {type(exc).__name__}: {exc}"))
                    running = None
                self.active = len(running.gens) if running is not None else 0
        self.active = 0
        for g in running.gens if running is not None else []:
            g.emit(("error", "the server is shutting down"))
        while True:  # closed: whoever still waits gets an answer instead of waiting forever
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not None and left.finish_reason is None:
                left.emit(("error", "the server is shutting down"))


class _Batch:
    """The requests being decoded together, and their shared state.

    ``cache``: the KV cache, one row per request (left-padded to a common length ``T``);
    ``mask`` ``(R, T)``: 1 where a cached position is a real token; ``last_pos`` ``(R,)``: the
    position of each row's newest token; ``next_ids`` ``(R,)``: the token each row reads next.

    A decoding step feeds ``next_ids`` as a ``(R, 1)`` batch, so the weights are read once for all
    rows.  Requests join by being prefilled on their own and merged in (:meth:`merge`); finished
    ones leave (:meth:`keep`).  Their rows of the cache go with them.
    """

    def __init__(self, engine: ChatEngine, gens, streams, generators, cache, mask, last_pos, next_ids):
        self.engine, self.gens, self.streams, self.generators = engine, gens, streams, generators
        self.cache, self.mask, self.last_pos, self.next_ids = cache, mask, last_pos, next_ids

    @classmethod
    def prefill(cls, engine: ChatEngine, gens: list[Generation]) -> "_Batch | None":
        """Read the prompts of ``gens`` (left-padded into one batch) and choose their first tokens."""
        import torch

        started = time.perf_counter()
        generators = []
        for g in gens:
            g.started = started
            gen = None
            if g.temperature > 0:
                gen = torch.Generator(device="cpu")
                gen.manual_seed(g.seed if g.seed is not None else torch.seed())
            generators.append(gen)
        ids, mask = left_pad([g.prompt_ids for g in gens], engine.pad_id)
        device = engine.model.device
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = engine.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                           logits_to_keep=1)
        streams = [TextStream(engine.tokenizer, g.stop, lstrip=g.lstrip) for g in gens]
        batch = cls(engine, list(gens), streams, generators, out.past_key_values, mask, positions[:, -1], None)
        return batch._advance(out.logits[:, -1, :])

    def step(self) -> "_Batch | None":
        """One decoding step for every row: feed ``next_ids``, choose the following tokens."""
        import torch

        rows = len(self.gens)
        self.mask = torch.cat([self.mask, self.mask.new_ones(rows, 1)], dim=1)
        self.last_pos = self.last_pos + 1
        out = self.engine.model(input_ids=self.next_ids.unsqueeze(1), attention_mask=self.mask,
                                position_ids=self.last_pos.unsqueeze(1), past_key_values=self.cache,
                                use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        return self._advance(out.logits[:, -1, :])

    def _advance(self, logits) -> "_Batch | None":
        """Choose each row's next token from ``logits`` ``(R, V)``, stream its text, drop finished rows."""
        import torch

        scores = logits.float().cpu()
        engine, chosen, alive = self.engine, [], []
        for j, g in enumerate(self.gens):
            token = choose_token(scores[j:j + 1], g.temperature, g.top_p, self.generators[j])
            now = time.perf_counter()
            if g.first_token is None:
                g.first_token = now
            finish = None
            if token in engine.eos_ids:
                finish = "stop"
            else:
                g.token_ids.append(token)
                if len(g.token_ids) >= g.max_tokens:
                    finish = "length"
            if g.cancelled:
                finish = finish or "cancelled"
            piece, stopped = self.streams[j].update(g.token_ids, final=finish is not None)
            if stopped:
                finish = "stop"
            g.text = self.streams[j].text
            if piece:
                g.emit(("text", piece))
            if finish is None:
                chosen.append(token)
                alive.append(j)
            else:
                g.finish_reason, g.finished = finish, now
                g.emit(("done", g))
        if not alive:
            return None
        if len(alive) < len(self.gens):
            self.keep(alive)
        self.next_ids = torch.tensor(chosen, dtype=torch.long, device=self.mask.device)
        return self

    def keep(self, rows: list[int]) -> None:
        """Only rows ``rows`` stay (finished requests leave the batch, with their cache rows)."""
        import torch

        idx = torch.tensor(rows, device=self.mask.device)
        self.cache.batch_select_indices(idx)
        self.mask, self.last_pos = self.mask[idx], self.last_pos[idx]
        for name in ("gens", "streams", "generators"):
            setattr(self, name, [getattr(self, name)[j] for j in rows])

    def can_merge(self) -> bool:
        """Whether new rows can join (a plain KV cache per layer; not sliding-window caches)."""
        layers = getattr(self.cache, "layers", None)
        return bool(layers) and all(type(layer).__name__ == "DynamicLayer" for layer in layers)

    def merge(self, other: "_Batch | None") -> "_Batch":
        """Add the rows of ``other`` (just prefilled): left-pad the shorter cache so both line up."""
        import torch
        import torch.nn.functional as F

        if other is None:
            return self
        t_self, t_other = self.mask.shape[1], other.mask.shape[1]
        width = max(t_self, t_other)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            for name in ("keys", "values"):  # (R, heads, T, head_dim): pad T on the left
                a = F.pad(getattr(mine, name), (0, 0, width - t_self, 0))
                b = F.pad(getattr(theirs, name), (0, 0, width - t_other, 0))
                setattr(mine, name, torch.cat([a, b], dim=0))
        self.mask = torch.cat([F.pad(self.mask, (width - t_self, 0)), F.pad(other.mask, (width - t_other, 0))])
        self.last_pos = torch.cat([self.last_pos, other.last_pos])
        self.next_ids = torch.cat([self.next_ids, other.next_ids])
        for name in ("gens", "streams", "generators"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def choose_token(scores, temperature: float, top_p: float, generator=None) -> int:
    """The next token from one row of logits ``(1, V)``: greedy at ``temperature == 0``, else sampled
    after temperature and top-p (:func:`genai_lab.sampling.process_logits`)."""
    from ..sampling import process_logits, sample_next_token

    if temperature == 0:
        return int(scores.argmax(dim=-1))
    filtered = process_logits(scores, temperature=temperature, top_p=top_p if top_p < 1 else None)
    return int(sample_next_token(filtered, generator=generator))


def left_pad(sequences: list[list[int]], pad_id: int):
    """Left-pad token lists into ``(B, T)`` ids and a ``(B, T)`` attention mask (1 = real token).

    Left, not right: every row's *last* column is then its newest token, so one decoding step
    appends one column for the whole batch.
    """
    import torch

    if not sequences or not all(sequences):
        raise ValueError("sequences must be a non-empty list of non-empty token lists")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    return ids, mask


def _eos_ids(tokenizer, model) -> set[int]:
    ids = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("tokenizer or model must define eos_token_id")
    return ids
