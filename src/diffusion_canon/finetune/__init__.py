"""Fine-tuning Stable-Diffusion-format models: the pieces the DreamBooth, LoRA and textual-inversion scripts in
``training/`` share, and ``make-base`` (the tiny glyph base they start from).

- :mod:`.sd_base`: load an SD-format base (``load_sd_components``, ``load_base`` from the flags), build / save a tiny
  random one (``save_tiny_sd_base``).
- :mod:`.sd_args`: the scripts' base-model, image and LoRA flags (``add_sd_args``, ``add_lora_args``,
  ``check_sd_args``).
- :mod:`.data`: image folders, ``metadata.jsonl`` captions, DreamBooth instance/class pairs, cached latents.
- :mod:`.prompt_encoder`: prompts -> text-encoder states, cached while the text encoder is frozen.
- :mod:`.objective`: one latent-diffusion forward pass (``predict_batch``), the loss, Min-SNR weighting, the
  DreamBooth prior-preservation loss.
- :mod:`.validation`: validation samples; :mod:`.class_images`: DreamBooth's class images from the base.
- :mod:`.lora`, :mod:`.textual_inversion`: adapters and new-token embeddings, saved in diffusers' formats.
- :mod:`.make_base`: ``diffusion-canon make-base``; :mod:`.held_out_subjects`: the three scripts run on the glyph
  world's held-out subjects (the demo's fine-tuning section and the DreamBooth benchmark).
"""

from .objective import denoising_loss, dreambooth_loss
from .sd_base import SDComponents, load_sd_components, save_tiny_sd_base

__all__ = ["SDComponents", "denoising_loss", "dreambooth_loss", "load_sd_components", "save_tiny_sd_base"]
