"""Fine-tuning Stable-Diffusion-format models: the pieces the DreamBooth, LoRA and textual-inversion scripts in
``training/`` share, and ``make-base`` (the tiny glyph base they start from).

- :mod:`.base`: load an SD-format base (``load_sd_components``), build / save a tiny random one (``save_tiny_sd_base``).
- :mod:`.data`: image folders, ``metadata.jsonl`` captions, DreamBooth instance/class pairs, cached latents.
- :mod:`.loss`: the latent-diffusion loss, Min-SNR weighting, the DreamBooth prior-preservation loss.
- :mod:`.common`: the scripts' shared flags, prompt encoding, one prediction step, validation and class images.
- :mod:`.lora`, :mod:`.textual_inversion`: adapters and new-token embeddings, saved in diffusers' formats.
- :mod:`.make_base`: ``diffusion-canon make-base``.
"""

from .base import SDComponents, load_sd_components, save_tiny_sd_base
from .loss import denoising_loss, dreambooth_loss

__all__ = ["SDComponents", "denoising_loss", "dreambooth_loss", "load_sd_components", "save_tiny_sd_base"]
