"""Tests for genai_lab.gan: shapes, losses against their formulas, one training step, the
diversity measurement, bad input, and (slow) the chapter's bench at the smoke profile."""

import math

import pytest
import torch

from genai_lab import gan
from genai_lab.config import LabConfig


def test_networks_have_the_documented_shapes():
    for dataset, size in (("digits", 8), ("fashion_mnist", 28)):
        model = gan.GAN(gan.GANConfig(dataset=dataset, latent_dim=8, width=4))
        images = model.generator(torch.randn(6, 8))
        assert images.shape == (6, 1, size, size)
        assert images.min() >= -1 and images.max() <= 1
        assert model.discriminator(images).shape == (6,)


def test_losses_match_their_formulas():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(32, generator=g), torch.randn(32, generator=g)
    d_expected = -(torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean())
    assert torch.allclose(gan.discriminator_loss(real, fake), d_expected, atol=1e-5)
    smooth = -(0.9 * torch.log(torch.sigmoid(real)) + 0.1 * torch.log(1 - torch.sigmoid(real))).mean() \
        - torch.log(1 - torch.sigmoid(fake)).mean()
    assert torch.allclose(gan.discriminator_loss(real, fake, real_label=0.9), smooth, atol=1e-5)
    assert torch.allclose(gan.generator_loss(fake), -torch.log(torch.sigmoid(fake)).mean(), atol=1e-5)


def test_minibatch_std_matches_manual_and_sees_a_collapsed_batch():
    layer = gan.MinibatchStdDev()
    x = torch.randn(5, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    out = layer(x)
    assert out.shape == (5, 4, 2, 2)
    manual = x.var(dim=0, unbiased=False).add(1e-8).sqrt().mean()
    assert torch.allclose(out[:, 3], manual.expand(5, 2, 2))
    collapsed = layer(x[:1].repeat(5, 1, 1, 1))
    assert float(collapsed[:, 3].max()) < 1e-3 < float(manual)


def test_packed_discriminator_scores_groups():
    d = gan.Discriminator(width=4, image_size=8, pack=4)
    assert d(torch.zeros(8, 1, 8, 8)).shape == (2,)
    with pytest.raises(ValueError, match="pack"):
        d(torch.zeros(6, 1, 8, 8))


def test_training_step_updates_both_networks_and_reports_probabilities():
    torch.manual_seed(0)
    model = gan.GAN(gan.GANConfig(latent_dim=4, width=4))
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=1e-2)
    real = torch.rand(16, 1, 8, 8) * 2 - 1
    g0 = [p.clone() for p in model.generator.parameters()]
    d0 = [p.clone() for p in model.discriminator.parameters()]
    stats = gan.gan_training_step(model.generator, model.discriminator, opt_g, opt_d, real, torch.randn(16, 4))
    assert set(stats) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert 0 < stats["d_real"] < 1 and 0 < stats["d_fake"] < 1
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))


def test_discriminator_learns_to_separate_real_from_noise():
    """50 D-only steps on a fixed generator: D's loss must fall well below its start (≈ 2 log 2)."""
    torch.manual_seed(0)
    model = gan.GAN(gan.GANConfig(latent_dim=4, width=8))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=2e-3)
    real = gan.gan_images("digits")[:64]
    with torch.no_grad():
        fake = model.generator(torch.randn(64, 4))
    with torch.no_grad():
        start = float(gan.discriminator_loss(model.discriminator(real), model.discriminator(fake)))
    for _ in range(50):
        loss = gan.discriminator_loss(model.discriminator(real), model.discriminator(fake))
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
    assert loss.item() < 0.5 * start


def test_text_conditioned_gan_shapes_and_conditioning():
    torch.manual_seed(0)
    model = gan.TextConditionedGAN(latent_dim=4, cond_dim=6, hidden=16, image_size=8)
    cond = torch.randn(5, 6)
    images = model.generate(cond, seed=1)
    assert images.shape == (5, 1, 8, 8) and torch.equal(images, model.generate(cond, seed=1))
    logits = model.discriminator(images * 2 - 1, cond)
    assert logits.shape == (5,)
    # the projection term makes the verdict depend on the caption embedding
    assert not torch.allclose(logits, model.discriminator(images * 2 - 1, -cond))
    with pytest.raises(ValueError, match="cond"):
        model.generator(torch.randn(5, 4), torch.randn(5, 7))
    with pytest.raises(ValueError, match="hidden"):
        gan.TextConditionedGAN(hidden=0)


