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
    # the matched-rate sweep: each method's best rate is one of the two compared, gains are real
    assert {rows["matched_lr_full_ft_best_lr"]["value"], rows["matched_lr_lora_r4_best_lr"]["value"]} <= {3e-4, 3e-3}
    assert rows["matched_lr_lora_r4_best_gain"]["value"] >= rows["lora_r4_gain_over_base"]["value"] - 1e-9
    assert rows["matched_lr_full_ft_best_gain"]["value"] > 0.02 and rows["matched_lr_head_best_gain"]["value"] > 0.02


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


# --------------------------------------------------------------------------- why B = 0 and A random
def test_lora_start_b_zero_a_random_is_exact_and_learns():
    run = lora.lora_init_experiment("random", "zero")
    assert run["output_change"] == 0.0  # B = 0 ⇒ ΔW = BA = 0 exactly
    assert run["grad_A"] == 0.0 and run["grad_B"] > 1e-3  # ∇A carries B (zero), ∇B carries A
    assert run["A_moved"] > 0 and run["B_moved"] > 0  # once B moved, A gets gradients too
    assert len(run["losses"]) == 41 and run["losses"][-1] < 0.5 * run["losses"][0]


def test_lora_start_both_zero_never_trains():
    run = lora.lora_init_experiment("zero", "zero", steps=10)
    assert run["output_change"] == 0.0
    assert run["grad_A"] == 0.0 and run["grad_B"] == 0.0
    assert run["A_moved"] == 0.0 and run["B_moved"] == 0.0
    assert len(set(run["losses"])) == 1  # the loss never moves


def test_lora_start_both_random_changes_the_output_before_training():
    run = lora.lora_init_experiment("random", "random")
    assert run["output_change"] > 0.1
    assert run["grad_A"] > 0 and run["grad_B"] > 0


def test_lora_start_a_zero_b_random_also_starts_exact():
    run = lora.lora_init_experiment("zero", "random")
    assert run["output_change"] == 0.0 and run["grad_B"] == 0.0 and run["grad_A"] > 1e-3
    assert run["losses"][-1] < run["losses"][0]


def test_first_lora_gradients_match_the_formula():
    import torch.nn.functional as F

    layer, x, target = lora.lora_init_problem(seed=3)
    loss = F.mse_loss(layer(x), target)
    loss.backward()
    y = layer.base(x).detach().requires_grad_()
    (dy,) = torch.autograd.grad(F.mse_loss(y, target), [y])  # ∂L/∂y at B = 0 (output = base output)
    expected_grad_B = layer.scaling * dy.t() @ (x @ layer.lora_A.detach().t())  # s · gᵀ (x Aᵀ)
    torch.testing.assert_close(layer.lora_B.grad, expected_grad_B)
    assert torch.count_nonzero(layer.lora_A.grad) == 0  # s · Bᵀ gᵀ x with B = 0


def test_lora_problem_is_seeded_and_keeps_the_global_random_state():
    state = torch.get_rng_state()
    l1, x1, t1 = lora.lora_init_problem(seed=5)
    l2, x2, t2 = lora.lora_init_problem(seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(x1, x2) and torch.equal(t1, t2) and torch.equal(l1.lora_A, l2.lora_A)
    assert torch.count_nonzero(l1.lora_B) == 0 and torch.count_nonzero(l1.lora_A) == l1.lora_A.numel()
    bound = 1 / l1.in_features ** 0.5
    assert l1.lora_A.abs().max() <= bound  # kaiming uniform, as peft


def test_peft_starts_lora_the_same_way():
    from collections import OrderedDict

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(proj=nn.Linear(32, 16)))
    x = torch.randn(4, 32)
    with torch.no_grad():
        before = net(x)
    peft_net = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, target_modules=["proj"], lora_dropout=0.0))
    layer = peft_net.base_model.model.proj
    assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    assert torch.count_nonzero(layer.lora_A["default"].weight) == layer.lora_A["default"].weight.numel()
    with torch.no_grad():
        assert torch.equal(peft_net(x), before)


def test_lora_init_bad_inputs():
    with pytest.raises(TypeError, match="layer"):
        lora.init_lora_factors(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="A"):
        lora.init_lora_factors(lora.LoRALinear(nn.Linear(2, 2), r=1), A="ones")
    with pytest.raises(ValueError, match="B"):
        lora.lora_init_problem(B="normal")
    with pytest.raises(ValueError, match="steps"):
        lora.lora_init_experiment(steps=0)
    with pytest.raises(ValueError, match="lr"):
        lora.lora_init_experiment(lr=0.0)


