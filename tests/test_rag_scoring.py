"""Answer scoring (exact match, token F1, citations) and evidence-level retrieval metrics of genai_lab.rag."""

from __future__ import annotations

import numpy as np
import pytest

from genai_lab.rag import corpus
from genai_lab.rag.chunking import Chunk
from genai_lab.rag.evaluate import (evaluate_retrieval, load_questions, precision_at_k, recall_at_k,
                                    relevance_labels)
from genai_lab.rag.scoring import (check_citation, cited_passages, contains_answer, exact_match, extract_answer,
                                   is_number, normalize_answer, substring_match, token_f1)
from genai_lab.rag.stores import Hit, MemoryStore


# --------------------------------------------------------------------------- SQuAD-style scoring
def squad_reference_normalize(s: str) -> str:
    """The normalisation of the official SQuAD v1.1 evaluation script, copied as published."""
    import re
    import string

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_reference_f1(prediction: str, ground_truth: str) -> float:
    from collections import Counter

    pred, truth = squad_reference_normalize(prediction).split(), squad_reference_normalize(ground_truth).split()
    common = Counter(pred) & Counter(truth)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred), num_same / len(truth)
    return 2 * precision * recall / (precision + recall)


PAIRS = [("The R.A. Fisher!", "R.A. Fisher"), ("an apple a day", "Apple"), ("442 patients", "442"),
         ("1,603", "1603"), ("disease progression one year", "a measure of disease progression"),
         ("Viola-Jones face detector", "the Viola-Jones detector"),
         ("  Chins,  Situps and Jumps ", "chins situps jumps")]


@pytest.mark.parametrize("prediction, gold", PAIRS)
def test_normalisation_and_f1_match_the_squad_script(prediction, gold):
    assert normalize_answer(prediction) == squad_reference_normalize(prediction)
    assert token_f1(prediction, gold) == pytest.approx(squad_reference_f1(prediction, gold))
    assert exact_match(prediction, gold) == (squad_reference_normalize(prediction) == squad_reference_normalize(gold))


def test_a_wrong_number_holding_the_right_digits_is_not_the_answer():
    for reply in ["16030 [1]", "in 1604 and 1603 [2]", "1604 (or 1603)", "21603", "It has 16030 rows."]:
        assert substring_match(reply, "1603"), reply  # what the old scorer accepted
        assert not exact_match(extract_answer(reply, "1603"), "1603"), reply
        assert not exact_match(extract_answer(reply), "1603"), reply
    for reply in ["1603 [2]", "1603", "Answer: 1603 [1]", "The 1603.", "1,603 [3]\nMore text [1].",
                  "The answer is: 1603", "It was 1603, not 1604."]:
        assert exact_match(extract_answer(reply, "1603"), "1603"), reply
    assert extract_answer("The wine data has 178 samples and 13 attributes [2].", "178") == "178"
    assert extract_answer("There are seven covertypes.", ["seven", "7"]) == "seven"
    assert extract_answer("No number here.", "178") == "" and extract_answer("v1.5 has 3.5 points", "3.5") == "3.5"
    # a number the question already holds is part of a name, not the answer
    question = "How many posts does the 20 newsgroups dataset have?"
    assert extract_answer("The 20 newsgroups dataset has 18846 posts.", "18846", question) == "18846"
    assert extract_answer("The 20 newsgroups dataset has 18846 posts.", "18846") == "20"
    assert extract_answer("It has 20 posts.", "18846", question) == ""
    assert exact_match("seven", ["seven", "7"]) and exact_match("7", ["seven", "7"])
    # a right name next to a wrong year is not an exact answer (text answers: the whole first line)
    reply = "The iris data set was created by R.A. Fisher in 1986."
    assert substring_match(reply, "Fisher") and not exact_match(extract_answer(reply, ["R.A. Fisher", "Fisher"]),
                                                                 ["R.A. Fisher", "Fisher"])
    assert not exact_match("R.A. Fisher in 1986", ["R.A. Fisher", "Fisher"])
    assert token_f1("R.A. Fisher in 1986", "R.A. Fisher") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("", "1603") == 0.0 and token_f1("1603", ["x", "1603"]) == 1.0


