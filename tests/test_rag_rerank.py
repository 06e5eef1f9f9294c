"""The reranking stage of genai_lab.rag: ordering, inputs, and SmolLM2 query likelihood."""

from __future__ import annotations

import pytest

from genai_lab.rag.chunking import Chunk
from genai_lab.rag.rerank import LLMReranker, Reranker, reranked_search
from genai_lab.rag.stores import Hit


class LengthReranker(Reranker):
    """Scores a passage by its length (a stand-in with a known answer)."""

    def score(self, question, passages):
        return [float(len(p)) for p in passages]


def _hits(*texts):
    return [Hit(Chunk(f"/docs/{i}.md", 0, t), 1.0 / (i + 1)) for i, t in enumerate(texts)]


def test_rerank_orders_by_the_rerankers_score_keeps_ties_stable_and_cuts_to_k():
    hits = _hits("bb", "a", "ccc", "dd")
    ranked = LengthReranker().rerank("q?", hits)
    assert [h.chunk.text for h in ranked] == ["ccc", "bb", "dd", "a"]  # "bb" before "dd": first-stage order
    assert [h.score for h in ranked] == [3.0, 2.0, 2.0, 1.0]          # the reranker's score, not the retriever's
    assert [h.chunk.text for h in LengthReranker().rerank("q?", hits, k=2)] == ["ccc", "bb"]
    assert LengthReranker().rerank("q?", []) == []


@pytest.mark.parametrize("call, error, match", [
    (lambda r: r.rerank("", _hits("a")), ValueError, "question"),
    (lambda r: r.rerank("q?", ["a"]), TypeError, "hits"),
    (lambda r: r.rerank("q?", _hits("a"), k=0), ValueError, "k must"),
    (lambda r: reranked_search(object(), r, candidates=0), ValueError, "candidates"),
    (lambda r: reranked_search(object(), "bm25"), TypeError, "reranker"),
    (lambda r: LLMReranker(None, None), ValueError, "tokenizer and model"),
])
def test_reranking_rejects_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(LengthReranker())


def test_reranked_search_reorders_only_the_first_stages_candidates():
    class FakeIndex:
        def search(self, question, k, mode="hybrid"):
            return _hits("a", "bb", "ccc", "dddd", "eeeee")[:k]

    search = reranked_search(FakeIndex(), LengthReranker(), candidates=3)
    assert [h.chunk.text for h in search("q?", 2)] == ["ccc", "bb"]   # "dddd" was never a candidate
    assert [h.chunk.text for h in search("q?", 5)] == ["ccc", "bb", "a"]


@pytest.fixture(scope="module")
def smollm2():
    from genai_lab.models import load_smollm2

    return load_smollm2()


def test_llm_reranker_prefers_the_passage_that_answers_and_batches_exactly(smollm2):
    tok, model = smollm2
    passages = ["Optical recognition of handwritten digits. Each image is 8x8 pixels of integers 0..16.",
                "Iris plants dataset. Number of Instances: 150 (50 in each of three classes).",
                "The wine data are the results of a chemical analysis of wines grown in Italy."]
    question = "How many instances does the iris dataset have?"
    batched = LLMReranker(tok, model, batch_size=3).score(question, passages)
    one_by_one = LLMReranker(tok, model, batch_size=1).score(question, passages)
    assert batched == pytest.approx(one_by_one, abs=1e-3)  # right padding changes nothing
    assert max(range(3), key=lambda i: batched[i]) == 1
    assert all(s < 0 for s in batched)  # mean log-probabilities
    ranked = LLMReranker(tok, model).rerank(question, _hits(*passages), k=1)
    assert ranked[0].chunk.text.startswith("Iris")


def test_hub_paths_fall_back_offline(monkeypatch):
    from genai_lab import models
    from genai_lab.config import setup
    from genai_lab.rag.embed import multilingual_embedder
    from genai_lab.rag.rerank import load_reranker

    asked = []
    monkeypatch.setattr(models, "hub_model_path", lambda name, **kw: asked.append(name))
    assert multilingual_embedder() is None
    cfg = setup("smoke", verbose=False)
    fake_tok, fake_model = object(), object()
    assert isinstance(load_reranker(cfg, fake_tok, fake_model), LLMReranker)
    monkeypatch.setattr(cfg, "profile", "gpu")
    reranker = load_reranker(cfg, fake_tok, fake_model)  # gpu, hub unreachable: the offline reranker
    assert isinstance(reranker, LLMReranker) and reranker.model is fake_model
    assert asked == ["multilingual-minilm", "cross-encoder"]
    assert all(name in models.REGISTRY and models.REGISTRY[name].hub_id for name in asked)
