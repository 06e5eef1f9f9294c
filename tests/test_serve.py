"""Chapter 10: the OpenAI-compatible server, its chat page and the load-test client.

Most tests serve a tiny random ``LlamaForCausalLM`` with SmolLM2's tokenizer (the same class and
code path as SmolLM2, in milliseconds); the slow tests serve the real SmolLM2-135M-Instruct.
Every server is started and stopped by the tests themselves.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
import httpx  # noqa: E402
import torch  # noqa: E402

from genai_lab.serve import engine as eng  # noqa: E402
from genai_lab.serve import loadtest  # noqa: E402
from genai_lab.serve.app import Embeddings, create_app  # noqa: E402
from genai_lab.serve.errors import Limits  # noqa: E402
from genai_lab.serve.models import smollm2_tokenizer, tiny_chat_model  # noqa: E402
from genai_lab.serve.runner import ServerThread  # noqa: E402

TINY = "tiny-llama"
QUESTION = [{"role": "user", "content": "What is the capital of Japan?"}]


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tok():
    return smollm2_tokenizer()


@pytest.fixture(scope="module")
def tiny(tok):
    return tiny_chat_model(tok)


@pytest.fixture(scope="module")
def engine(tiny):
    e = eng.ChatEngine(*tiny, name=TINY)
    yield e
    e.close()


@pytest.fixture(scope="module")
def embeddings():
    from genai_lab.models import load_minilm

    return Embeddings(load_minilm("sentence"))


@pytest.fixture(scope="module")
def app(engine, embeddings):
    return create_app(engine, embeddings=embeddings, limits=Limits(max_prompt_tokens=256, max_tokens=64,
                                                                    default_max_tokens=16))


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def server(app):
    with ServerThread(app) as s:
        yield s


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)


def reference_greedy(tok, model, messages, max_new_tokens):
    """transformers' own greedy ``generate()``: the answer the server must give at temperature 0."""
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    new = out[0, enc["input_ids"].shape[1]:].tolist()
    eos = {tok.eos_token_id}
    if any(t in eos for t in new):
        new = new[:min(i for i, t in enumerate(new) if t in eos)]
    return new


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads of a server-sent-events body."""
    return [line[5:].strip() for line in text.split("\n") if line.startswith("data:")]


# ----------------------------------------------------------------------------------- engine
def test_engine_greedy_equals_transformers_generate(tok, tiny, engine):
    gen = engine.generate(QUESTION, max_tokens=12, temperature=0)
    assert gen.token_ids == reference_greedy(tok, tiny[1], QUESTION, 12)
    assert gen.text == tok.decode(gen.token_ids, skip_special_tokens=True)
    assert gen.finish_reason in ("stop", "length") and gen.prompt_tokens == len(engine.encode_chat(QUESTION))
    assert gen.ttft is not None and 0 < gen.ttft <= gen.finished - gen.submitted


def test_batched_decoding_gives_the_same_tokens_as_one_at_a_time(tok, tiny):
    """Left-padded prompts of different lengths decoded together = each decoded alone (greedy)."""
    prompts = [[{"role": "user", "content": q}] for q in
               ("Hi", "What is the capital of Japan? Answer in one word please.", "Name a colour.")]
    batched = eng.ChatEngine(*tiny, name=TINY, max_batch_size=3)
    try:
        with batched.hold():  # all three wait, then are decoded as one batch
            gens = [batched.submit(batched.encode_chat(m), max_tokens=10 + 3 * k) for k, m in enumerate(prompts)]
        texts = [g.result() for g in gens]
    finally:
        batched.close()
    assert [g.batch_size for g in gens] == [3, 3, 3] and batched.batches == [3]
    for m, g, k in zip(prompts, gens, range(3)):
        assert g.token_ids == reference_greedy(tok, tiny[1], m, 10 + 3 * k)
    assert texts == [g.text for g in gens]


def test_requests_join_a_running_batch_and_get_the_same_tokens(tok, tiny):
    """Continuous batching: requests that arrive while another is decoding join its batch (their caches
    left-padded to a common length, in either direction) and still get exactly their greedy tokens."""
    short, long_, other = ([{"role": "user", "content": q}] for q in
                           ("Hi", "Please explain, in great detail and with many examples, how rain forms over "
                                  "the sea and why it falls where it does.", "Hey"))
    cont = eng.ChatEngine(*tiny, name=TINY, max_batch_size=4)
    try:
        first = cont.submit(cont.encode_chat(short), max_tokens=150)
        events = iter(first)
        next(e for e in events if e[0] == "text")          # the first request is decoding
        second = cont.submit(cont.encode_chat(long_), max_tokens=12)   # longer than the batch so far
        third = cont.submit(cont.encode_chat(other), max_tokens=20)    # shorter
        for g in (second, third):
            g.result()
        for _ in events:
            pass
    finally:
        cont.close()
    assert first.finish_reason == "length" and max(second.batch_size, third.batch_size) >= 2
    assert cont.joins_running is True
    for g, m, n in ((first, short, 150), (second, long_, 12), (third, other, 20)):
        assert g.token_ids == reference_greedy(tok, tiny[1], m, n)


def test_sampling_is_seeded(engine):
    a = engine.generate(QUESTION, max_tokens=8, temperature=1.0, seed=7).token_ids
    b = engine.generate(QUESTION, max_tokens=8, temperature=1.0, seed=7).token_ids
    c = engine.generate(QUESTION, max_tokens=8, temperature=1.0, seed=8).token_ids
    assert a == b and a != c


def test_text_stream_keeps_multibyte_characters_whole(tok):
    text = "日本語のテキスト 🙂 done"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    stream, pieces = eng.TextStream(tok), []
    for n in range(1, len(ids) + 1):
        piece, _ = stream.update(ids[:n], final=n == len(ids))
        pieces.append(piece)
    assert "".join(pieces) == tok.decode(ids) and not any("\ufffd" in p for p in pieces)


def test_text_stream_cuts_at_a_stop_string(tok):
    ids = tok("Hello world. Goodbye.", add_special_tokens=False)["input_ids"]
    stream, out, stopped = eng.TextStream(tok, stop=("world",)), "", False
    for n in range(1, len(ids) + 1):
        piece, stopped = stream.update(ids[:n])
        out += piece
        if stopped:
            break
    assert stopped and out == "Hello "


def test_left_pad_and_bad_input():
    ids, mask = eng.left_pad([[5, 6, 7], [9]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="sequences"):
        eng.left_pad([[1], []], 0)


def test_engine_rejects_bad_arguments(engine, tiny):
    with pytest.raises(ValueError, match="max_tokens"):
        engine.submit([1, 2], max_tokens=0)
    with pytest.raises(ValueError, match="prompt_ids"):
        engine.submit([], max_tokens=3)
    with pytest.raises(ValueError, match="context"):
        engine.submit([1] * 10, max_tokens=engine.context_length)
    with pytest.raises(ValueError, match="temperature"):
        engine.submit([1, 2], max_tokens=3, temperature=-1)
    with pytest.raises(ValueError, match="max_batch_size"):
        eng.ChatEngine(*tiny, name="x", max_batch_size=0)
    with pytest.raises(ValueError, match="name"):
        eng.ChatEngine(*tiny, name="")


def test_full_queue_is_refused(tiny):
    small = eng.ChatEngine(*tiny, name=TINY, max_queue=1)
    refused = 0
    try:
        with small.hold():  # the worker takes at most one request, so the queue fills
            for _ in range(3):
                try:
                    small.submit([1, 2], max_tokens=2)
                except eng.QueueFullError:
                    refused += 1
    finally:
        small.close()
    assert refused >= 1


# ----------------------------------------------------------------------------------- HTTP shapes
def test_models_and_health(client, engine):
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == [TINY, "all-MiniLM-L6-v2"]
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == TINY


def test_chat_completion_shape_and_usage(client, engine):
    r = client.post("/v1/chat/completions", json={"model": TINY, "messages": QUESTION, "max_tokens": 10,
                                                  "temperature": 0})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == TINY
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    want = engine.generate(QUESTION, max_tokens=10, temperature=0)
    assert choice["message"]["content"] == want.text
    assert body["usage"] == {"prompt_tokens": want.prompt_tokens, "completion_tokens": want.completion_tokens,
                             "total_tokens": want.prompt_tokens + want.completion_tokens}


def test_streaming_sends_openai_chunks_then_done(client):
    req = {"model": TINY, "messages": QUESTION, "max_tokens": 12, "temperature": 0}
    plain = client.post("/v1/chat/completions", json=req).json()["choices"][0]["message"]["content"]
    r = client.post("/v1/chat/completions", json={**req, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) > 1, "the answer must arrive in pieces, not at once"


def test_request_log_records_latencies(client, app):
    client.post("/v1/chat/completions", json={"model": TINY, "messages": QUESTION, "max_tokens": 4})
    entry = [e for e in app.state.request_log if e["path"] == "/v1/chat/completions" and e["status"] == 200][-1]
    assert entry["prompt_tokens"] > 0 and 0 < entry["ttft_s"] <= entry["total_s"] and entry["batch_size"] >= 1


BAD_CHAT = [
    ({"model": TINY, "messages": []}, 400, "messages", None),
    ({"model": TINY}, 400, "messages", None),
    ({"model": TINY, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role", None),
    ({"model": TINY, "messages": [{"role": "user", "content": "  "}]}, 400, "messages", None),
    ({"model": TINY, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
     "messages[0].content", None),
    ({"model": TINY, "messages": QUESTION, "max_tokens": 65}, 400, "max_tokens", None),
    ({"model": TINY, "messages": QUESTION, "max_tokens": 0}, 400, "max_tokens", None),
    ({"model": TINY, "messages": [{"role": "user", "content": "word " * 400}]}, 400, "messages",
     "context_length_exceeded"),
    ({"model": "gpt-4o", "messages": QUESTION}, 404, "model", "model_not_found"),
    ({"model": TINY, "messages": QUESTION, "temperature": 3}, 400, "temperature", None),
    ({"model": TINY, "messages": QUESTION, "temperature": "hot"}, 400, "temperature", None),
    ({"model": TINY, "messages": QUESTION, "top_p": 0}, 400, "top_p", None),
    ({"model": TINY, "messages": QUESTION, "n": 2}, 400, "n", None),
    ({"model": TINY, "messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
    ({"messages": QUESTION}, 400, "model", None),
]


@pytest.mark.parametrize("body, status, param, code", BAD_CHAT)
def test_bad_chat_requests_get_openai_errors(client, body, status, param, code):
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    if code:
        assert err["code"] == code


def test_malformed_and_huge_bodies_and_the_server_keeps_serving(client):
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", content=b"x" * 1_000_001, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/v1/chat/completions", json=[1, 2]).status_code == 400
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    ok = client.post("/v1/chat/completions", json={"model": TINY, "messages": QUESTION, "max_tokens": 3})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] >= 1


def test_embeddings_match_minilm_and_refuse_bad_input(client, embeddings):
    texts = ["The capital of Japan is Tokyo.", "Cats sleep a lot."]
    r = client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": texts})
    assert r.status_code == 200
    body = r.json()
    vecs = np.array([d["embedding"] for d in body["data"]])
    assert vecs.shape == (2, 384) and [d["index"] for d in body["data"]] == [0, 1]
    want = embeddings.model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(vecs, want, atol=1e-5)
    assert body["usage"]["prompt_tokens"] == sum(embeddings.count_tokens(texts))
    for bad, status, param in [({"model": "all-MiniLM-L6-v2", "input": []}, 400, "input"),
                               ({"model": "all-MiniLM-L6-v2", "input": ""}, 400, "input"),
                               ({"model": "all-MiniLM-L6-v2", "input": [[1, 2, 3]]}, 400, "input"),
                               ({"model": "all-MiniLM-L6-v2", "input": "word " * 300}, 400, "input"),
                               ({"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "hex"}, 400,
                                "encoding_format"),
                               ({"model": TINY, "input": "x"}, 404, "model")]:
        r = client.post("/v1/embeddings", json=bad)
        assert r.status_code == status and r.json()["error"]["param"] == param, (bad, r.text)


def test_unknown_chat_model_names_fail_clearly():
    from genai_lab.serve.models import load_chat_model

    with pytest.raises(ValueError, match="offline"):
        load_chat_model("no-such-model")
    with pytest.raises(ValueError, match="model"):
        load_chat_model("")


def test_create_app_rejects_bad_arguments(engine):
    with pytest.raises(TypeError, match="engine"):
        create_app("smollm2-engine")
    with pytest.raises(TypeError, match="limits"):
        create_app(engine, limits={"max_tokens": 3})
    with pytest.raises(ValueError, match="max_tokens"):
        Limits(max_tokens=0)


# ----------------------------------------------------------------------------------- real server + openai client
def test_openai_client_chat_streaming_and_embeddings(oai, engine, embeddings):
    reply = oai.chat.completions.create(model=TINY, messages=QUESTION, max_tokens=12, temperature=0)
    want = engine.generate(QUESTION, max_tokens=12, temperature=0)
    assert reply.choices[0].message.content == want.text
    assert reply.usage.completion_tokens == want.completion_tokens
    stream = oai.chat.completions.create(model=TINY, messages=QUESTION, max_tokens=12, temperature=0, stream=True,
                                         stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(pieces) == want.text and len(pieces) > 1 and usage.completion_tokens == want.completion_tokens
    emb = oai.embeddings.create(model="all-MiniLM-L6-v2", input=["hello world", "goodbye"])  # base64 on the wire
    got = np.array([d.embedding for d in emb.data])
    np.testing.assert_allclose(got, embeddings.model.encode(["hello world", "goodbye"], normalize_embeddings=True),
                               atol=1e-6)
    assert [m.id for m in oai.models.list()] == [TINY, "all-MiniLM-L6-v2"]


def test_openai_client_sees_4xx_and_the_server_keeps_serving(oai):
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(model=TINY, messages=[], max_tokens=3)
    assert bad.value.status_code == 400 and "messages" in str(bad.value)
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="nope", messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        oai.chat.completions.create(model=TINY, messages=QUESTION, max_tokens=10_000)
    ok = oai.chat.completions.create(model=TINY, messages=QUESTION, max_tokens=3)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_a_slow_generation_does_not_block_health_checks(tok):
    """While one answer is decoding (50 ms a step), /health and bad requests answer at once; a client
    that goes away stops its generation; a stream waiting longer than keepalive_s gets comment lines."""
    _, model = tiny_chat_model(tok)
    forward = model.forward

    def slow_forward(*args, **kwargs):
        time.sleep(0.05)
        return forward(*args, **kwargs)

    model.forward = slow_forward
    slow = eng.ChatEngine(tok, model, name=TINY)
    app = create_app(slow, embeddings=Embeddings(object()), keepalive_s=0.02)
    try:
        with ServerThread(app) as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
            body = {"model": TINY, "messages": QUESTION, "max_tokens": 200, "temperature": 0, "stream": True}
            with http.stream("POST", "/v1/chat/completions", json=body) as r:
                lines = r.iter_lines()  # keep a reference: a dropped iterator would close the stream
                comments = 0
                for line in lines:  # wait for the first piece of the answer
                    comments += line.startswith(":")
                    if line.startswith("data:") and '"content": ""' not in line and '"content"' in line:
                        break
                assert comments >= 1, "a request that waits > keepalive_s gets SSE comment lines"
                for _ in range(5):
                    t0 = time.perf_counter()
                    health = http.get("/health").json()
                    assert time.perf_counter() - t0 < 0.5 and health["decoding"] == 1, health
                t0 = time.perf_counter()
                assert http.post("/v1/chat/completions", json={"model": TINY, "messages": []}).status_code == 400
                assert time.perf_counter() - t0 < 0.5
            # the stream is closed after a few tokens: the engine stops decoding for it
            deadline = time.time() + 3
            while slow.active and time.time() < deadline:
                time.sleep(0.05)
            assert slow.active == 0
            # the official client ignores the keep-alive comments
            oai = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
            pieces = [c.choices[0].delta.content or "" for c in oai.chat.completions.create(
                model=TINY, messages=QUESTION, max_tokens=4, temperature=0, stream=True) if c.choices]
            plain = oai.chat.completions.create(model=TINY, messages=QUESTION, max_tokens=4, temperature=0)
            assert "".join(pieces) == plain.choices[0].message.content
    finally:
        slow.close()


# ----------------------------------------------------------------------------------- chat page in Chromium
def _browser():
    sys.path.insert(0, str(Path(__file__).parent / "site"))
    from chromium import Browser, find_chromium

    if find_chromium() is None:
        pytest.skip("chromium is not installed")
    return Browser(width=1000, height=900)


def _wait_for_answer(browser, turn: int, timeout: float = 60.0) -> dict:
    js = (f"(() => {{ const a = document.getElementById('answer-{turn}'); if (!a) return null;"
          " return {state: a.dataset.state, chunks: Number(a.dataset.chunks),"
          " text: a.querySelector('.content').textContent,"
          " stats: (a.querySelector('.stats') || {}).textContent || ''}; })()")
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = browser.evaluate(js)
        if got and got["state"] != "streaming":
            return got
        time.sleep(0.2)
    raise AssertionError(f"no finished answer {turn} after {timeout} s: {got}")


@pytest.mark.slow
def test_chat_page_streams_an_answer_in_chromium(server, engine):
    want = engine.generate(QUESTION, max_tokens=24, temperature=0).text
    from urllib.parse import quote

    with _browser() as browser:
        browser.open(f"{server.base_url}/?q={quote(QUESTION[0]['content'])}&autosend=1&max_tokens=24&temperature=0",
                     settle=0.2)
        got = _wait_for_answer(browser, 1)
        assert got["state"] == "done", got
        assert got["text"] == want and got["chunks"] > 1
        assert re.search(r"first token after \d+ ms", got["stats"])
        # a bad request shows the server's error message on the page, and the next question works
        # a question longer than the server accepts: the page shows the server's 400 message
        browser.evaluate("document.getElementById('question').value = 'word '.repeat(400);"
                         "document.getElementById('ask').requestSubmit(); true")
        err = _wait_for_answer(browser, 2)
        assert err["state"] == "error" and "400" in err["text"] and "tokens" in err["text"], err
        browser.evaluate("document.getElementById('max_tokens').value = '5';"
                         "document.getElementById('question').value = 'Hello';"
                         "document.getElementById('ask').requestSubmit(); true")
        assert _wait_for_answer(browser, 3)["state"] == "done"
        assert browser.console_errors == []


@pytest.mark.slow
def test_chat_page_streams_a_rag_answer_then_shows_its_sources_in_chromium(tok, embeddings):
    """The RAG model in the chat page: the answer's tokens arrive one piece after another, then the
    numbered sources appear under it, the cited one marked.  (Untied embeddings: a tied random model's
    greedy answer is only newlines, which the RAG model's one-line answer drops.)"""
    from urllib.parse import quote

    from genai_lab.rag.evaluate import sklearn_index
    from genai_lab.serve.rag_model import RAG_MODEL_ID, RagModel

    question = "How many samples are in the wine recognition dataset?"
    engine = eng.ChatEngine(*tiny_chat_model(tok, tie_word_embeddings=False), name=TINY)
    app = create_app(engine, embeddings=embeddings, rag=RagModel(sklearn_index()))
    watch = ("(() => { window.seen = []; new MutationObserver(() => {"
             " const a = document.getElementById('answer-1'); if (!a) return;"
             " const n = a.querySelector('.content').textContent.length;"
             " const s = a.querySelectorAll('.sources li').length;"
             " const last = window.seen[window.seen.length - 1];"
             " if (!last || last[0] !== n || last[1] !== s) window.seen.push([n, s]);"
             " }).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});"
             " return true; })()")
    with ServerThread(app) as server, _browser() as browser, contextlib.closing(engine):
        browser.open(f"{server.base_url}/?model={RAG_MODEL_ID}&q={quote(question)}&max_tokens=12&temperature=0",
                     settle=0.2)
        assert browser.evaluate("document.getElementById('model').value") == RAG_MODEL_ID
        browser.evaluate(watch)
        browser.evaluate("document.getElementById('ask').requestSubmit(); true")
        got = _wait_for_answer(browser, 1)
        sources = browser.evaluate("[...document.querySelectorAll('#answer-1 .sources li')].map(li =>"
                                   " ({label: li.querySelector('.label').textContent,"
                                   "   cited: li.classList.contains('cited'), value: li.value}))")
        seen = browser.evaluate("window.seen")
        title = browser.evaluate("document.querySelector('#answer-1 .sources-title').textContent")
        assert browser.console_errors == []
    assert got["state"] == "done" and got["chunks"] > 1, got
    assert [s["value"] for s in sources] == [1, 2, 3] and title.startswith("Sources (3)")
    cited = [s for s in sources if s["cited"]]
    assert len(cited) == 1 and f"[{cited[0]['value']}]" in got["text"]  # the marker names the marked source
    assert "wine_data.rst" in " ".join(s["label"] for s in sources)
    # tokens arrived before the sources: the text grew over several steps with no source shown, then they came
    growing = [n for n, s in seen if s == 0 and n > 0]
    assert growing and seen[-1][1] == 3, seen
    first_with_sources = next(i for i, (_, s) in enumerate(seen) if s)
    assert all(s == 0 for _, s in seen[:first_with_sources]) and seen[first_with_sources][0] == len(got["text"])


# ----------------------------------------------------------------------------------- load test
def test_percentile_matches_numpy():
    data = [0.3, 1.2, 0.7, 5.0, 2.2, 0.9]
    for q in (0, 50, 95, 100):
        assert loadtest.percentile(data, q) == pytest.approx(np.percentile(data, q))
    assert math.isnan(loadtest.percentile([], 50))
    with pytest.raises(ValueError, match="q"):
        loadtest.percentile(data, 101)


def test_load_test_against_the_live_server(server):
    res = loadtest.run_load(server.base_url + "/v1", TINY, concurrency=4, requests=8, max_tokens=8)
    assert res.requests == 8 and res.errors == 0 and res.error_messages == []
    assert 0 < res.ttft_p50 <= res.ttft_p95 <= res.latency_p95
    assert res.completion_tokens == sum(r.completion_tokens for r in res.results) > 0
    assert res.throughput == pytest.approx(res.completion_tokens / res.wall_seconds)
    assert res.tokens_per_s_p50 >= res.tokens_per_s_p95 > 0
    rows = loadtest.load_sweep(server.base_url + "/v1", TINY, [1, 2], requests_per_client=1, max_tokens=4)
    assert [r.concurrency for r in rows] == [1, 2] and all(r.errors == 0 for r in rows)
    assert "TTFT p50" in loadtest.format_table(rows)


def test_load_test_counts_errors(server):
    bad_model = loadtest.run_load(server.base_url + "/v1", "no-such-model", concurrency=2, requests=3, max_tokens=4)
    assert bad_model.errors == 3 and "HTTP 404" in bad_model.error_messages[0]
    from genai_lab.serve.runner import bind_socket

    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    refused = loadtest.run_load(f"http://127.0.0.1:{port}/v1", TINY, concurrency=2, requests=2, max_tokens=4,
                                timeout=5)
    assert refused.errors == 2 and refused.completion_tokens == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(base_url="localhost:8000"), "base_url"), (dict(model=""), "model"), (dict(concurrency=0), "concurrency"),
    (dict(requests=0), "requests"), (dict(max_tokens=0), "max_tokens"), (dict(prompts=[]), "prompts")])