def test_extract_answer_reads_the_short_answer():
    assert extract_answer("442 [1]. The diabetes data has 442 patients [1].") == "442"
    assert extract_answer("\n\nAnswer: R.A. Fisher [2]\n") == "R.A. Fisher"
    assert extract_answer("The dataset has 178 samples.") == "The dataset has 178 samples"
    assert extract_answer("Answering is hard.") == "Answering is hard"
    assert extract_answer("") == ""
    assert is_number("1,797") and is_number("seven") and is_number("0.5") and not is_number("1990 census")


def test_contains_answer_compares_whole_words():
    passage = ":Number of Instances: 1603 (50 in each class)"
    assert contains_answer(passage, "1603") and contains_answer(passage, ["x", "number of instances"])
    assert not contains_answer("16030 samples", "1603")
    assert not contains_answer("R.A. Fisher", "Fisher R.A.")
    assert contains_answer("first used by Sir R.A. Fisher.", "R.A. Fisher")


def test_citations_are_checked_against_the_cited_passage():
    passages = ["Iris: 150 instances.", "Wine: 178 instances.", "Digits: 1797 instances."]
    good = check_citation("178 [2]", passages)
    assert good.valid and good.cited == (2,) and good.answer == "178"
    wrong_passage = check_citation("178 [1]", passages)
    assert wrong_passage.cited == (1,) and not wrong_passage.supported and not wrong_passage.valid
    assert not check_citation("178", passages).valid  # no marker: nothing to check
    out_of_range = check_citation("178 [2] [7]", passages)
    assert out_of_range.supported and not out_of_range.in_range and not out_of_range.valid
    assert not check_citation("1603 [1]", ["Wine: 16030 instances.", "x"]).valid
    assert check_citation("178 [1][2]", passages).valid  # one cited passage holding it is enough
    # evaluation: the cited passage must hold the *expected* answer, whatever the reply says
    assert check_citation("The wine data has 13 samples [2]", passages, ["178"]).valid
    assert not check_citation("178 [3]", passages, "178").valid
    fisher = check_citation("Fisher made it [1]", ["Creator: R.A. Fisher"], ["R.A. Fisher", "Fisher"])
    assert fisher.valid and fisher.answer == "R.A. Fisher"
    assert cited_passages("x [2] y [1][2]") == [2, 1]


@pytest.mark.parametrize("call, error, match", [
    (lambda: normalize_answer(3), TypeError, "text"),
    (lambda: exact_match(None, "1"), TypeError, "prediction"),
    (lambda: exact_match("1", []), TypeError, "gold"),
    (lambda: token_f1("1", ["ok", 2]), TypeError, "gold"),
    (lambda: check_citation("1 [1]", "one passage"), TypeError, "passages"),
    (lambda: extract_answer(b"1"), TypeError, "reply"),
])
def test_scoring_rejects_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_every_gold_answer_and_evidence_is_in_its_file():
    docs = {d.name: d.text for d in corpus.load_corpus(corpus.sklearn_descr_dir())}
    for q in load_questions("sklearn")["questions"]:
        (src,) = q["sources"]
        assert isinstance(q["evidence"], str) and q["evidence"].strip(), q
        if "answer" in q:
            golds = [q["answer"]] if isinstance(q["answer"], str) else q["answer"]
            assert contains_answer(docs[src], golds[0]), q  # the first form is the file's own wording


# --------------------------------------------------------------------------- one recall@k definition
def hits(*rows):
    return [Hit(Chunk(source, i, text), 1.0 - 0.1 * i) for i, (source, text) in enumerate(rows)]


