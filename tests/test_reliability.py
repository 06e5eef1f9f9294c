"""Bad input and interruption never cost the user their work or a clear answer.

Ctrl-C during ``rag index`` keeps what was finished and the next run continues; errors end in one
line naming what to fix; ``--json`` output is pure JSON; the informational lines of the package go
to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from genai_lab.config import REPO_ROOT

PYTHON = sys.executable


def _env(**extra) -> dict:
    env = {**os.environ, "GENAI_LAB_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "GENAI_LAB_OFFLINE": "1",
           "GENAI_LAB_THREADS": os.environ.get("GENAI_LAB_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


# The CLI with a cheap, slow stand-in embedder (bag of hashed words, a pause per batch, one line on
# stderr per batch), so that a test can interrupt `rag index` halfway at a known point.
INDEX_SCRIPT = textwrap.dedent('''
    import sys, time, zlib
    import numpy as np
    from genai_lab.rag import embed, index
    from genai_lab.rag.bm25 import tokenize
    from genai_lab.cli import main

    pause = float(sys.argv[1])

    class SlowWordHash:
        def get_embedding_dimension(self):
            return 32

        def encode(self, texts, **kwargs):
            time.sleep(pause)
            out = np.zeros((len(texts), 32), dtype=np.float32)
            for i, t in enumerate(texts):
                for w in tokenize(t) or ["empty"]:
                    out[i, zlib.crc32(w.encode()) % 32] += 1.0
            print(f"embedded {len(texts)}", file=sys.stderr, flush=True)
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    original = embed.Embedder.__init__

    def patched(self, model=None, **kwargs):
        original(self, model or SlowWordHash(), **{**kwargs, "name": "wordhash", "batch_size": 4,
                                                     "commit_batches": 1})

    embed.Embedder.__init__ = patched
    index.RagIndex.group_chunks = 8
    sys.exit(main(["rag", "index", *sys.argv[2:], "--json"]))
''')


def _run_index(script: Path, pause: float, args: list[str], env: dict, *, interrupt_after: int | None = None):
    """Run the scripted CLI; with ``interrupt_after`` send SIGINT after that many embedded batches."""
    proc = subprocess.Popen([PYTHON, str(script), str(pause), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    early = []
    if interrupt_after is not None:
        while sum(line.startswith("embedded") for line in early) < interrupt_after:
            line = proc.stderr.readline()
            if not line:
                break
            early.append(line)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    lines = [ln for ln in "".join(early + [err]).splitlines() if ln.strip() and not ln.startswith("embedded")]
    return proc.returncode, out, lines


class WordHash32:
    """The in-process twin of the script's embedder (only its dimension matters here)."""

    def get_embedding_dimension(self):
        return 32

    def encode(self, texts, **kwargs):
        raise AssertionError("nothing should need embedding")


def test_ctrl_c_keeps_finished_files_and_the_next_run_continues(tmp_path, monkeypatch):
    from genai_lab.rag.chunking import chunk_documents
    from genai_lab.rag.corpus import load_corpus
    from genai_lab.rag.embed import Embedder
    from genai_lab.rag.evaluate import synthetic_corpus
    from genai_lab.rag.index import RagIndex
    from genai_lab.rag.stores import MemoryStore

    corpus = synthetic_corpus(tmp_path / "notes", 30, seed=3)
    script = tmp_path / "index_cli.py"
    script.write_text(INDEX_SCRIPT)
    env = _env(GENAI_LAB_DATA=str(tmp_path / "cache"))
    store = str(tmp_path / "store")

    code, out, err = _run_index(script, 0.3, [str(corpus), "--path", store], env, interrupt_after=6)
    assert code == 130, err
    assert len(err) == 1 and err[0].startswith("interrupted: ") and "run the same command again" in err[0], err
    first = json.loads(out)
    assert first["interrupted"] is True and first["pending"] > 0 and len(first["added"]) > 0
    kept = MemoryStore(store)
    assert sorted(kept.document_hashes()) == sorted(first["added"])  # what was reported is what was saved
    assert kept.count() == first["chunks_written"]

    code, out, err = _run_index(script, 0.0, [str(corpus), "--path", store], env)
    assert code == 0 and err == [], err
    second = json.loads(out)
    assert second["unchanged"] == len(first["added"])  # finished files are not redone
    assert sorted(first["added"] + second["added"]) == sorted(p.resolve().as_posix() for p in corpus.iterdir())
    total = second["chunks_total"]
    assert second["chunks_embedded"] <= total - first["chunks_written"]  # cached vectors are reused
    assert first["chunks_embedded"] + second["chunks_embedded"] <= total + 4  # at most one batch redone

    # nothing lost or duplicated: the resumed store holds exactly the chunks of the whole corpus
    expected = chunk_documents(load_corpus(corpus), "heading", 500, 100)  # the CLI's defaults
    resumed = MemoryStore(store).chunks()
    assert len({c.id for c in resumed}) == len(resumed) == total == len(expected)
    assert sorted((c.source, c.index, c.text) for c in resumed) == sorted((c.source, c.index, c.text)
                                                                           for c in expected)
    # and it stays idempotent: a third run (same embedder name and settings) has nothing to do
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "cache"))
    again = RagIndex(MemoryStore(store), Embedder(WordHash32(), name="wordhash")).update(corpus)
    assert (again.chunks, again.embedded, len(again.unchanged)) == (0, 0, 30)


