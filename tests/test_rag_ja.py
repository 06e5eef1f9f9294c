"""Tests for the Japanese corpus and question set of chapter 9 (genai_lab/rag/data/ja_*.json).

The corpus is pinned by a hash of its documents (the recorded ``ja_*`` bench figures depend on it),
every question's evidence and answer are checked against the document they cite, and BM25 on
character bigrams must find the evidence chunk for nearly every question.
"""

from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np
import pytest

from genai_lab.rag import chunking, corpus
from genai_lab.rag.bm25 import BM25, tokenize
from genai_lab.rag.embed import Embedder
from genai_lab.rag.evaluate import (JAPANESE_CHUNKING, bench_japanese, compare_modes, evaluate_retrieval,
                                    evidence_found, japanese_index, japanese_metrics, load_questions)
from genai_lab.rag.stores import Hit

#: SHA-256 over the documents' own hashes, in order. Change it only together with the questions,
#: the notebook's prose and a new record of the rag bench (its ja_* figures come from this corpus).
JA_CORPUS_SHA256 = "762fee3554a141ced9363d0dc848403d4fa7216cb41121c13866fc2d978a6352"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")


class WordHashModel:
    """A cheap deterministic stand-in embedder (BM25 tests never look at the vectors)."""

    def get_embedding_dimension(self):
        return 32

    def encode(self, texts, **kwargs):
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in tokenize(t) or ["empty"]:
                out[i, zlib.crc32(w.encode()) % 32] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def bm25_index():
    return japanese_index(Embedder(WordHashModel(), cache_path=False, name="wordhash"))


def corpus_hash(docs) -> str:
    return hashlib.sha256("\n".join(d.sha256 for d in docs).encode()).hexdigest()


def test_japanese_corpus_is_pinned_and_well_formed():
    docs = corpus.japanese_corpus()
    assert corpus_hash(docs) == JA_CORPUS_SHA256, "the Japanese corpus changed: see JA_CORPUS_SHA256"
    assert 30 <= len(docs) <= 60
    assert len({d.source for d in docs}) == len(docs)
    for d in docs:
        assert re.fullmatch(r"ja/[a-z0-9_]+\.md", d.source), d.source
        title, blank, body = d.text.split("\n", 2)
        assert title.startswith("# ") and blank == "" and body.endswith("。\n"), d.name
        assert 60 <= len(body) <= 400, (d.name, len(body))
        assert len(_CJK.findall(body)) / len(body) > 0.6, d.name  # Japanese, not English with a few kana
        assert all(s.endswith(("。", "」")) for s in chunking.split_sentences(body)), d.name
        assert "  " not in body and "\t" not in body
    assert corpus.japanese_corpus() == docs  # deterministic


def test_japanese_questions_agree_with_the_corpus():
    texts = {d.name: d.text for d in corpus.japanese_corpus()}
    qs = load_questions("ja")
    questions = qs["questions"]
    assert 25 <= len(questions) <= 45 and len(qs["unanswerable"]) >= 3
    assert len({q["question"] for q in questions}) == len(questions)
    assert len({q["sources"][0] for q in questions}) >= 30  # spread over the corpus, not a few documents
    chunks = chunking.chunk_documents(corpus.japanese_corpus(), JAPANESE_CHUNKING["strategy"],
                                      JAPANESE_CHUNKING["chunk_size"], JAPANESE_CHUNKING["overlap"])
    for q in questions:
        (src,) = q["sources"]
        assert src in texts, q
        assert q["question"].endswith("？") and _CJK.search(q["question"]), q
        assert isinstance(q["answer"], str) and q["answer"] in q["evidence"], q  # the answer is in its evidence
        assert q["evidence"] in texts[src] and evidence_found(texts[src], q["evidence"]), q
        assert any(q["evidence"] in s for s in chunking.split_sentences(texts[src])), q  # inside one sentence
        holding = [c for c in chunks if evidence_found(c.text, q["evidence"])]
        assert holding and all(c.source.endswith("/" + src) for c in holding), q  # found only in its document
    for u in qs["unanswerable"]:
        assert u.endswith("？") and all(u != q["question"] for q in questions)


def test_write_japanese_corpus_round_trips(tmp_path):
    folder = corpus.write_japanese_corpus(tmp_path / "ja")
    docs = corpus.load_corpus(folder)
    assert {d.name: d.text for d in docs} == {d.name: d.text for d in corpus.japanese_corpus()}
    with pytest.raises(TypeError, match="folder"):
        corpus.write_japanese_corpus(3)
    with pytest.raises(ValueError, match="title"):
        corpus.japanese_document_text(" ", "本文。")
    with pytest.raises(ValueError, match="text"):
        corpus.japanese_document_text("題", "")


