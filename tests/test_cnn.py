"""Tests for genai_lab.cnn: convolution by hand vs PyTorch, translation, transfer, the classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import genai_lab as gl
from genai_lab import cnn
from genai_lab.data import ImageData


@pytest.fixture(scope="module")
def cfg():
    return gl.setup("smoke", threads=1, verbose=False)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- convolution by hand
@pytest.mark.parametrize("stride,padding,kernel", [(1, 0, 3), (1, 1, 3), (2, 1, 3), (2, 0, 5), (3, 2, 4)])
def test_conv2d_manual_matches_torch(stride, padding, kernel):
    x = _rand(2, 3, 9, 11, seed=1) - 0.5
    w = _rand(4, 3, kernel, kernel, seed=2) - 0.5
    b = _rand(4, seed=3)
    ours = cnn.conv2d_manual(x, w, b, stride=stride, padding=padding)
    ref = F.conv2d(x, w, b, stride=stride, padding=padding)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cnn.conv2d_manual(x, w, stride=stride, padding=padding),
                               F.conv2d(x, w, stride=stride, padding=padding), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 1), (3, 2), (2, 1)])
def test_max_pool2d_manual_matches_torch(kernel, stride):
    x = _rand(2, 3, 7, 8, seed=4)
    torch.testing.assert_close(cnn.max_pool2d_manual(x, kernel, stride), F.max_pool2d(x, kernel, stride))


def test_conv_output_size_matches_torch_shapes():
    for size, k, s, p in [(28, 3, 1, 1), (28, 5, 2, 0), (7, 3, 2, 1), (8, 8, 1, 0), (10, 4, 3, 2)]:
        out = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k), stride=s, padding=p)
        assert cnn.conv_output_size(size, k, s, p) == out.shape[-1]


def test_parameter_counts_match_torch_layers():
    conv = nn.Conv2d(3, 16, 5)
    assert cnn.conv2d_parameter_count(3, 16, 5) == sum(p.numel() for p in conv.parameters())
    assert cnn.conv2d_parameter_count(3, 16, 5, bias=False) == 3 * 16 * 25
    dense = nn.Linear(784, 100)
    assert cnn.dense_parameter_count(784, 100) == sum(p.numel() for p in dense.parameters())
    # the same 1x28x28 -> 16x28x28 map as a dense layer: 9.8 M weights, ~61,500x the conv's 160
    assert cnn.dense_parameter_count(784, 16 * 784) == 784 * 12544 + 12544
    assert cnn.dense_parameter_count(784, 16 * 784) > 60_000 * cnn.conv2d_parameter_count(1, 16, 3)


def test_receptive_field_formula_and_measurement_agree():
    assert cnn.receptive_field([]) == 1
    assert cnn.receptive_field([(3, 1)]) == 3
    assert cnn.receptive_field([(3, 1), (3, 1)]) == 5
    assert cnn.receptive_field([(3, 1), (2, 2), (3, 1)]) == 8
    for config in (cnn.CNNConfig(), cnn.CNNConfig(image_size=28, channels=(4, 4, 4)),
                   cnn.CNNConfig(image_size=16, channels=(4, 4), kernel_size=5)):
        model = cnn.build_cnn(config)
        assert cnn.receptive_field(cnn.cnn_layer_specs(model)) == cnn.measured_receptive_field(model)


# --------------------------------------------------------------------------- kernels that are learned
def test_learn_kernel_recovers_sobel_from_its_outputs():
    images = gl.data.load_digits().test_x[:256]
    sobel = torch.tensor(cnn.SOBEL_X)
    state = torch.random.get_rng_state()
    out = cnn.learn_kernel(images, sobel, steps=300, lr=0.1, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert (out["initial"] - sobel).abs().max() > 1.0         # it starts far away...
    assert (out["kernel"] - sobel).abs().max() < 0.01         # ...and ends on Sobel
    assert len(out["losses"]) == 300 and out["losses"][-1] < 1e-4 * out["losses"][0]
    # the initial kernel is PyTorch's default Conv2d init after manual_seed(seed)
    torch.manual_seed(0)
    ref = nn.Conv2d(1, 1, 3, padding=1, bias=False).weight.detach()[0, 0]
    torch.testing.assert_close(out["initial"], ref)
    again = cnn.learn_kernel(images, sobel[None, None], steps=300, lr=0.1, seed=0)
    assert torch.equal(again["kernel"], out["kernel"])


def test_smooth_energy_fraction_matches_a_least_squares_plane_fit():
    w = torch.randn(6, 2, 3, 3, generator=torch.Generator().manual_seed(7))
    ours = cnn.smooth_energy_fraction(w)
    assert ours.shape == (6, 2)
    r, c = torch.meshgrid(torch.arange(3.), torch.arange(3.), indexing="ij")
    design = torch.stack([torch.ones(9), c.flatten(), r.flatten()], 1).double()   # (9, 3)
    for kernel, value in zip(w.flatten(0, 1), ours.flatten()):
        target = kernel.flatten().double()[:, None]
        fit = design @ torch.linalg.lstsq(design, target).solution
        assert float(value) == pytest.approx(float(fit.pow(2).sum() / target.pow(2).sum()), abs=1e-6)
    sobel = torch.tensor(cnn.SOBEL_X)
    assert float(cnn.smooth_energy_fraction(sobel)) == pytest.approx(8 / 9)
    assert float(cnn.smooth_energy_fraction(0.3 + 2 * c - r)) == pytest.approx(1.0)
    laplacian = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]])
    assert float(cnn.smooth_energy_fraction(laplacian)) == pytest.approx(0.0, abs=1e-9)
    # independent random weights: 3 / k² on average, whatever their scale
    many = torch.randn(20000, 1, 3, 3, generator=torch.Generator().manual_seed(8))
    assert float(cnn.smooth_energy_fraction(100 * many).mean()) == pytest.approx(1 / 3, abs=0.01)
    big = torch.randn(4000, 1, 5, 5, generator=torch.Generator().manual_seed(9))
    assert float(cnn.smooth_energy_fraction(big).mean()) == pytest.approx(3 / 25, abs=0.01)


# --------------------------------------------------------------------------- networks
def test_cnn_and_mlp_shapes_and_seeding():
    model = cnn.build_cnn(cnn.CNNConfig(image_size=28, channels=(8, 16), hidden=32))
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    names = [n for n, _ in model.feature_maps(torch.zeros(1, 1, 28, 28))]
    assert names == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]
    again = cnn.build_cnn(cnn.CNNConfig(image_size=28, channels=(8, 16), hidden=32))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    mlp = cnn.build_mlp(8, (32,))
    assert mlp(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    # the digits CNN has fewer weights than the MLP baseline it is compared with
    assert gl.train.count_parameters(cnn.build_cnn(cnn.cnn_config_for("digits"))) < \
        gl.train.count_parameters(cnn.build_mlp(8, cnn.mlp_hidden_for("digits")))


# --------------------------------------------------------------------------- translation
def test_shift_images_moves_and_zero_fills():
    x = torch.arange(16.).view(1, 1, 4, 4)
    right = cnn.shift_images(x, dx=1)
    assert torch.equal(right[..., :, 1:], x[..., :, :-1]) and torch.all(right[..., :, 0] == 0)
    up = cnn.shift_images(x, dy=-2)
    assert torch.equal(up[..., :2, :], x[..., 2:, :]) and torch.all(up[..., 2:, :] == 0)
    assert torch.equal(cnn.shift_images(x), x)


def test_convolution_is_equivariant_and_global_pool_is_nearly_invariant():
    model = cnn.build_cnn(cnn.CNNConfig(image_size=16, channels=(8, 8)))
    x = torch.zeros(4, 1, 16, 16)
    x[:, :, 4:11, 4:11] = _rand(4, 1, 7, 7, seed=5)  # content away from the border
    change = cnn.representation_change(model, x, shift=1)
    assert change["conv1 (re-aligned)"] < 1e-6
    assert change["input"] > 0.5
    assert change["global pool"] < 0.5 * change["input"]


def test_position_probe_reads_position_from_map_not_from_interior_global_pool():
    model = cnn.build_cnn(cnn.CNNConfig(image_size=8, channels=(8, 8)))
    x = _rand(60, 1, 8, 8, seed=6)
    flush = cnn.position_probe_accuracy(model, x, margin=0)
    assert flush["feature map"] == 1.0
    inside = cnn.position_probe_accuracy(model, x, margin=12)
    assert inside["feature map"] == 1.0
    assert inside["global pool"] <= 0.6  # identical vectors: chance level


# --------------------------------------------------------------------------- transfer learning
def _toy_data(n=40):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.arange(n) % 4
    return ImageData(x, y, x[:8], y[:8], ("a", "b", "c", "d"))


def test_class_subset_and_few_shot():
    data = _toy_data()
    sub = cnn.class_subset(data, [3, 1])
    assert set(sub.train_y.tolist()) == {0, 1} and sub.classes == ("d", "b")
    assert torch.equal(sub.train_x[sub.train_y == 0], data.train_x[data.train_y == 3])
    few = cnn.few_shot(sub, 2, seed=0)
    assert few.train_y.bincount().tolist() == [2, 2]
    assert torch.equal(few.test_x, sub.test_x)


def test_adapt_few_shot_trains_the_right_parameters():
    data = cnn.class_subset(_toy_data(), [0, 1])
    pre = cnn.build_cnn(cnn.CNNConfig(num_classes=2))
    before = {n: p.clone() for n, p in pre.named_parameters()}
    head = cnn.adapt_few_shot(pre, data, "transfer learning", steps=3)
    assert head["trainable_parameters"] == 128 * 2 + 2
    assert torch.equal(head["model"].features[0][0].weight, before["features.0.0.weight"])
    full = cnn.adapt_few_shot(pre, data, "fine-tuning", steps=3)
    assert full["trainable_parameters"] == gl.train.count_parameters(pre)
    assert not torch.equal(full["model"].features[0][0].weight, before["features.0.0.weight"])
    assert all(torch.equal(p, before[n]) for n, p in pre.named_parameters())  # pretrained untouched


def test_adaptation_setup_freezes_and_groups_the_right_parameters():
    pre = cnn.build_cnn(cnn.CNNConfig(num_classes=5))
    total = gl.train.count_parameters(pre)
    new_layer = 128 * 3 + 3                                   # flatten(32·2·2) → 3 classes

    def names(model, params):
        ids = {id(p) for p in params}
        return {n for n, p in model.named_parameters() if id(p) in ids}

    model, groups = cnn.adaptation_setup(pre, 3, "transfer learning", lr=0.01)
    assert [g["lr"] for g in groups] == [0.01]
    assert names(model, groups[0]["params"]) == {"head.1.weight", "head.1.bias"}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.1.weight", "head.1.bias"}
    assert gl.train.count_parameters(model, trainable_only=True) == new_layer
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)

    model, groups = cnn.adaptation_setup(pre, 3, "fine-tuning", lr=0.01)
    assert [g["lr"] for g in groups] == [0.01, 0.001]
    assert names(model, groups[0]["params"]) == {"head.1.weight", "head.1.bias"}
    assert names(model, groups[1]["params"]) == {n for n, _ in model.named_parameters()} - {
        "head.1.weight", "head.1.bias"}
    assert all(p.requires_grad for p in model.parameters())
    assert gl.train.count_parameters(model) == total - (128 * 5 + 5) + new_layer
    # the copied backbone starts where the pretrained one is, and is a copy
    assert torch.equal(model.features[0][0].weight, pre.features[0][0].weight)
    assert model.features[0][0].weight is not pre.features[0][0].weight

    model, groups = cnn.adaptation_setup(pre, 3, "from scratch", lr=0.01)
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(model.parameters()))
    assert not torch.equal(model.features[0][0].weight, pre.features[0][0].weight)
    assert all(p.requires_grad for p in pre.parameters())   # the pretrained model is untouched

    # with a hidden layer in the head, fine-tuning still moves every pretrained layer gently
    deep = cnn.build_cnn(cnn.CNNConfig(hidden=16, num_classes=5))
    model, groups = cnn.adaptation_setup(deep, 3, "fine-tuning")
    assert names(model, groups[1]["params"]) >= {"head.1.weight", "features.0.0.weight"}
    assert names(model, groups[0]["params"]) == {"head.3.weight", "head.3.bias"}


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call,exc,word", [
    (lambda: cnn.conv2d_manual(torch.zeros(1, 8, 8), torch.zeros(1, 1, 3, 3)), ValueError, "x"),
    (lambda: cnn.conv2d_manual(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 3, 3)), ValueError, "channels"),
    (lambda: cnn.conv2d_manual(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 3, 3), stride=0), ValueError, "stride"),
    (lambda: cnn.conv2d_manual([[1.0]], torch.zeros(1, 1, 3, 3)), TypeError, "x"),
    (lambda: cnn.max_pool2d_manual(torch.zeros(1, 1, 4, 4), 5), ValueError, "kernel_size"),
    (lambda: cnn.conv_output_size(8, 3, padding=-1), ValueError, "padding"),
    (lambda: cnn.conv2d_parameter_count(1.5, 2, 3), TypeError, "in_channels"),
    (lambda: cnn.receptive_field("33"), TypeError, "layers"),
    (lambda: cnn.receptive_field([(3,)]), ValueError, "layers"),
    (lambda: cnn.shift_images(torch.zeros(1, 1, 4, 4), dx=4), ValueError, "shift"),
    (lambda: cnn.shift_images(torch.zeros(1, 1, 4, 4), dx=1.0), TypeError, "dx"),
    (lambda: cnn.CNNConfig(kernel_size=4), ValueError, "kernel_size"),
    (lambda: cnn.CNNConfig(image_size=4, channels=(4, 4, 4)), ValueError, "image_size"),
    (lambda: cnn.SmallCNN({"image_size": 8}), TypeError, "config"),
    (lambda: cnn.build_mlp(8, 32), TypeError, "hidden"),
    (lambda: cnn.trained_classifier(gl.current(), "mnist"), ValueError, "dataset"),
    (lambda: cnn.trained_classifier("smoke", "digits"), TypeError, "cfg"),
    (lambda: cnn.class_subset(_toy_data(), [0, 0]), ValueError, "classes"),
    (lambda: cnn.few_shot(_toy_data(), 11), ValueError, "shots_per_class"),
    (lambda: cnn.adapt_few_shot(cnn.build_cnn(), _toy_data(), "lora"), ValueError, "method"),
    (lambda: cnn.adapt_few_shot(None, _toy_data(), "fine-tuning"), TypeError, "pretrained"),
    (lambda: cnn.adaptation_setup(cnn.build_cnn(), 3, "freeze"), ValueError, "method"),
    (lambda: cnn.adaptation_setup(cnn.build_cnn(), 1, "fine-tuning"), ValueError, "num_classes"),
    (lambda: cnn.adaptation_setup(cnn.build_cnn(), 3, "fine-tuning", lr=0), ValueError, "lr"),
    (lambda: cnn.learn_kernel(torch.zeros(2, 3, 8, 8), torch.zeros(3, 3)), ValueError, "images"),
    (lambda: cnn.learn_kernel(torch.zeros(2, 1, 8, 8), torch.zeros(2, 2)), ValueError, "target_kernel"),
    (lambda: cnn.learn_kernel(torch.zeros(2, 1, 8, 8), [[1.0]]), TypeError, "target_kernel"),
    (lambda: cnn.learn_kernel(torch.zeros(2, 1, 8, 8), torch.zeros(3, 3), steps=0), ValueError, "steps"),
    (lambda: cnn.smooth_energy_fraction([[1.0, 2.0], [3.0, 4.0]]), TypeError, "weight"),
    (lambda: cnn.smooth_energy_fraction(torch.zeros(4, 3, 2)), ValueError, "weight"),
    (lambda: cnn.place_on_canvas(torch.zeros(1, 1, 8, 8), 10, 4), ValueError, "width"),
])
def test_bad_input_raises_naming_the_argument(call, exc, word):
    with pytest.raises(exc, match=word):
        call()


# --------------------------------------------------------------------------- trained models
@pytest.mark.slow
def test_trained_classifier_and_bench_smoke_clear_the_bars(cfg):
    model, meta = cnn.trained_classifier(cfg, "digits", verbose=False)
    data = gl.data.load_images("digits", cfg)
    acc = gl.train.accuracy(model, data.test_x, data.test_y)
    assert acc == pytest.approx(meta["metrics"]["test_accuracy"])
    assert acc >= 0.97  # the bar; chance is 0.10
    assert not model.training and model(data.test_x[:2]).shape == (2, 10)
    mlp, _ = cnn.trained_mlp(cfg, "digits", verbose=False)
    cnn_shift = cnn.accuracy_vs_shift(model, data.test_x, data.test_y, shifts=(1,))[1]
    mlp_shift = cnn.accuracy_vs_shift(mlp, data.test_x, data.test_y, shifts=(1,))[1]
    assert cnn_shift > mlp_shift + 0.05  # weight sharing + pooling: more robust to a 1-pixel shift
    # the first-layer filters moved away from their random start towards smooth blobs and edges
    before = cnn.build_cnn(model.config, seed=cfg.seed).features[0][0].weight.detach()
    after = model.features[0][0].weight.detach().cpu()
    smooth = [float(cnn.smooth_energy_fraction(w).mean()) for w in (before, after, after - before)]
    assert smooth[1] > smooth[0] + 0.05 and smooth[2] > max(smooth[1], smooth[0] + 0.15), smooth
    rows = gl.bench.run_chapter("cnn", cfg)  # reuses the cached weights trained above
    barred = [r for r in rows if r["bar"] is not None]
    assert barred and all(r["passed"] is True for r in barred), barred


# --------------------------------------------------------------------------- lab checks
def test_lab_checks_pass_reference_fail_wrong_and_wait_for_stubs():
    from genai_lab.checks import cnn as checks
    from genai_lab.checks import FAILED, PASSED, RESULTS, TODO

    saved = list(RESULTS)

    def stub(*args, **kwargs):
        raise NotImplementedError

    ok = [checks.check_output_size(cnn.conv_output_size, verbose=False),
          checks.check_conv2d(cnn.conv2d_manual, verbose=False),
          checks.check_max_pool2d(cnn.max_pool2d_manual, verbose=False),
          checks.check_parameter_counts(cnn.conv2d_parameter_count, cnn.dense_parameter_count,
                                        verbose=False),
          checks.check_receptive_field(cnn.receptive_field, verbose=False)]
    assert [r.status for r in ok] == [PASSED] * 5
    no_bias = checks.check_conv2d(lambda x, w, b, stride, padding: F.conv2d(x, w, None, stride, padding),
                                  verbose=False)
    assert no_bias.status == FAILED and "differs" in no_bias.message
    avg = checks.check_max_pool2d(lambda x, k, s: F.avg_pool2d(x, k, s), verbose=False)
    assert avg.status == FAILED
    no_bias_count = checks.check_parameter_counts(lambda i, o, k: o * i * k * k, cnn.dense_parameter_count,
                                                  verbose=False)
    assert no_bias_count.status == FAILED and "nn.Conv2d" in no_bias_count.message
    assert checks.check_receptive_field(lambda layers: 1 + sum(k - 1 for k, _ in layers),
                                        verbose=False).status == FAILED
    assert checks.check_conv2d(stub, verbose=False).status == TODO
    RESULTS[:] = saved  # leave the shared list of lab results as it was
