"""The GAN/CLIP chapter's bench entry, one floor above :mod:`.gan` and :mod:`.clip` (which uses the
GAN), so neither imports the other back."""

from __future__ import annotations

from . import clip, clip_zero_shot, gan
from .bench import Metric, register


@register("gan_clip", "GAN mode collapse + remedy (class entropy), small CLIP zero-shot accuracy")
def bench_gan_clip(cfg) -> list[Metric]:
    """The chapter's reference experiments: GAN diversity with and without the remedy, the
    diffusion model's diversity, the small CLIP's zero-shot accuracy and retrieval, and the
    frozen-text CLIP's accuracy on classes it never saw (against chance) and on the seen ones."""
    n = cfg.pick(smoke=500, cpu=2000, gpu=5000)
    judge, _ = gan.judge_classifier(cfg, "digits")
    metrics: list[Metric] = []
    for remedy, label in ((False, "gan"), (True, "gan_remedy")):
        generator, _ = gan.trained_gan(cfg, remedy=remedy, verbose=False)
        report = gan.diversity_report(judge, gan.sample_gan(generator, n, seed=cfg.seed + 1))
        metrics += [Metric(f"{label}_class_entropy", report["entropy_bits"], unit="bits"),
                    Metric(f"{label}_top_class_share", report["top_class_share"],
                           higher_is_better=False)]
    ddpm = gan.diversity_report(judge, gan.diffusion_samples(cfg, n, seed=cfg.seed + 1))
    metrics.append(Metric("diffusion_class_entropy", ddpm["entropy_bits"], unit="bits"))
    metrics += clip.bench_metrics(cfg)
    metrics += clip_zero_shot.bench_metrics(cfg)  # classes never named in training, against chance
    return metrics
