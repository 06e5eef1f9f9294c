"""Diffusion (chapter 7): forward noising, reverse denoising, DDPM/DDIM, guidance, latent diffusion.

- :mod:`.schedule` — beta schedules, ``ᾱ_t``, the closed-form forward process, one DDPM / DDIM step;
- :mod:`.ddpm` — the class-conditional ``UNet2DModel``, its loss, training, guided sampling and
  :func:`trained_ddpm` (cached; reused by the GAN/CLIP chapter);
- :mod:`.quality` — judging samples with a classifier, and diversity (mode collapse shows);
- :mod:`.latent` — ``AutoencoderKL``, a text-conditioned latent UNet and the Stable Diffusion pipeline;
- :mod:`.experiments` — the measured experiments and the ``diffusion`` bench entry.
"""

from .ddpm import (ClassConditionalDDPM, DDPMConfig, classifier_free_guidance,  # noqa: F401
                   diffusion_loss, sample_class_conditional, train_ddpm, trained_ddpm)
from .schedule import (add_noise, alphas_cumprod, beta_schedule, compare_closed_form,  # noqa: F401
                       ddim_step, ddpm_reverse_step, make_scheduler, noise_step_by_step, signal_to_noise)
from . import experiments, latent, quality  # noqa: F401,E402  (importing experiments registers the bench)
