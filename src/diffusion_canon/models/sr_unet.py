"""The super-resolution U-Net of Cascaded Diffusion Models (Ho et al. 2021, §3–4).

``ε_θ(x_t, t, z, s, y)``: the ADM U-Net (:class:`~diffusion_canon.models.adm_unet.ADMUNet2DModel`) whose input is
``x_t`` concatenated with the low-resolution conditioning image ``z`` upsampled bilinearly to ``x_t``'s size (ADM's
``low_res_channels``, as guided-diffusion's ``SuperResModel``), with one addition: the *augmentation level* ``s`` of
conditioning augmentation (``z`` was noised to ``z_s ~ q(z_s | z_0)``) is embedded like a timestep — the same sinusoidal
features, its own MLP — and added to the timestep embedding together with the optional class embedding:

    emb = MLP_t(sin(t)) + MLP_s(sin(s)) + E[y]

``MLP_s``'s output layer starts at zero, so a fresh level embedding changes nothing and a converted guided-diffusion
upsampler (which has none) is reproduced exactly; ``augmentation_level_embedding=False`` drops it altogether.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 (diffusers finds the loader base here)
from torch import nn

from .adm_blocks import broadcast_timesteps
from .adm_unet import ADMUNet2DModel, ADMUNet2DOutput
from .config_types import extends_config

# the published upsamplers' architecture choices (BigGAN up/down blocks, AdaGN, learned Σ)
SR_DEFAULTS = dict(out_channels=6, attention_downsample_factors=(), use_scale_shift_norm=True, resblock_updown=True,
                   low_res_channels=None)


class SuperResolutionUNet2DModel(ADMUNet2DModel):
    r"""ADM U-Net conditioned on a low-resolution image and its augmentation level (CDM's super-resolution model).

    Args:
        augmentation_level_embedding: embed the augmentation level ``s`` and add it to the timestep embedding
            (``False`` = guided-diffusion's ``SuperResModel``, which has none).
        low_res_sample_size: side of the conditioning images (pipelines check inputs against it; the network itself
            accepts any side).
        every field of :class:`~diffusion_canon.models.adm_unet.ADMUNet2DModel` (same names, so a guided-diffusion
            upsampler config maps onto it), with the upsamplers' defaults; ``sample_size`` is the *high*-resolution
            side and ``low_res_channels`` defaults to ``in_channels``.

    ``forward(sample [N, C, H, W], timestep [N], low_res [N, C_low, h, w], augmentation_level [N] | None,
    class_labels [N] | None) → [N, out_channels, H, W]`` (ε, plus the σ interpolation ``v`` when
    ``out_channels = 2C``).
    """

    ignore_for_config = ["context_dim"]  # no context tokens: the conditioning is the low-resolution image

    @register_to_config
    @extends_config(ADMUNet2DModel, defaults=SR_DEFAULTS, without=("context_dim",))
    def __init__(self, *, augmentation_level_embedding: bool = True, low_res_sample_size: int | None = None,
                 **unet_config):
        if unet_config["low_res_channels"] is None:
            unet_config["low_res_channels"] = unet_config["in_channels"]
        if unet_config["low_res_channels"] < 1:
            raise ValueError(
                f"low_res_channels must be >= 1 for a super-resolution model, got {unet_config['low_res_channels']}"
            )
        # the parent's own register_to_config merges its fields into this config (low_res_channels resolved)
        super().__init__(**unet_config)
        self.augmentation_embedding = None
        if augmentation_level_embedding:
            model_channels = unet_config["model_channels"]
            self.augmentation_embedding = TimestepEmbedding(model_channels, 4 * model_channels)
            nn.init.zeros_(self.augmentation_embedding.linear_2.weight)
            nn.init.zeros_(self.augmentation_embedding.linear_2.bias)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        low_res: torch.Tensor | None = None,
        augmentation_level: torch.Tensor | float | int | None = None,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> ADMUNet2DOutput | tuple[torch.Tensor]:
        """Args:
            sample: noisy high-resolution images ``x_t``, ``[N, in_channels, H, W]``.
            timestep: ``[N]`` or scalar, as the network was trained (see ``ImprovedDDPMScheduler.model_timestep``).
            low_res: the (augmented) conditioning ``z``, ``[N, low_res_channels, h, w]`` in [−1, 1] (noised
                conditioning may leave that range), any ``h, w``; upsampled bilinearly to ``H×W``.
            augmentation_level: ``[N]`` or scalar level ``s`` that ``low_res`` was noised to (0 for unaugmented
                conditioning); ``None`` = 0. Ignored without ``augmentation_level_embedding``.
            class_labels: ``[N]`` int64, exactly when the model is class-conditional.
            return_dict: return an :class:`ADMUNet2DOutput` (else a tuple).

        Returns:
            :class:`ADMUNet2DOutput` with ``sample`` ``[N, out_channels, H, W]``.
        """
        if low_res is None:
            raise ValueError("low_res is required: the super-resolution U-Net is conditioned on a low-resolution image")
        temb = self.embed_timesteps(timestep, sample)
        if self.augmentation_embedding is not None:
            level = broadcast_timesteps(0 if augmentation_level is None else augmentation_level, sample.shape[0],
                                        sample.device)
            temb = temb + self.augmentation_embedding(self.time_proj(level).to(self.dtype))
        temb = temb + self.class_embedding_of(class_labels, sample)
        output = self.body(self.with_low_res(sample, low_res), temb)
        if not return_dict:
            return (output,)
        return ADMUNet2DOutput(sample=output)
