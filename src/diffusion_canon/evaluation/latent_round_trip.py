"""The ceiling a latent diffusion model's autoencoder puts on what it can draw: real images encoded and decoded."""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def vae_round_trip(vae, images: np.ndarray) -> np.ndarray:
    """``images`` (N, H, W, 3) in [0, 1] encoded to the posterior mean and decoded by ``vae`` (an ``AutoencoderKL``):
    what of a glyph's character, ink colour and style survives the latent space. Read back like samples, it bounds
    what any UNet on that latent space can draw."""
    pixels = torch.from_numpy(np.asarray(images, dtype=np.float32)).permute(0, 3, 1, 2).to(vae.device, vae.dtype)
    decoded = vae.decode(vae.encode(pixels * 2 - 1).latent_dist.mode()).sample
    return ((decoded.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
