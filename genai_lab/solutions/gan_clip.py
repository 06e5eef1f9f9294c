"""Reference solutions of `labs/08_gan_clip_lab.ipynb`.

Lab 8: similarity matrix, contrastive loss, zero-shot classification and a GAN training step.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.gan_clip`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

import torch
import torch.nn.functional as F


def similarity_matrix(image_emb, text_emb):
    """Cosine similarities (N_images, N_texts) of image_emb (N, D) and text_emb (M, D)."""
    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    return image_emb @ text_emb.T


def contrastive_loss(image_emb, text_emb, temperature=0.07):
    """Symmetric InfoNCE loss of image_emb (B, D) and text_emb (B, D) at a temperature."""
    logits = similarity_matrix(image_emb, text_emb) / temperature
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """BCE(sigmoid(real), real_label) + BCE(sigmoid(fake), 0) for logits (B,)."""
    real_target = torch.full_like(real_logits, real_label)
    return (F.binary_cross_entropy_with_logits(real_logits, real_target)
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits):
    """Non-saturating generator loss: BCE(sigmoid(fake), 1) = -mean log D(G(z))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def gan_training_step(generator, discriminator, opt_g, opt_d, real, z):
    """Update D on real vs generated images, then G against the updated D; return the numbers."""
    fake = generator(z)
    real_logits = discriminator(real)
    fake_logits = discriminator(fake.detach())
    d_loss = discriminator_loss(real_logits, fake_logits)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = generator_loss(discriminator(fake))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item(),
            "d_real": torch.sigmoid(real_logits).mean().item(),
            "d_fake": torch.sigmoid(fake_logits).mean().item()}


def entropy_bits(counts):
    """Entropy in bits of a histogram of counts (1-D tensor)."""
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * torch.log2(p)).sum())


def zero_shot_classify(image_emb, prompt_emb):
    """Class ids (N,) for image_emb (N, D), given prompt_emb (C, K, D): K prompt embeddings per class."""
    class_emb = F.normalize(prompt_emb, dim=-1).mean(dim=1)   # (C, D): one vector per class
    return similarity_matrix(image_emb, class_emb).argmax(dim=1)
