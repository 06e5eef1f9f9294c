import pytest

from genai_lab import models


def test_minilm_offline_gives_unit_sentence_embeddings():
    model = models.load_minilm("sentence")
    emb = model.encode(["a cat sits on the mat", "a kitten rests on a rug", "stock prices fell"],
                       normalize_embeddings=True)
    assert emb.shape == (3, 384)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2  # paraphrases are closer than unrelated text


def test_minilm_encoder_returns_attention_maps():
    import torch

    tok, enc = models.load_minilm("encoder")
    batch = tok("This is a pen.", return_tensors="pt")
    with torch.no_grad():
        out = enc(**batch, output_attentions=True)
    assert len(out.attentions) == 6 and out.attentions[0].shape[1] == 12
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(1), atol=1e-4)


def test_hub_model_offline_returns_none(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    assert models.hub_model_path("gpt2") is None
    assert "unreachable" in capsys.readouterr().err
    assert not models.hub_reachable()


def test_bad_names():
    with pytest.raises(ValueError, match="kind"):
        models.load_minilm("decoder")
    with pytest.raises(ValueError, match="name"):
        models.model_source("gpt-5")


@pytest.mark.slow
def test_smollm2_answers_offline():
    import torch

    tok, model = models.load_smollm2()
    msgs = [{"role": "user", "content": "What is the capital of Japan?"}]
    inputs = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Tokyo" in tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_quiet_progress_bars_silences_transformers_and_the_gguf_loader_then_restores_them(capsys):
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    plain = gguf_utils.tqdm
    was_on = hf_logging.is_progress_bar_enabled()   # gl.setup() in an earlier test may have turned them off
    hf_logging.enable_progress_bar()
    try:
        with models._quiet_progress_bars():
            assert not hf_logging.is_progress_bar_enabled()
            for _ in gguf_utils.tqdm(range(3), desc="must not show"):
                pass
        assert "must not show" not in capsys.readouterr().err
        assert hf_logging.is_progress_bar_enabled() and gguf_utils.tqdm is plain
    finally:
        if not was_on:
            hf_logging.disable_progress_bar()
