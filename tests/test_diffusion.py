"""Tests for genai_lab.diffusion: hand-written steps match diffusers; trained models beat baselines."""

from __future__ import annotations

import pytest
import torch

import genai_lab as gl
from genai_lab.diffusion import (ClassConditionalDDPM, DDPMConfig, add_noise, alphas_cumprod, beta_schedule,
                                 classifier_free_guidance, compare_closed_form, ddim_step, ddpm_reverse_step,
                                 diffusion_loss, make_scheduler, noise_step_by_step, sample_class_conditional,
                                 signal_to_noise)
from genai_lab.diffusion import latent, quality


@pytest.fixture(scope="module")
def cfg():
    return gl.setup("smoke", verbose=False)


# --------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [10, 1000])
def test_beta_schedule_matches_diffusers(kind, steps):
    ref = make_scheduler("ddpm", num_train_timesteps=steps, schedule=kind)
    torch.testing.assert_close(beta_schedule(kind, steps), ref.betas, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(alphas_cumprod(beta_schedule(kind, steps)), ref.alphas_cumprod, atol=1e-6, rtol=1e-5)


def test_schedules_destroy_the_signal_and_cosine_keeps_more_of_it_midway():
    lin, cos = alphas_cumprod(beta_schedule("linear")), alphas_cumprod(beta_schedule("cosine"))
    assert lin[-1] < 1e-4 and cos[-1] < 1e-4          # pure noise at the end
    assert lin[0] > 0.999 and cos[0] > 0.999          # almost clean at the start
    assert cos[500] > 3 * lin[500]                    # cosine destroys information more slowly
    snr = signal_to_noise(cos)
    assert torch.all(snr[1:] < snr[:-1])              # SNR falls monotonically


def test_add_noise_matches_diffusers_scheduler():
    sched = make_scheduler("ddpm")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand((5, 1, 8, 8), generator=g) * 2 - 1, torch.randn((5, 1, 8, 8), generator=g)
    t = torch.tensor([0, 1, 300, 700, 999])
    torch.testing.assert_close(add_noise(x0, noise, t, alphas_cumprod(sched.betas)), sched.add_noise(x0, noise, t))
    torch.testing.assert_close(add_noise(x0, noise, 7, sched.alphas_cumprod),
                               sched.add_noise(x0, noise, torch.full((5,), 7)))


def test_closed_form_agrees_with_step_by_step_noising():
    x0 = torch.linspace(-1, 1, 16).reshape(1, 4, 4)
    for t in (10, 300, 600):
        r = compare_closed_form(x0, t, beta_schedule("linear"), num_samples=3000,
                                generator=torch.Generator().manual_seed(t))
        assert r["max_mean_error"] < 5 * r["mean_standard_error"], r
        assert r["max_std_error"] < 5 * r["mean_standard_error"], r
    # a wrong closed form (ᾱ of the wrong step) is detected by the same comparison
    betas = beta_schedule("linear")
    x_t = noise_step_by_step(x0.expand(3000, 1, 4, 4), 300, betas, generator=torch.Generator().manual_seed(1))
    wrong_mean = alphas_cumprod(betas)[150].sqrt() * x0
    assert (x_t.mean(0) - wrong_mean).abs().max() > 0.1


def test_ddpm_reverse_step_matches_diffusers():
    sched = make_scheduler("ddpm")
    g = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn((2, 1, 8, 8), generator=g), torch.randn((2, 1, 8, 8), generator=g)
    for t in (999, 400, 1, 0):
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(t))
        ref = sched.step(eps, t, x_t, generator=torch.Generator().manual_seed(t))
        x_prev, x0_pred = ddpm_reverse_step(eps, t, x_t, sched.betas, noise=noise)
        torch.testing.assert_close(x0_pred, ref.pred_original_sample)
        torch.testing.assert_close(x_prev, ref.prev_sample, atol=1e-5, rtol=1e-5)