def test_evidence_recall_is_the_fraction_of_questions_whose_evidence_chunk_is_in_the_top_k():
    questions = [{"question": "wine?", "sources": ["wine.rst"], "evidence": "178 samples"},
                 {"question": "iris?", "sources": ["iris.rst"], "evidence": "150 flowers"},
                 {"question": "digits?", "sources": ["digits.rst"], "evidence": "8x8"}]
    ranked = {"wine?": hits(("/d/wine.rst", "Wine intro"), ("/d/wine.rst", "It has 178  SAMPLES."),
                            ("/d/iris.rst", "x")),
              "iris?": hits(("/d/iris.rst", "Iris has 150 flowers"), ("/d/wine.rst", "y")),
              "digits?": hits(("/d/iris.rst", "8x8 is not in digits here"), ("/d/digits.rst", "images"))}
    search = lambda q, k: ranked[q][:k]
    ev = evaluate_retrieval(search, questions, ks=(1, 2, 3), level="evidence")
    assert ev["recall@1"] == pytest.approx(1 / 3) and ev["recall@2"] == pytest.approx(2 / 3)
    assert ev["recall@3"] == pytest.approx(2 / 3)  # the digits evidence sits in the wrong file: never found
    assert ev["mrr"] == pytest.approx((1 / 2 + 1) / 3)
    src = evaluate_retrieval(search, questions, ks=(1, 2), level="source")
    assert src["recall@1"] == pytest.approx(2 / 3) and src["recall@2"] == 1.0  # the file is easier than the chunk
    # the same number, one question at a time, with the lab's per-question function
    per_question = [recall_at_k(relevance_labels(search(q["question"], 2), q), q["sources"], 2) for q in questions]
    assert np.mean(per_question) == pytest.approx(ev["recall@2"])
    with pytest.raises(ValueError, match="level"):
        evaluate_retrieval(search, questions, level="chunk")
    with pytest.raises(ValueError, match="evidence"):
        relevance_labels([], {"sources": ["a"]}, "evidence")


def test_precision_at_k_counts_missing_ranks_as_misses():
    assert precision_at_k(["/d/a.rst", "", "/d/a.rst"], ["a.rst"], 2) == 0.5
    assert precision_at_k(["/d/a.rst"], ["a.rst"], 4) == 0.25
    with pytest.raises(ValueError, match="k"):
        precision_at_k(["a"], ["a"], 0)


def test_the_lab_recall_is_the_package_recall():
    from genai_lab.solutions import rag as solutions

    cases = [(["wine", "iris", "wine"], ["iris"]), (["wine", "", "digits"], ["iris", "digits"]), ([""], ["x"])]
    for retrieved, gold in cases:
        for k in (1, 2, 3):
            assert solutions.recall_at_k(retrieved, gold, k) == recall_at_k(retrieved, gold, k)


