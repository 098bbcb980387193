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

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 (diffusers finds the loader base here)
from torch import nn

from .adm_blocks import broadcast_timesteps, embed_timesteps
from .adm_unet import ADMUNet2DModel, ADMUNet2DOutput


class SuperResolutionUNet2DModel(ADMUNet2DModel):
    r"""ADM U-Net conditioned on a low-resolution image and its augmentation level (CDM's super-resolution model).

    Args:
        low_res_channels: channels of the conditioning image (default: ``in_channels``); it is upsampled bilinearly
            and concatenated to ``x_t``, so the first convolution sees ``in_channels + low_res_channels`` channels.
        augmentation_level_embedding: embed the augmentation level ``s`` and add it to the timestep embedding.
        low_res_sample_size: side of the conditioning images (pipelines check inputs against it; the network itself
            accepts any side).
        every other argument: as :class:`~diffusion_canon.models.adm_unet.ADMUNet2DModel` (same names, so a
            guided-diffusion upsampler config maps onto it); ``sample_size`` is the *high*-resolution side.

    ``forward(sample [N, C, H, W], timestep [N], low_res [N, C_low, h, w], augmentation_level [N] | None,
    class_labels [N] | None) → [N, out_channels, H, W]`` (ε, plus the σ interpolation ``v`` when
    ``out_channels = 2C``).
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 3,
        out_channels: int = 6,
        model_channels: int = 128,
        num_res_blocks: int = 2,
        attention_downsample_factors: Sequence[int] = (),
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 2, 4, 8),
        conv_resample: bool = True,
        num_classes: int | None = None,
        null_class_embedding: bool = False,
        num_heads: int = 1,
        num_head_channels: int | None = None,
        num_heads_upsample: int | None = None,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        low_res_channels: int | None = None,
        class_names: Sequence[str] | None = None,
        augmentation_level_embedding: bool = True,
        low_res_sample_size: int | None = None,
    ):
        low_res_channels = in_channels if low_res_channels is None else low_res_channels
        if low_res_channels < 1:
            raise ValueError(f"low_res_channels must be >= 1 for a super-resolution model, got {low_res_channels}")
        # the parent's own register_to_config merges its arguments into this config (low_res_channels resolved)
        super().__init__(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
            model_channels=model_channels, num_res_blocks=num_res_blocks,
            attention_downsample_factors=attention_downsample_factors, dropout=dropout, channel_mult=channel_mult,
            conv_resample=conv_resample, num_classes=num_classes, null_class_embedding=null_class_embedding,
            num_heads=num_heads, num_head_channels=num_head_channels, num_heads_upsample=num_heads_upsample,
            use_scale_shift_norm=use_scale_shift_norm, resblock_updown=resblock_updown,
            low_res_channels=low_res_channels, class_names=class_names,
        )
        self.augmentation_embedding = None
        if augmentation_level_embedding:
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
        """
        config = self.config
        if low_res is None:
            raise ValueError("low_res is required: the super-resolution U-Net is conditioned on a low-resolution image")
        if low_res.ndim != 4 or low_res.shape[:2] != (sample.shape[0], config.low_res_channels):
            raise ValueError(
                f"low_res has shape {tuple(low_res.shape)}, expected [{sample.shape[0]}, {config.low_res_channels}, h, w]"
            )
        if (class_labels is None) != (config.num_classes is None):
            raise ValueError(
                "class_labels must be given exactly when the model is class-conditional "
                f"(num_classes={config.num_classes}, got class_labels={'None' if class_labels is None else 'a tensor'})"
            )
        upsampled = F.interpolate(low_res.to(sample.dtype), size=sample.shape[-2:], mode="bilinear")
        temb = embed_timesteps(self, timestep, sample)
        if self.augmentation_embedding is not None:
            level = broadcast_timesteps(0 if augmentation_level is None else augmentation_level, sample.shape[0], sample.device)
            temb = temb + self.augmentation_embedding(self.time_proj(level).to(self.dtype))
        if self.class_embedding is not None:
            temb = temb + self.class_embedding(class_labels.to(sample.device)).to(temb.dtype)
        output = self.body(torch.cat([sample, upsampled], dim=1), temb)
        if not return_dict:
            return (output,)
        return ADMUNet2DOutput(sample=output)