def test_bench_json_is_pure_json_on_stdout():
    proc = subprocess.run([PYTHON, "-m", "genai_lab", "bench", "--chapter", "intro", "--profile", "smoke", "--json"],
                          capture_output=True, text=True, env=_env(), cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    assert rows and all(r["chapter"] == "intro" for r in rows)


def test_cached_checkpoint_and_skipped_hub_model_speak_on_stderr(tmp_path, monkeypatch, capsys):
    import torch

    import genai_lab as gl
    from genai_lab.checkpoints import load_or_train
    from genai_lab.models import hub_model_path

    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path))
    cfg = gl.setup("smoke", verbose=False)
    for _ in range(2):  # trained, then loaded from the cache ("[genai_lab] loaded cached …")
        load_or_train("tiny", cfg, {"n": 1}, lambda: torch.nn.Linear(2, 2), lambda m: {})
    assert hub_model_path("nobody/not-a-model") is None  # offline: "… is not cached …"
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "loaded cached tiny" in captured.err and "not cached" in captured.err


def _one_line_error(capsys, code):
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def _small_folder(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir(parents=True)
    (folder / "a.md").write_text("# A\n\nThe wine dataset has 178 samples.\n")
    return folder


@pytest.mark.parametrize("where", ["a file", "impossible", "read-only"])
def test_bad_data_folder_is_one_line_naming_the_variable(tmp_path, monkeypatch, capsys, where):
    from genai_lab.cli import main

    if where == "a file":
        data = tmp_path / "cache"
        data.write_text("not a folder")
    elif where == "impossible":
        data = Path("/proc/genai-lab-cannot-exist/cache")
    else:
        if os.geteuid() == 0:  # chmod does not stop root: use a folder of a read-only file system
            data = Path("/sys")
        else:
            data = tmp_path / "ro"
            data.mkdir()
            data.chmod(0o555)
    monkeypatch.setenv("GENAI_LAB_DATA", str(data))
    line = _one_line_error(capsys, main(["rag", "index", str(_small_folder(tmp_path))]))
    assert "GENAI_LAB_DATA" in line and "writable" in line


def test_invalid_dsn_and_bad_threads_are_one_line(tmp_path, monkeypatch, capsys):
    from genai_lab.cli import main

    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "cache"))
    folder = _small_folder(tmp_path)
    line = _one_line_error(capsys, main(["rag", "index", str(folder), "--store", "pgvector", "--db", "not a dsn"]))
    assert "'not a dsn'" in line and "connection string" in line
    line = _one_line_error(capsys, main(["rag", "ask", "wine?", "--store", "pgvector", "--db", "foo=bar"]))
    assert "'foo=bar'" in line
    monkeypatch.setenv("GENAI_LAB_THREADS", "zero")
    line = _one_line_error(capsys, main(["rag", "index", str(folder)]))
    assert "GENAI_LAB_THREADS" in line


def test_cli_reads_genai_lab_threads(tmp_path, monkeypatch, capsys):
    import torch

    from genai_lab.cli import main

    before = torch.get_num_threads()
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "cache"))
    try:
        for threads in ("2", "1"):
            monkeypatch.setenv("GENAI_LAB_THREADS", threads)
            assert main(["rag", "index", str(_small_folder(tmp_path / threads)), "--json",
                         "--path", str(tmp_path / "store")]) == 0
            assert json.loads(capsys.readouterr().out)["threads"] == int(threads)
    finally:
        torch.set_num_threads(before)


def test_non_utf8_and_binary_files_are_skipped_and_named(tmp_path, monkeypatch, capsys):
    from genai_lab.cli import main

    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "cache"))
    folder = _small_folder(tmp_path)
    (folder / "latin1.txt").write_bytes("Café crème: 12 € pour deux.".encode("latin-1", errors="replace"))
    (folder / "noise.txt").write_bytes(bytes(range(256)) * 8)
    assert main(["rag", "index", str(folder), "--json", "--path", str(tmp_path / "store")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    skipped = {Path(s["source"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"latin1.txt", "noise.txt"}
    assert "not UTF-8" in skipped["latin1.txt"] and "binary" in skipped["noise.txt"]
    assert [Path(p).name for p in report["added"]] == ["a.md"]
    assert "skipped 2 file(s)" in captured.err
    from genai_lab.rag.stores import MemoryStore

    assert not any("\ufffd" in c.text for c in MemoryStore(tmp_path / "store").chunks())


def test_ask_caps_k_with_a_note(tmp_path, monkeypatch, capsys):
    from genai_lab.cli import main

    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "cache"))
    store = str(tmp_path / "store")
    assert main(["rag", "index", str(_small_folder(tmp_path)), "--path", store]) == 0
    capsys.readouterr()
    assert main(["rag", "ask", "How many wine samples?", "--k", "100000", "--no-generate", "--json",
                 "--path", store]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["k"] == 1000
    assert "--k 100000 is more than 1000" in captured.err
    line = _one_line_error(capsys, main(["rag", "ask", "wine?", "--min-similarity", "nan", "--path", store]))
    assert "--min-similarity" in line