def test_run_load_rejects_bad_arguments(kwargs, match):
    args = dict(base_url="http://127.0.0.1:9/v1", model="m") | kwargs
    with pytest.raises(ValueError, match=match):
        loadtest.run_load(args.pop("base_url"), args.pop("model"), **args)


# ----------------------------------------------------------------------------------- CLI
def test_cli_serve_help_and_busy_port():
    from genai_lab.cli import main
    from genai_lab.serve.runner import bind_socket

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    sock = bind_socket()
    try:
        assert main(["serve", "--port", str(sock.getsockname()[1])]) == 2  # fails fast, before loading a model
    finally:
        sock.close()


@pytest.mark.slow
def test_cli_serves_smollm2_to_the_openai_client():
    """``python -m genai_lab serve --port 0`` with the real SmolLM2-135M-Instruct, offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "genai_lab", "serve", "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        m = re.search(r"on (http://[\d.]+:\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        base = m.group(1)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        reply = client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=QUESTION, max_tokens=24,
                                               temperature=0)
        assert "Tokyo" in reply.choices[0].message.content
        pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="SmolLM2-135M-Instruct", messages=QUESTION, max_tokens=24, temperature=0, stream=True)
            if c.choices]
        assert "".join(pieces) == reply.choices[0].message.content
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o", messages=QUESTION)
        assert httpx.get(base + "/health").json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down gracefully, the CLI exits with 130
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/health", timeout=2)


# ----------------------------------------------------------------------------------- bench
@pytest.mark.slow
def test_bench_serving_clears_its_bars_at_smoke(cfg):
    """16 concurrent streaming clients with 0 errors; batching ≥ 1.5× the throughput of one at a time;
    LangChain's retrieval within ±0.02 of the hand-built pipeline."""
    from genai_lab import bench

    rows = bench.run_chapter("serving", cfg, store=False)
    by = {r["metric"]: r for r in rows}
    assert by["clients_16_errors"]["value"] == 0 and by["errors_all_levels"]["value"] == 0
    assert by["ttft_p50_16_clients_s"]["value"] > by["ttft_p50_1_client_s"]["value"]  # queueing, one at a time
    assert by["langchain_retrieval_gap"]["bar"] == 0.02 and by["hand_built_recall_at_5"]["value"] > 0.5
    failed = [(r["metric"], r["value"], r["bar"]) for r in rows if r["passed"] is False]
    assert not failed, failed


