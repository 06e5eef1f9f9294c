// The chat page: send the conversation to /v1/chat/completions with "stream": true and append each
// piece of the answer as it arrives. Plain fetch + ReadableStream; no libraries, nothing from a CDN.
//
// Automation (tests, demos): /?q=QUESTION&autosend=1[&model=ID][&max_tokens=N][&temperature=T] asks at load.
// Each answer is a <div class="msg assistant"> with data-state="streaming" → "done" (or "error"),
// data-chunks = how many streamed pieces arrived, and a .content span holding the text.
// The RAG model (genai-lab-rag) ends its stream with a chunk carrying "sources" (the numbered passages
// it was given) and "rag" (how the answer was grounded): they are listed under the answer in a
// <div class="sources"> (one <li class="source"> per passage, class "cited" on those the answer cites);
// data-sources on the answer = how many.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];          // the conversation sent with every request: [{role, content}, ...]
let controller = null;       // aborts the answer being streamed
let turn = 0;

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const content = document.createElement("span");
  content.className = "content";
  content.textContent = text;
  div.appendChild(content);
  $("log").appendChild(div);
  div.scrollIntoView({block: "end"});
  return div;
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models");
    const data = await r.json();
    for (const m of data.data) {
      if (/minilm/i.test(m.id)) continue;   // the embedding model cannot chat
      const opt = document.createElement("option");
      opt.value = opt.textContent = m.id;
      $("model").appendChild(opt);
    }
  } catch (e) {
    $("status").textContent = "could not list the models: " + e;
  }
}

// Server-sent events: blocks separated by a blank line, each "data: <json>" (or "data: [DONE]").
function* sseEvents(buffer) {
  let end;
  while ((end = buffer.text.indexOf("\n\n")) >= 0) {
    const block = buffer.text.slice(0, end);
    buffer.text = buffer.text.slice(end + 2);
    for (const line of block.split("\n")) {
      if (line.startsWith("data:")) yield line.slice(5).trim();
    }
  }
}

function showSources(answer, sources, rag) {
  const box = document.createElement("div");
  box.className = "sources";
  const title = document.createElement("div");
  title.className = "sources-title";
  let note = "";
  if (rag && rag.abstained) note = " (no passage was close enough: the model was not asked)";
  if (rag && rag.flagged_as_injection && rag.flagged_as_injection.length) {
    note += ` · dropped as possible prompt injection: ${rag.flagged_as_injection.join(", ")}`;
  }
  if (rag && rag.citations_in_range === false) note += " · the answer cites a passage it was not given";
  title.textContent = `Sources (${sources.length})${note}`;
  box.appendChild(title);
  const list = document.createElement("ol");
  for (const s of sources) {
    const item = document.createElement("li");
    item.className = "source" + (s.cited ? " cited" : "");
    item.value = s.index;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = `${s.source}${s.cited ? " — cited" : ""}`;
    const snippet = document.createElement("span");
    snippet.className = "snippet";
    snippet.textContent = s.text.length > 160 ? s.text.slice(0, 160) + "…" : s.text;   // text, never HTML
    item.append(label, snippet);
    list.appendChild(item);
  }
  box.appendChild(list);
  answer.appendChild(box);
  answer.dataset.sources = String(sources.length);
}

async function ask(question) {
  history.push({role: "user", content: question});
  addMessage("user", question);
  const answer = addMessage("assistant", "");
  answer.id = "answer-" + (++turn);
  answer.dataset.state = "streaming";
  answer.dataset.chunks = "0";
  const content = answer.querySelector(".content");
  const body = {
    model: $("model").value,
    messages: history,
    stream: true,
    stream_options: {include_usage: true},
    max_tokens: Number($("max_tokens").value),
    temperature: Number($("temperature").value),
  };
  controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false;
  const t0 = performance.now();
  let tFirst = null, usage = null, chunks = 0, sources = null, rag = null;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body), signal: controller.signal,
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({error: {message: r.statusText}}));
      throw new Error(`${r.status}: ${err.error ? err.error.message : r.statusText}`);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    const buffer = {text: ""};
    let finished = false;
    while (!finished) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer.text += decoder.decode(value, {stream: true});
      for (const data of sseEvents(buffer)) {
        if (data === "[DONE]") { finished = true; break; }
        const event = JSON.parse(data);
        if (event.error) throw new Error(event.error.message);
        if (event.usage) usage = event.usage;
        if (event.sources) { sources = event.sources; rag = event.rag || null; }
        const delta = event.choices && event.choices[0] && event.choices[0].delta;
        if (delta && delta.content) {
          if (tFirst === null) tFirst = performance.now();
          content.textContent += delta.content;   // textContent: the answer is text, never HTML
          answer.dataset.chunks = String(++chunks);
          answer.scrollIntoView({block: "end"});
        }
      }
    }
    history.push({role: "assistant", content: content.textContent});
    answer.dataset.state = "done";
    const seconds = (performance.now() - t0) / 1000;
    const stats = document.createElement("span");
    stats.className = "stats";
    const tokens = usage ? usage.completion_tokens : chunks;
    stats.textContent = `first token after ${((tFirst ?? performance.now()) - t0).toFixed(0)} ms · ` +
      `${tokens} tokens in ${seconds.toFixed(2)} s · ${(tokens / seconds).toFixed(1)} tokens/s`;
    answer.appendChild(stats);
    if (sources) showSources(answer, sources, rag);
  } catch (e) {
    history.pop();                        // the question was not answered: do not keep it
    answer.classList.add("error");
    answer.dataset.state = "error";
    content.textContent += (content.textContent ? "\n" : "") + (e.name === "AbortError" ? "(stopped)" : String(e));
  } finally {
    controller = null;
    $("send").disabled = false; $("stop").disabled = true;
  }
}

$("ask").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("question").value.trim();
  if (!q || controller) return;
  $("question").value = "";
  ask(q);
});
$("question").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("ask").requestSubmit(); }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => { history.length = 0; $("log").textContent = ""; });

(async () => {
  await loadModels();
  const params = new URLSearchParams(location.search);
  for (const name of ["model", "max_tokens", "temperature"]) {
    if (params.has(name)) $(name).value = params.get(name);
  }
  if (params.has("q")) {
    $("question").value = params.get("q");
    if (params.get("autosend") === "1") $("ask").requestSubmit();
  }
  document.body.dataset.ready = "1";
})();