def test_japanese_chunks_keep_whole_sentences_and_their_title():
    docs = corpus.japanese_corpus()
    chunks = chunking.chunk_documents(docs, JAPANESE_CHUNKING["strategy"], JAPANESE_CHUNKING["chunk_size"],
                                      JAPANESE_CHUNKING["overlap"])
    assert len(docs) < len(chunks) < 3 * len(docs)  # most documents give two chunks: evidence level means something
    by_doc = {d.source: d for d in docs}
    for c in chunks:
        title = by_doc[c.source].text.split("\n", 1)[0][2:]
        head, body = c.text.split("\n", 1)
        assert head == title and len(c.text) <= JAPANESE_CHUNKING["chunk_size"]
        assert all(s in by_doc[c.source].text for s in chunking.split_sentences(body))  # whole sentences only


def _whole_run_tokens(text: str) -> list[str]:
    """The baseline: split only where English would (spaces, punctuation), so a Japanese clause is one token."""
    return re.findall(r"[a-z0-9]+(?:[._'-][a-z0-9]+)*|[\u3040-\u30ff\u3400-\u9fff]+", text.lower())


def test_bm25_on_character_bigrams_finds_japanese_evidence(bm25_index, monkeypatch):
    questions = load_questions("ja")["questions"]
    bigrams = evaluate_retrieval(lambda q, k: bm25_index.bm25_search(q, k), questions, ks=(1, 5))
    assert bigrams["recall@5"] >= 0.9 and bigrams["mrr"] >= 0.8, bigrams
    # the same BM25 with space-separated "words": a Japanese clause becomes one rare token that no
    # question repeats, so only the Latin-script names (LoRA, BERT) still match
    chunks = bm25_index.store.chunks()
    import genai_lab.rag.bm25 as bm25_module

    monkeypatch.setattr(bm25_module, "tokenize", _whole_run_tokens)
    words = BM25([c.text for c in chunks])

    def word_search(q, k):
        idx, scores = words.top_k(q, k)
        return [Hit(chunks[i], float(s)) for i, s in zip(idx, scores)]

    baseline = evaluate_retrieval(word_search, questions, ks=(1, 5))
    assert bigrams["recall@5"] >= baseline["recall@5"] + 0.3, (bigrams, baseline)


def test_japanese_metrics_are_named_for_the_bench(bm25_index):
    questions = load_questions("ja")["questions"][:5]
    metrics = japanese_metrics(compare_modes(bm25_index, questions, modes=("bm25",), ks=(1, 5)))
    assert [m.name for m in metrics] == ["ja_bm25_recall@1", "ja_bm25_recall@5", "ja_bm25_mrr"]
    assert all(m.higher_is_better and m.bar is None and 0 <= m.value <= 1 for m in metrics)
    with pytest.raises(TypeError, match="embedder"):
        japanese_index(embedder="minilm")


def test_bench_adds_the_multilingual_rows_only_on_the_hub_path(cfg, monkeypatch):
    from genai_lab import models
    from genai_lab.rag import embed

    stub = Embedder(WordHashModel(), cache_path=False, name="wordhash")
    asked = []
    monkeypatch.setattr(models, "hub_model_path", lambda name, **kw: asked.append(name))  # hub unreachable
    names = [m.name for m in bench_japanese(cfg, stub)]  # smoke: the hub is not even asked
    assert asked == [] and names[-1] == "ja_questions" and not any("multilingual" in n for n in names)
    assert {"ja_bm25_recall@5", "ja_dense_recall@5", "ja_hybrid_recall@5", "ja_bm25_mrr"} <= set(names)
    monkeypatch.setattr(cfg, "profile", "gpu")
    assert [m.name for m in bench_japanese(cfg, stub)] == names and asked == ["multilingual-minilm"]  # falls back
    other = Embedder(WordHashModel(), cache_path=False, name="wordhash-multilingual")
    monkeypatch.setattr(embed, "multilingual_embedder", lambda cfg=None, **kw: other)  # as if the hub answered
    rows = {m.name: m for m in bench_japanese(cfg, stub)}
    assert set(rows) - set(names) == {f"ja_multilingual_{mode}_{key}" for mode in ("dense", "hybrid")
                                      for key in ("recall@1", "recall@5", "mrr")}
    assert rows["ja_bm25_recall@5"].value >= 0.9


@pytest.mark.slow
def test_bigram_bm25_beats_english_minilm_on_japanese():
    results = compare_modes(japanese_index(), load_questions("ja")["questions"], ks=(1, 5))
    assert results["bm25"]["recall@5"] >= results["dense"]["recall@5"] + 0.15, results
    assert results["bm25"]["mrr"] >= results["dense"]["mrr"] + 0.15, results