def test_ddim_step_matches_diffusers_with_few_steps():
    sched = make_scheduler("ddim")
    sched.set_timesteps(5)
    g = torch.Generator().manual_seed(2)
    x_t, eps = torch.randn((2, 1, 8, 8), generator=g), torch.randn((2, 1, 8, 8), generator=g)
    steps = [int(t) for t in sched.timesteps]
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        ref = sched.step(eps, t, x_t)
        x_prev, x0_pred = ddim_step(eps, t, t_prev, x_t, sched.alphas_cumprod, clip_sample=1.0)
        torch.testing.assert_close(x_prev, ref.prev_sample, atol=1e-5, rtol=1e-5)


def test_guidance_mix():
    c, u = torch.ones(2, 3), torch.zeros(2, 3)
    torch.testing.assert_close(classifier_free_guidance(c, u, 3.0), torch.full((2, 3), 3.0))
    torch.testing.assert_close(classifier_free_guidance(c, u, 0.0), u)


# --------------------------------------------------------------------------- model and sampling
def test_unet_shapes_and_sampling_is_seeded():
    model = ClassConditionalDDPM(DDPMConfig(image_size=8, block_out_channels=(16, 32)))
    labels = torch.tensor([0, 3, 9])
    eps = model(torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 999]), labels)
    assert eps.shape == (3, 1, 8, 8)
    a = sample_class_conditional(model, labels, 3, 2.0, torch.Generator().manual_seed(0))
    b = sample_class_conditional(model, labels, 3, 2.0, torch.Generator().manual_seed(0))
    assert a.shape == (3, 1, 8, 8) and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(a, b)
    images, trail = sample_class_conditional(model, labels, 4, 1.0, torch.Generator().manual_seed(0),
                                             scheduler="ddpm", return_intermediates=True)
    assert len(trail) == 4 and trail[-1][1].shape == (3, 1, 8, 8)