# --------------------------------------------------------------------------- matched learning rates
def toy_shift(seed=0):
    """A tiny GPT and a shifted distribution it can learn in a few steps: a repeating pattern."""
    torch.manual_seed(seed)
    base = TinyGPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=32))
    pattern = torch.tensor([3, 7, 1, 9, 5]).repeat(80)
    old = torch.randint(0, 12, (400,), generator=torch.Generator().manual_seed(seed))
    return base, lora.ShiftedData("TOY", pattern[:300], pattern[300:], old, "", "")


def test_method_settings_by_name_and_rate():
    assert lora.method_settings("LoRA r=8") == {"kind": "lora", "r": 8, "lr": 3e-3}
    assert lora.method_settings("full fine-tuning", 1e-3) == {"kind": "full", "lr": 1e-3}
    assert lora.method_settings("head only")["kind"] == "head"
    for bad, err in (("LoRA r=0", ValueError), ("LoRA r=x", ValueError), ("prompt tuning", ValueError), (4, TypeError)):
        with pytest.raises(err, match="name"):
            lora.method_settings(bad)
    for lr in (0.0, -1e-3, float("nan"), True):
        with pytest.raises(ValueError, match="lr"):
            lora.method_settings("head only", lr)


def test_learning_rate_sweep_trains_each_method_at_each_rate(monkeypatch):
    base, data = toy_shift()
    seen = []
    real_adapt = lora.adapt

    def spy(b, method, d, **kwargs):
        seen.append((method["kind"], method["lr"], kwargs["steps"], kwargs["batch_size"], kwargs["seed"]))
        return real_adapt(b, method, d, **kwargs)

    monkeypatch.setattr(lora, "adapt", spy)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    rows = lora.learning_rate_sweep(base, data, [1e-2, 1e-3], ["head only", "LoRA r=2"], steps=20, batch_size=4, seed=3)
    assert [(r["method"], r["lr"]) for r in rows] == [("head only", 1e-3), ("head only", 1e-2),
                                                      ("LoRA r=2", 1e-3), ("LoRA r=2", 1e-2)]
    assert sorted(seen) == sorted([("head", 1e-3, 20, 4, 3), ("head", 1e-2, 20, 4, 3),
                                   ("lora", 1e-3, 20, 4, 3), ("lora", 1e-2, 20, 4, 3)])  # only the rate varies
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())  # the base is not touched
    from genai_lab.gpt import evaluate_loss

    base_new, base_old = evaluate_loss(base, data.new_val), evaluate_loss(base, data.old_val)
    for r in rows:
        assert r["gain"] == pytest.approx(base_new - r["new_val"]) and r["forgetting"] == pytest.approx(r["old_val"] - base_old)
    by = {(r["method"], r["lr"]): r for r in rows}
    # on a learnable pattern the higher rate learns more in 20 steps, for both methods
    assert by["head only", 1e-2]["gain"] > by["head only", 1e-3]["gain"] > 0
    assert by["LoRA r=2", 1e-2]["gain"] > by["LoRA r=2", 1e-3]["gain"] > 0


def test_learning_rate_sweep_reuses_known_runs_and_checks_its_arguments(monkeypatch):
    base, data = toy_shift()
    calls = []
    monkeypatch.setattr(lora, "adapt", lambda *a, **k: calls.append(a[1]) or (None, {
        "trainable": 1, "new_val": 1.0, "old_val": 2.0}))
    known = {("head only", 1e-3): {"trainable": 7, "new_val": 0.5, "old_val": 3.0}}
    rows = lora.learning_rate_sweep(base, data, [1e-3, 1e-2], ["head only"], steps=5, known=known)
    assert len(calls) == 1 and calls[0]["lr"] == 1e-2
    assert rows[0]["trainable"] == 7 and rows[0]["new_val"] == 0.5
    with pytest.raises(ValueError, match="lrs"):
        lora.learning_rate_sweep(base, data, [], steps=5)
    with pytest.raises(ValueError, match="methods"):
        lora.learning_rate_sweep(base, data, [1e-3], [], steps=5)
    with pytest.raises(ValueError, match="lr"):
        lora.learning_rate_sweep(base, data, [1e-3, -1.0], steps=5)
    with pytest.raises(ValueError, match="name"):
        lora.learning_rate_sweep(base, data, [1e-3], ["LoRA"], steps=5)