# ----------------------------------------------------------------------------------- LangChain
def test_langchain_helpers_reject_bad_input():
    pytest.importorskip("langchain_postgres")
    from genai_lab.serve import langchain_rag as lcr

    assert lcr.sqlalchemy_url("postgresql://postgres:@/postgres?host=/tmp/x") == \
        "postgresql+psycopg://postgres:@/postgres?host=/tmp/x"
    with pytest.raises(ValueError, match="dsn"):
        lcr.sqlalchemy_url("mysql://root@localhost/db")
    with pytest.raises(ValueError, match="chunks"):
        lcr.chunks_to_documents([])
    with pytest.raises(ValueError, match="base_url"):
        lcr.chat_model("localhost:8000", TINY)
    with pytest.raises(ValueError, match="k must"):
        lcr.rag_chain(object(), object(), k=0)


@pytest.fixture(scope="module")
def langchain_rag_setup(tmp_path_factory):
    """Chapter 9's hand-built index and the same chunks in LangChain's PGVector on a local PostgreSQL."""
    pytest.importorskip("langchain_postgres")
    from genai_lab.rag import evaluate
    from genai_lab.rag.pgvector_store import start_local_server, stop_local_server
    from genai_lab.serve import langchain_rag as lcr

    hand_index = evaluate.sklearn_index()
    pg, dsn = start_local_server(tmp_path_factory.mktemp("pg") / "pgdata")
    try:
        store = lcr.build_vectorstore(dsn, hand_index.store.chunks(), lcr.minilm_embeddings())
        yield hand_index, store
        lcr.close_vectorstore(store)
    finally:
        stop_local_server(pg)