def test_diffusion_loss_learns_on_a_tiny_batch():
    torch.manual_seed(0)
    model = ClassConditionalDDPM(DDPMConfig(image_size=8, block_out_channels=(16, 32)))
    x0 = gl.data.load_digits().train_x[:32] * 2 - 1
    y = torch.arange(32) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(50):
        loss = diffusion_loss(model, x0, y, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # predicting zero noise scores ≈ 1.0; the network must clearly beat that
    assert sum(losses[-10:]) / 10 < 0.6, losses[-10:]


def test_diversity_detects_mode_collapse():
    d = gl.data.load_digits()
    x, y = d.test_x[:200], d.test_y[:200]
    real = quality.diversity(x, y)
    collapsed = torch.stack([x[y == c][0] for c in y])  # the same image for every member of a class
    fake = quality.diversity(collapsed, y)
    assert real["pairwise_distance"] > 1.0 and fake["pairwise_distance"] < 1e-4


def test_autoencoder_and_latent_unet_shapes():
    conf = latent.AutoencoderConfig(image_size=8, latent_channels=2, block_out_channels=(16, 32))
    vae = latent.build_autoencoder(conf)
    z = vae.encode(torch.rand(2, 1, 8, 8)).latent_dist.mean
    assert z.shape == (2, 2, 4, 4) and conf.compression_ratio == 2.0
    assert vae.decode(z).sample.shape == (2, 1, 8, 8)
    unet = latent.TextConditionedLatentUNet(latent.LatentUNetConfig(latent_size=4, latent_channels=2, text_dim=24,
                                                                    block_out_channels=(16, 32)))
    assert unet(z, torch.tensor([1, 500]), torch.randn(2, 5, 24)).shape == (2, 2, 4, 4)
    assert latent.captions_for("digits", [str(i) for i in range(10)])[7][0] == "a handwritten digit seven"


def test_text_to_image_pipeline_keeps_latents_bounded():
    torch.manual_seed(0)
    conf = latent.AutoencoderConfig(image_size=8, latent_channels=1, block_out_channels=(16, 32))
    vae = latent.build_autoencoder(conf).eval()
    unet = latent.TextConditionedLatentUNet(latent.LatentUNetConfig(latent_size=4, latent_channels=1, text_dim=24,
                                                                    block_out_channels=(16, 32))).eval()
    fake_text_encoder = lambda prompts: torch.randn(len(prompts), 5, 24, generator=torch.Generator().manual_seed(3))  # noqa: E731
    images, trail = latent.generate_from_text(["a seven", "a one"], text_encoder=fake_text_encoder, unet=unet, vae=vae,
                                              scheduler=unet.scheduler("ddim"), latent_shape=(1, 4, 4), steps=6,
                                              guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
                                              return_intermediates=True)
    assert images.shape == (2, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    assert len(trail) == 6
    # the predicted clean latent is clipped, so even an untrained UNet cannot blow the latent up
    # (without the clip, dividing by √ᾱ_999 ≈ 5e-5 sends it into the thousands)
    assert max(float(g.abs().max()) for _, _, g in trail) <= latent.LATENT_CLIP + 1e-4
    assert max(float(z.abs().max()) for _, z, _ in trail) < 10.0


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="kind"):
        beta_schedule("quadratic")
    with pytest.raises(ValueError, match="num_steps"):
        beta_schedule("linear", 0)
    with pytest.raises(TypeError, match="x0"):
        add_noise([1.0], torch.zeros(1), 0, torch.ones(3))
    with pytest.raises(ValueError, match="noise"):
        add_noise(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 3), 0, torch.ones(3))
    with pytest.raises(ValueError, match="t must"):
        add_noise(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), 5, torch.ones(3))
    with pytest.raises(ValueError, match="noise must be given"):
        ddpm_reverse_step(torch.zeros(1, 1, 2, 2), 5, torch.zeros(1, 1, 2, 2), beta_schedule("linear"))
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(torch.zeros(1, 1, 2, 2), 5, 7, torch.zeros(1, 1, 2, 2), torch.ones(10) * 0.5)
    with pytest.raises(ValueError, match="schedule"):
        DDPMConfig(schedule="sigmoid")
    with pytest.raises(ValueError, match="image_size"):
        DDPMConfig(image_size=7, block_out_channels=(16, 32))
    model = ClassConditionalDDPM(DDPMConfig(block_out_channels=(16, 32)))
    with pytest.raises(ValueError, match="labels"):
        sample_class_conditional(model, [10], 2)
    with pytest.raises(ValueError, match="steps"):
        sample_class_conditional(model, [1], 0)
    with pytest.raises(ValueError, match="guidance_scale"):
        sample_class_conditional(model, [1], 2, -1.0)
    with pytest.raises(TypeError, match="model"):
        sample_class_conditional(torch.nn.Linear(2, 2), [1], 2)
    with pytest.raises(ValueError, match="labels"):
        quality.diversity(torch.zeros(3, 1, 2, 2), [0, 1])
    with pytest.raises(ValueError, match="dataset"):
        gl.diffusion.ddpm.ddpm_config_for(gl.setup("smoke", verbose=False), "cifar")
    with pytest.raises(ValueError, match="images"):
        latent.encode_images(None, torch.zeros(2, 8, 8))  # checked before the VAE is used
    with pytest.raises(ValueError, match="steps_list"):
        gl.diffusion.experiments.quality_vs_steps(model, torch.nn.Linear(2, 2), [0])
    with pytest.raises(ValueError, match="scales"):
        gl.diffusion.experiments.guidance_sweep(model, torch.nn.Linear(2, 2), [-1.0])
    with pytest.raises(TypeError, match="prompts"):
        latent.generate_from_text("a seven", text_encoder=None, unet=None, vae=None, scheduler=None,
                                  latent_shape=(1, 2, 2))


# --------------------------------------------------------------------------- trained (slow)
@pytest.mark.slow
def test_bench_smoke_passes_its_bars(cfg):
    rows = gl.bench.run_chapter("diffusion", cfg)
    assert rows, "the diffusion bench returned no rows"
    for row in rows:
        if row["bar"] is not None:
            assert row["passed"] is True, row


@pytest.mark.parametrize("t", [torch.tensor([2.7, 1.0]), torch.tensor([-0.5, 0.0]), torch.tensor([True, False])])
def test_add_noise_refuses_non_integer_timesteps_instead_of_truncating(t):
    x0, noise = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    with pytest.raises(TypeError, match="t must be an integer"):
        add_noise(x0, noise, t, alphas_cumprod(beta_schedule("linear", 10)))
    add_noise(x0, noise, t.long().clamp(min=0), alphas_cumprod(beta_schedule("linear", 10)))  # integers pass