# --------------------------------------------------------------------------- metadata filter
def test_memory_store_filters_by_source():
    rng = np.random.default_rng(0)
    chunks = [Chunk(f"/doc{i % 3}.md", i // 3, f"t{i}") for i in range(30)]
    X = rng.standard_normal((30, 8)).astype(np.float32)
    store = MemoryStore()
    for s in sorted({c.source for c in chunks}):
        rows = [i for i, c in enumerate(chunks) if c.source == s]
        store.replace_document(s, "h", [chunks[i] for i in rows], X[rows])
    q = rng.standard_normal(8).astype(np.float32)
    everything = store.search(q, 30)
    filtered = store.search(q, 4, source="/doc1.md")
    assert [h.chunk for h in filtered] == [h.chunk for h in everything if h.chunk.source == "/doc1.md"][:4]
    assert len(store.search(q, 50, source="/doc2.md")) == 10 and store.search(q, 3, source="/none.md") == []
    with pytest.raises(TypeError, match="source"):
        store.search(q, 3, source=1)


def test_pgvector_where_filter_matches_memory_and_never_comes_back_short(tmp_path):
    from genai_lab.rag.pgvector_store import PgVectorStore, start_local_server, stop_local_server

    rng = np.random.default_rng(2)
    chunks = [Chunk(f"/doc{i % 20}.md", i // 20, f"t{i}") for i in range(400)]
    X = rng.standard_normal((400, 16)).astype(np.float32)
    memory = MemoryStore()
    server, dsn = start_local_server(tmp_path / "pg")
    try:
        store = PgVectorStore(dsn, dim=16, ef_search=5)  # a short candidate list: a plain filter would run dry
        for s in sorted({c.source for c in chunks}):
            rows = [i for i, c in enumerate(chunks) if c.source == s]
            for target in (store, memory):
                target.replace_document(s, "h", [chunks[i] for i in rows], X[rows])
        for q in rng.standard_normal((5, 16)).astype(np.float32):
            for source in ("/doc3.md", "/doc17.md"):
                pg_hits, mem_hits = store.search(q, 8, source=source), memory.search(q, 8, source=source)
                assert len(pg_hits) == 8 and all(h.chunk.source == source for h in pg_hits)
                assert [h.chunk for h in pg_hits] == [h.chunk for h in mem_hits]
        assert store.search(X[0], 5, source="/missing.md") == []
        with pytest.raises(TypeError, match="source"):
            store.search(X[0], 5, source=3)
        store.close()
    finally:
        stop_local_server(server)


# --------------------------------------------------------------------------- citations chosen by the model
def tiny_reader():
    """SmolLM2's tokenizer with a tiny random Llama: fast, deterministic, the real chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from genai_lab.models import smollm2_path

    tok = AutoTokenizer.from_pretrained(smollm2_path())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return tok, LlamaForCausalLM(config).eval()


def test_cite_passage_picks_the_passage_under_which_the_reply_is_most_likely():
    import torch

    from genai_lab.rag.generate import add_citation, build_messages, cite_passage, reply_log_likelihood

    tok, model = tiny_reader()
    hits = [Hit(Chunk(f"/d/{n}.rst", 0, f"passage {n} with some words"), 1.0) for n in ("a", "b", "c", "d")]
    for reply in ["178", "The wine data has 178 samples.", "I think 3"]:
        # reference: transformers' own loss (mean negative log-likelihood of the labelled reply tokens)
        losses = []
        for h in hits:
            prompt = tok.apply_chat_template(build_messages("How many?", [h]), add_generation_prompt=True,
                                             tokenize=False)
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            r_ids = tok(reply, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p_ids + r_ids])
            labels = ids.clone()
            labels[0, :len(p_ids)] = -100
            with torch.no_grad():
                losses.append(float(model(input_ids=ids, labels=labels).loss) * len(r_ids))
            assert reply_log_likelihood(tok, model, build_messages("How many?", [h]), reply) == \
                pytest.approx(-losses[-1], rel=1e-4)
        chosen = cite_passage(tok, model, "How many?", reply, hits)
        assert chosen == int(np.argmin(losses)) + 1
        text, self_cited = add_citation(tok, model, "How many?", reply + "\nmore", hits)
        assert text == f"{reply} [{chosen}]\nmore" and not self_cited
    assert add_citation(tok, model, "How many?", "178 [2]", hits) == ("178 [2]", True)
    assert add_citation(tok, model, "How many?", "I don't know.", hits) == ("I don't know.", False)
    with pytest.raises(ValueError, match="hits"):
        cite_passage(tok, model, "How many?", "178", [])
    with pytest.raises(ValueError, match="reply"):
        cite_passage(tok, model, "How many?", " ", hits)


@pytest.mark.slow
def test_smollm2_cites_the_passage_that_holds_its_answer():
    from genai_lab.models import load_smollm2
    from genai_lab.rag.generate import cite_passage
    from genai_lab.rag.scoring import check_citation

    tok, model = load_smollm2()
    texts = ["Iris plants dataset\n:Number of Instances: 150 (50 in each of three classes)",
             "Wine recognition dataset\n:Number of Instances: 178",
             "Optical recognition of handwritten digits dataset\n:Number of Instances: 1797"]
    hits = [Hit(Chunk(f"/d/{i}.rst", 0, t), 1.0) for i, t in enumerate(texts)]
    for question, reply, passage in [("How many samples are in the wine dataset?", "178", 2),
                                     ("How many instances does the iris dataset have?", "150", 1),
                                     ("How many digit images are there?", "1797", 3)]:
        n = cite_passage(tok, model, question, reply, hits)
        assert n == passage and check_citation(f"{reply} [{n}]", texts).valid