@pytest.mark.slow
def test_langchain_retrieval_equals_the_hand_built_pipeline(langchain_rag_setup):
    """The bench bar: LangChain's PGVector + HuggingFaceEmbeddings retrieve within ±0.02 of chapter 9's
    hand-built dense retriever on its question set (evidence-level recall@1/3/5 and MRR)."""
    from genai_lab.rag import evaluate
    from genai_lab.serve import langchain_rag as lcr

    hand_index, store = langchain_rag_setup
    questions = evaluate.load_questions("sklearn")["questions"]
    hand = evaluate.compare_modes(hand_index, questions, modes=("dense",))["dense"]
    lc = lcr.retrieval_figures(store, questions)
    assert set(lc) == set(hand) == {"recall@1", "recall@3", "recall@5", "mrr"}
    assert all(abs(lc[k] - hand[k]) <= 0.02 for k in hand), (lc, hand)
    assert hand["recall@5"] > 0.5  # a real retriever, not two empty ones agreeing
    # the scores are cosine similarities, as the hand-built store gives them
    q = questions[0]["question"]
    mine = hand_index.dense_search(q, 3)
    theirs = lcr.to_hits(store.similarity_search_with_score(q, k=3))
    assert [h.chunk.id for h in theirs] == [h.chunk.id for h in mine]
    assert np.allclose([h.score for h in theirs], [h.score for h in mine], atol=1e-4)