def test_entropy_histogram_and_report():
    assert gan.entropy_bits([5, 5, 5, 5]) == pytest.approx(2.0)
    assert gan.entropy_bits([0, 9, 0]) == pytest.approx(0.0)
    assert gan.entropy_bits(torch.tensor([1, 3])) == pytest.approx(
        -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)))

    class Brightness(torch.nn.Module):  # class 1 when the image is bright, else class 0
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([0.5 - m, m - 0.5, torch.full_like(m, -9)], dim=1)

    images = torch.cat([torch.zeros(3, 1, 8, 8), torch.ones(5, 1, 8, 8)])
    assert gan.class_histogram(Brightness(), images, 3).tolist() == [3, 5, 0]
    report = gan.diversity_report(Brightness(), images, 3)
    assert report["classes_covered"] == 2 and report["top_class_share"] == pytest.approx(5 / 8)
    assert report["within_class_distance"] == 0.0  # every "bright" image is the same image
    probs = gan.class_probabilities(Brightness(), images)
    assert probs.shape == (8, 3) and torch.allclose(probs.sum(-1), torch.ones(8))
    sure = math.exp(0.5) / (math.exp(0.5) + math.exp(-0.5) + math.exp(-9))  # the chosen class's probability
    assert report["mean_confidence"] == pytest.approx(sure, abs=1e-4)
    with pytest.raises(ValueError, match="images"):
        gan.class_probabilities(Brightness(), torch.zeros(0, 1, 8, 8))


def test_sampling_is_seeded():
    model = gan.GAN(gan.GANConfig(latent_dim=4, width=4))
    a, b = gan.sample_gan(model, 7, seed=3), gan.sample_gan(model, 7, seed=3)
    assert a.shape == (7, 1, 8, 8) and torch.equal(a, b)
    assert 0 <= float(a.min()) and float(a.max()) <= 1


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="dataset"):
        gan.GANConfig(dataset="cifar")
    with pytest.raises(ValueError, match="latent_dim"):
        gan.GANConfig(latent_dim=0)
    with pytest.raises(ValueError, match="real_label"):
        gan.GANConfig(real_label=0.3)
    with pytest.raises(TypeError, match="config"):
        gan.GAN({"dataset": "digits"})
    with pytest.raises(ValueError, match="z"):
        gan.Generator(latent_dim=4)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="image_size"):
        gan.Generator(image_size=10)
    with pytest.raises(TypeError, match="real_logits"):
        gan.discriminator_loss([0.1], torch.zeros(1))
    with pytest.raises(ValueError, match="fake_logits"):
        gan.generator_loss(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="counts"):
        gan.entropy_bits([0, 0])
    with pytest.raises(ValueError, match="n"):
        gan.sample_gan(gan.GAN(gan.GANConfig()), 0)
    with pytest.raises(ValueError, match="images"):
        gan.class_histogram(torch.nn.Linear(1, 1), torch.zeros(3, 8))


@pytest.mark.slow
def test_bench_smoke_passes_its_bars_and_the_remedy_helps():
    """The chapter's bench at smoke: every bar passes, the remedy raises the class entropy of the
    collapsed GAN by at least 0.5 bit, and the diffusion model is more diverse than the plain GAN."""
    from genai_lab import bench

    cfg = LabConfig(profile="smoke", device=torch.device("cpu"), seed=0)
    rows = bench.run_chapter("gan_clip", cfg)
    values = {r["metric"]: r["value"] for r in rows}
    assert all(r["passed"] is True for r in rows if r["bar"] is not None), rows
    assert values["gan_remedy_class_entropy"] >= values["gan_class_entropy"] + 0.5
    assert values["diffusion_class_entropy"] >= values["gan_class_entropy"] + 0.5
