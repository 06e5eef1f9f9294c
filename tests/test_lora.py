"""LoRA from scratch: exact start, exact merge, peft-equivalent, and it really adapts."""

import copy

import pytest
import torch
from torch import nn

import genai_lab as gl
from genai_lab import lora
from genai_lab.gpt import GPTConfig, TinyGPT


@pytest.fixture(autouse=True)
def one_thread_smoke():
    gl.setup("smoke", verbose=False)


def random_lora(r=4, alpha=8.0, seed=0):
    torch.manual_seed(seed)
    layer = lora.LoRALinear(nn.Linear(12, 7), r=r, alpha=alpha)
    nn.init.normal_(layer.lora_B, std=0.5)  # a trained-looking update
    return layer


def test_starts_identical_to_base_and_freezes_it():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    x = torch.randn(5, 12)
    expected = base(x)
    layer = lora.LoRALinear(base, r=3)
    assert torch.equal(layer(x), expected)
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert layer.lora_A.requires_grad and layer.lora_B.requires_grad
    assert lora.count_trainable(layer) == (3 * 12 + 7 * 3, 12 * 7 + 7 + 3 * 12 + 7 * 3)


def test_forward_is_w_plus_scaled_ba():
    layer = random_lora(r=4, alpha=8.0)
    x = torch.randn(3, 5, 12)
    w = layer.base.weight + 2.0 * layer.lora_B @ layer.lora_A
    assert torch.allclose(layer(x), x @ w.t() + layer.base.bias, atol=1e-5)


def test_merge_and_unmerge_keep_outputs():
    layer = random_lora()
    x = torch.randn(4, 12)
    w0 = layer.base.weight.clone()
    before = layer(x)
    layer.merge()
    assert layer.merged and torch.allclose(layer(x), before, atol=1e-5)
    assert torch.allclose(layer.base.weight, w0 + layer.delta_weight(), atol=1e-6)
    layer.unmerge()
    assert torch.allclose(layer.base.weight, w0, atol=1e-6) and torch.allclose(layer(x), before, atol=1e-5)


def test_matches_peft_on_the_same_layer():
    from peft import LoraConfig, get_peft_model

    layer = random_lora(r=4, alpha=16.0)
    holder = nn.Sequential()
    holder.add_module("proj", copy_linear(layer.base))
    peft_model = get_peft_model(holder, LoraConfig(r=4, lora_alpha=16, target_modules=["proj"], lora_dropout=0.0))
    peft_layer = peft_model.base_model.model.proj
    with torch.no_grad():
        peft_layer.lora_A["default"].weight.copy_(layer.lora_A)
        peft_layer.lora_B["default"].weight.copy_(layer.lora_B)
    x = torch.randn(6, 12)
    assert torch.allclose(layer(x), peft_model(x), atol=1e-5)
    assert lora.count_trainable(layer)[0] == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def copy_linear(linear):
    new = nn.Linear(linear.in_features, linear.out_features)
    new.load_state_dict(linear.state_dict())
    return new


def test_add_lora_on_tiny_gpt_counts_and_merges():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    idx = torch.randint(0, 20, (2, 16))
    with torch.no_grad():
        base_logits = model(idx).logits
    lora.add_lora(model, r=2)
    layers = lora.lora_layers(model)
    assert len(layers) == 2 * 4  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block
    trainable, _ = lora.count_trainable(model)
    assert trainable == sum(2 * (l.in_features + l.out_features) for l in layers)
    with torch.no_grad():
        assert torch.equal(model(idx).logits, base_logits)  # B = 0: unchanged at the start
        for layer in layers:
            nn.init.normal_(layer.lora_B, std=0.05)
        adapted = model(idx).logits
        lora.merge_lora(model)
        assert torch.allclose(model(idx).logits, adapted, atol=1e-5)
        lora.unmerge_lora(model)
        assert torch.allclose(model(idx).logits, adapted, atol=1e-5)


def test_head_only_trains_only_the_output_side():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16))
    lora.prepare_head_only(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"lm_head.weight", "transformer.ln_f.weight", "transformer.ln_f.bias"}
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()


def test_speaker_split_is_disjoint():
    data = lora.speaker_split("PETRUCHIO")
    assert data.new_train_text.startswith("PETRUCHIO:\n") and data.new_val_text.startswith("PETRUCHIO:\n")
    assert len(data.new_train) > 3 * len(data.new_val) > 1000
    assert len(data.old_val) > 50_000


@pytest.mark.slow
def test_bench_smoke_lora_adapts_and_clears_the_bars():
    from genai_lab.bench import run_chapter

    rows = {r["metric"]: r for r in run_chapter("lora", gl.setup("smoke", verbose=False))}
    for row in rows.values():
        assert row["passed"] in (True, None), row
    assert rows["lora_merge_max_abs_diff"]["passed"] is True
    assert rows["lora_r4_gain_over_base"]["value"] > 0.02  # it learned the speaker's lines
    assert rows["lora_r4_trainable_share"]["value"] < 0.1


def test_bad_inputs():
    with pytest.raises(TypeError, match="base"):
        lora.LoRALinear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="r"):
        lora.LoRALinear(nn.Linear(3, 3), r=0)
    with pytest.raises(ValueError, match="alpha"):
        lora.LoRALinear(nn.Linear(3, 3), alpha=-1)
    with pytest.raises(ValueError, match="targets"):
        lora.add_lora(nn.Sequential(nn.Linear(2, 2)), targets=("q_proj",))
    with pytest.raises(TypeError, match="model"):
        lora.count_trainable("model")
    with pytest.raises(TypeError, match="model"):
        lora.prepare_head_only(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="speaker"):
        lora.speaker_split("NOBODY")
    with pytest.raises(ValueError, match="kind"):
        lora.adapt(nn.Linear(2, 2), {"kind": "magic"}, None, steps=1, batch_size=1)


def test_adaptation_steps_follow_the_data_and_the_context():
    data = lora.ShiftedData("X", torch.zeros(19_200, dtype=torch.long), torch.zeros(10, dtype=torch.long),
                            torch.zeros(10, dtype=torch.long), "", "")
    assert lora.adaptation_steps(data, 64) == 150  # 8 passes of 19,200 characters in 16×64 windows
    assert lora.adaptation_steps(data, 256) == 38
    assert lora.adaptation_steps(data, 64, epochs=2) == 38
    assert lora.adaptation_steps(data, 2048) == 20  # never fewer than 20 steps
    with pytest.raises(ValueError, match="block_size"):
        lora.adaptation_steps(data, 1)
    with pytest.raises(ValueError, match="epochs"):
        lora.adaptation_steps(data, 64, epochs=0)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        lora.LoRALinear(nn.Linear(3, 3), alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        lora.add_lora(nn.Sequential(nn.Linear(2, 2)), alpha=alpha, targets=("0",))


def test_float_rank_is_a_type_error():
    with pytest.raises(TypeError, match="r"):
        lora.LoRALinear(nn.Linear(3, 3), r=2.0)


@pytest.mark.parametrize("kwargs, error", [
    ({"r": 0}, ValueError), ({"alpha": float("nan")}, ValueError), ({"targets": ("q_proj",)}, ValueError),
    ({"targets": "0"}, TypeError)])
def test_add_lora_that_fails_leaves_the_model_untouched(kwargs, error):
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error):
        lora.add_lora(model, **{"targets": ("0", "2"), **kwargs})
    assert all(p.requires_grad for p in model.parameters())  # nothing was frozen
    assert not lora.lora_layers(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