@pytest.mark.slow
def test_langchain_chain_sends_chapter_9s_prompt_to_this_server(langchain_rag_setup, engine, embeddings):
    """ChatOpenAI pointed at the server: the chain's answer is the engine's greedy answer to exactly the
    messages chapter 9 builds from the same top-3 chunks, and the server logged the request."""
    from genai_lab.rag.generate import build_messages
    from genai_lab.serve import langchain_rag as lcr

    hand_index, store = langchain_rag_setup
    question = "How many samples are in the wine recognition dataset?"
    app = create_app(engine, embeddings=embeddings)  # default limits: the prompt holds three passages
    with ServerThread(app) as server:
        chain = lcr.rag_chain(store, lcr.chat_model(server.base_url + "/v1", TINY, max_tokens=8), k=3)
        out = chain.invoke(question)
    before = 0
    hits = hand_index.dense_search(question, 3)
    assert out["sources"] == [h.chunk.label for h in hits]
    want = engine.generate(build_messages(question, hits), max_tokens=8, temperature=0).text
    assert out["answer"] == want
    logged = [e for e in list(app.state.request_log)[before:] if e["path"] == "/v1/chat/completions"]
    assert logged and logged[0]["status"] == 200 and logged[0]["prompt_tokens"] > 100


# ----------------------------------------------------------------------------------- dtype
def test_dtype_experiment_measures_memory_speed_and_agreement(tiny):
    from genai_lab.serve.experiments import dtype_experiment

    tok, model = tiny
    before = next(model.parameters()).dtype
    got = dtype_experiment(tok, model, dtypes=("float32", "float32", "bfloat16"), prompts=["Hi", "Why?"],
                           max_tokens=6)
    assert next(model.parameters()).dtype == before  # the model itself is left as it was
    f32, b16 = got["float32"], got["bfloat16"]
    assert b16["weights_mb"] == pytest.approx(f32["weights_mb"] / 2, rel=1e-6)
    assert f32["same_answers"] == 2 and f32["same_tokens"] == 1.0  # the same dtype twice: the same answers
    assert 0 <= b16["same_answers"] <= 2 and 0.0 <= b16["same_tokens"] <= 1.0
    assert f32["ms_per_token"] > 0 and b16["ttft_ms"] > 0 and len(b16["answers"]) == 2
    with pytest.raises(ValueError, match="dtypes"):
        dtype_experiment(tok, model, dtypes=("float12",))
    with pytest.raises(ValueError, match="max_tokens"):
        dtype_experiment(tok, model, max_tokens=1)


