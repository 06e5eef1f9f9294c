"""Checks for the GAN and CLIP lab (chapter 8): each compares the learner's function with the
tested reference in :mod:`genai_lab.clip`, :mod:`genai_lab.clip_zero_shot` and :mod:`genai_lab.gan`
on fixed, seeded inputs."""

from __future__ import annotations

import copy
from typing import Callable

from . import CheckResult, Exercise, check_function, describe_difference, expect, run_check


def _embeddings(b: int, d: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


def check_similarity_matrix(fn: Callable) -> CheckResult:
    """``fn(image_emb (N, D), text_emb (M, D)) -> (N, M)`` cosine similarities."""
    from ..clip import similarity_matrix

    img, txt = _embeddings(5, 8, 0)
    img2, txt2 = _embeddings(7, 16, 1)
    mistake = "the embeddings are not normalised: that is the dot product, not the cosine"
    cases = [((a, b), {}, expect(similarity_matrix(a, b), {mistake: lambda a=a, b=b: a @ b.T}, atol=1e-5))
             for a, b in [(img, txt), (img2 * 3.0, txt2[:4]), (img, img)]]
    return check_function(fn, cases, name="similarity_matrix")


def check_contrastive_loss(fn: Callable) -> CheckResult:
    """``fn(image_emb, text_emb, temperature) -> scalar`` symmetric InfoNCE loss."""
    import torch
    import torch.nn.functional as F

    from ..clip import contrastive_loss, similarity_matrix

    img, txt = _embeddings(6, 8, 2)
    aligned = img + 0.05 * txt  # nearly matching pairs: a small loss
    cases = [((img, txt, t), {}, contrastive_loss(img, txt, t)) for t in (1.0, 0.07)]
    cases.append(((img, aligned, 0.1), {}, contrastive_loss(img, aligned, 0.1)))
    cases.append(((img, txt, torch.tensor(0.5)), {}, contrastive_loss(img, txt, 0.5)))

    def body():
        for i, (args, _, expected) in enumerate(cases, 1):
            actual = fn(*args)
            msg = describe_difference(actual, expected, atol=1e-5, rtol=1e-4)
            if msg:
                temp = float(args[2])
                logits = similarity_matrix(args[0], args[1]) / temp
                one_way = F.cross_entropy(logits, torch.arange(len(logits)))
                hint = ""
                if describe_difference(actual, one_way, atol=1e-5, rtol=1e-4) is None:
                    hint = (" (this is only the image→text direction; also take the cross-entropy of "
                            "logits.T and average the two)")
                return f"case {i} of {len(cases)} (B=6, temperature={temp:g}): {msg}{hint}"
        # symmetric: swapping images and texts must not change the loss
        swapped = fn(txt, img, 0.07)
        if abs(float(swapped) - float(fn(img, txt, 0.07))) > 1e-5:
            return ("the loss is not symmetric: swapping image_emb and text_emb changed it; average "
                    "the image→text and the text→image cross-entropies")
        return None

    return run_check("contrastive_loss", body)


def _zero_shot_case(n: int, c: int, k: int, d: int, seed: int):
    """Images near one class each, prompts of very different lengths (so shortcuts show)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g)
    scales = torch.exp(torch.randn(c, k, 1, generator=g) * 1.5)          # prompt norms e^±1.5
    prompts = (centres[:, None] + 0.9 * torch.randn(c, k, d, generator=g)) * scales
    truth = torch.randint(0, c, (n,), generator=g)
    images = (centres[truth] + 1.2 * torch.randn(n, d, generator=g)) * 3.0
    return images, prompts


def check_zero_shot_classify(fn: Callable) -> CheckResult:
    """``fn(image_emb (N, D), prompt_emb (C, K, D)) -> (N,)`` class ids: normalise every prompt,
    average per class, pick the class of highest cosine similarity."""
    import torch.nn.functional as F

    from ..clip_zero_shot import classify

    def reference(img, prompts):
        return classify(F.normalize(img, dim=-1), F.normalize(F.normalize(prompts, dim=-1).mean(1), dim=-1))

    cases = []
    for n, c, k, d, seed in ((40, 3, 4, 8, 0), (60, 10, 3, 16, 1), (5, 2, 1, 4, 2)):
        img, prompts = _zero_shot_case(n, c, k, d, seed)
        mistakes = {
            "the prompts were averaged before being normalised: a long prompt vector outweighs the "
            "others; normalise each prompt, then average":
                lambda img=img, p=prompts: classify(F.normalize(img, dim=-1), F.normalize(p.mean(1), dim=-1)),
            "that is the dot product with the class mean, not the cosine: a class whose prompts "
            "disagree gets a shorter mean and loses; normalise the mean (or use similarity_matrix)":
                lambda img=img, p=prompts: (img @ F.normalize(p, dim=-1).mean(1).T).argmax(1),
            "argmax over the images (dim 0) instead of over the classes":
                lambda img=img, p=prompts: (F.normalize(img, dim=-1)
                                            @ F.normalize(F.normalize(p, dim=-1).mean(1), dim=-1).T).argmax(0),
        }
        cases.append(((img, prompts), {}, expect(reference(img, prompts), mistakes, atol=0)))
    return check_function(fn, cases, name="zero_shot_classify")


def check_gan_losses(discriminator_loss: Callable, generator_loss: Callable) -> CheckResult:
    """Both GAN losses against the reference on seeded logits (and one-sided label smoothing)."""
    import torch

    from .. import gan

    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(16, generator=g) * 2, torch.randn(16, generator=g) * 2

    def body():
        for kwargs in ({}, {"real_label": 0.9}):
            msg = describe_difference(discriminator_loss(real, fake, **kwargs),
                                      gan.discriminator_loss(real, fake, **kwargs), atol=1e-5)
            if msg:
                return f"discriminator_loss({kwargs or 'real_label=1.0'}): {msg}"
        msg = describe_difference(generator_loss(fake), gan.generator_loss(fake), atol=1e-5)
        if msg:
            hint = ""
            expected_minimax = torch.log1p(-torch.sigmoid(fake)).mean()
            if describe_difference(generator_loss(fake), expected_minimax, atol=1e-5) is None:
                hint = " (you wrote the saturating loss log(1 - D(G(z))); use -log D(G(z)))"
            return f"generator_loss: {msg}{hint}"
        return None

    return run_check("GAN losses", body)


def _tiny_gan(seed: int):
    import torch

    from ..gan import GAN, GANConfig

    torch.manual_seed(seed)
    model = GAN(GANConfig(dataset="digits", latent_dim=4, width=4, steps=1))
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=1e-2, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=1e-2, betas=(0.5, 0.999))
    return model, opt_g, opt_d


def check_gan_step(fn: Callable) -> CheckResult:
    """``fn(generator, discriminator, opt_g, opt_d, real, z)`` must update D then G exactly like
    :func:`genai_lab.gan.gan_training_step` (same returned numbers, same new weights)."""
    import torch

    from ..gan import gan_training_step

    def body():
        g = torch.Generator().manual_seed(4)
        real = torch.rand(8, 1, 8, 8, generator=g) * 2 - 1
        z = torch.randn(8, 4, generator=g)
        mine, opt_g, opt_d = _tiny_gan(5)
        ref = copy.deepcopy(mine)
        ref_g = torch.optim.Adam(ref.generator.parameters(), lr=1e-2, betas=(0.5, 0.999))
        ref_d = torch.optim.Adam(ref.discriminator.parameters(), lr=1e-2, betas=(0.5, 0.999))
        before = copy.deepcopy(mine.state_dict())
        torch.manual_seed(6)
        out = fn(mine.generator, mine.discriminator, opt_g, opt_d, real.clone(), z.clone())
        torch.manual_seed(6)
        expected = gan_training_step(ref.generator, ref.discriminator, ref_g, ref_d, real.clone(), z.clone())
        if not isinstance(out, dict):
            return f"return a dict with keys {sorted(expected)}, got {type(out).__name__}"
        msg = describe_difference({k: out.get(k) for k in expected}, expected, atol=1e-4, rtol=1e-4,
                                  path="returned")
        if msg:
            return msg
        for name, value in ref.state_dict().items():
            got = mine.state_dict()[name]
            if describe_difference(got, value, atol=1e-5, rtol=1e-4):
                moved = not torch.equal(got, before[name])
                part = "generator" if name.startswith("generator") else "discriminator"
                return (f"after the step the {part} weight {name!r} differs from the reference"
                        + ("" if moved else " (it was not updated at all)")
                        + "; update D first (fakes detached), then G through the updated D")
        return None

    return run_check("gan_training_step", body)


def check_entropy_bits(fn: Callable) -> CheckResult:
    """``fn(counts) -> float`` entropy in bits of a class histogram."""
    import torch

    from ..gan import entropy_bits

    cases = [((c,), {}, entropy_bits(c)) for c in (
        torch.tensor([10, 10, 10, 10]), torch.tensor([0, 0, 7, 0]),
        torch.tensor([120, 182, 52, 90, 111, 127, 89, 44, 77, 108]), torch.tensor([1, 3, 0, 4]))]
    return check_function(fn, cases, name="entropy_bits", atol=1e-6)


# --------------------------------------------------------------------------- the lab's exercises
# ``similarity_matrix.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/gan_clip.py).
similarity_matrix = Exercise(
    "gan_clip", "similarity_matrix", check_similarity_matrix, ("similarity_matrix",),
    "normalise each embedding to length 1 along the feature axis, then one matrix product gives "
    "every pair's cosine; the text matrix needs transposing.")
contrastive_loss = Exercise(
    "gan_clip", "contrastive_loss", check_contrastive_loss, ("contrastive_loss",),
    "pair i is the correct class of row i, so the targets are 0..B-1. Use the loss both ways: "
    "images choosing texts (rows) and texts choosing images (the transposed logits), and average.")
zero_shot_classify = Exercise(
    "gan_clip", "zero_shot_classify", check_zero_shot_classify, ("zero_shot_classify",),
    "make every prompt a unit vector before you average a class's K prompts, so each prompt counts "
    "equally; then compare images with the class vectors by cosine (exercise 1 does that) and take, "
    "for each image, the index of the best class.")
gan_losses = Exercise(
    "gan_clip", "gan_losses", check_gan_losses, ("discriminator_loss", "generator_loss"),
    "binary cross-entropy on logits with constant targets: build the target tensors with "
    "full_like, zeros_like, ones_like. The generator wants its fakes called real.")
gan_step = Exercise(
    "gan_clip", "gan_step", check_gan_step, ("gan_training_step",),
    "generate once. The discriminator must not push gradients into the generator (detach the "
    "fakes for its update); the generator's update scores the fakes again with the updated "
    "discriminator. Clear each optimiser's gradients before its backward.")
entropy_bits = Exercise(
    "gan_clip", "entropy_bits", check_entropy_bits, ("entropy_bits",),
    "turn counts into probabilities, drop the zeros before taking the logarithm, and use base 2.")