def test_serving_notebooks_install_the_serve_and_rag_extras():
    """Colab/Kaggle: the set-up cell of the chapter and its lab installs FastAPI, the clients and LangChain."""
    import tomllib

    from genai_lab import launch

    assert launch.notebook_extras("book/10_serving.ipynb") == ("rag", "serve")
    assert launch.notebook_extras("labs/10_serving_lab.ipynb") == ("rag", "serve")
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    serve = " ".join(project["project"]["optional-dependencies"]["serve"])
    for name in ("fastapi", "uvicorn", "openai", "httpx", "langchain-postgres", "langchain-huggingface",
                 "langchain-openai"):
        assert name in serve
    assert "serve/static/*" in project["tool"]["setuptools"]["package-data"]["genai_lab"]


def test_uvicorn_server_remembers_the_signal_that_stopped_it():
    """The CLI exits with 130 after Ctrl-C even when asyncio swallows uvicorn's re-raised SIGINT."""
    from fastapi import FastAPI

    from genai_lab.serve.runner import uvicorn_server

    server = uvicorn_server(FastAPI())
    assert server.stop_signal is None and not server.should_exit
    server.handle_exit(signal.SIGINT, None)
    server.handle_exit(signal.SIGTERM, None)
    assert server.stop_signal == signal.SIGINT and server.should_exit
