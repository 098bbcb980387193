"""The ADM U-Net of improved-diffusion (Nichol & Dhariwal 2021) and guided-diffusion (Dhariwal & Nichol 2021).

One config describes every published model of both repositories: per-level widths ``channel_mult`` (0.5 allowed),
attention at chosen downsample factors with a fixed head count or a fixed head width, AdaGN (scale-shift) or additive
timestep conditioning, BigGAN up/down residual blocks, a class embedding added to the timestep embedding, dropout, a
2C output when σ is learned, and the super-resolution variant that concatenates a bilinearly upsampled low-resolution
image to its input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .config_types import CheckedConfigMixin

from .adm_blocks import (
    NORM_EPS,
    NORM_GROUPS,
    ADMBlock,
    ADMTrunk,
    attention_block,
    float32_group_norms,
    heads_for,
    level_channels,
    resnet_block,
    upsampler,
    zero_output_layers,
)


@dataclass
class ADMUNet2DOutput(BaseOutput):
    """``sample``: ``[N, out_channels, H, W]`` — ε (and the σ interpolation ``v`` in the last C channels when σ is
    learned)."""

    sample: torch.Tensor


class ADMUNet2DModel(ADMTrunk, CheckedConfigMixin, ModelMixin, ConfigMixin):
    r"""The ADM U-Net, ``ε_θ(x_t, t, y)``.

    Args:
        sample_size: image side the model was trained at (informational; pipelines use it for the noise shape).
        in_channels: image channels of ``x_t``.
        out_channels: output channels; ``2 · in_channels`` when σ is learned (ε first, then the ``v`` of
            Σ = exp(v·log β_t + (1−v)·log β̃_t), Nichol & Dhariwal eq. 15).
        model_channels: base width ("num_channels" in the reference flags).
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
        attention_downsample_factors: downsample factors (1 = full resolution, 2, 4, …) whose levels get self-attention.
            The reference flag ``--attention_resolutions 32,16,8`` at ``--image_size 256`` means factors (8, 16, 32).
        dropout: dropout in every residual block.
        channel_mult: per-level width multipliers of ``model_channels`` (``int(mult · model_channels)``).
        conv_resample: 3×3 convolutions in the plain up/downsamplers (ignored with ``resblock_updown``).
        num_classes: class-conditional when set: ``y`` is embedded and added to the timestep embedding.
        null_class_embedding: one more embedding row (index ``num_classes``) meaning "no class", for models trained with
            label dropout; enables classifier-free guidance.
        num_heads: attention heads when ``num_head_channels`` is ``None``.
        num_head_channels: fixed channels per head (heads = width // num_head_channels per level).
        num_heads_upsample: decoder head count when ``num_head_channels`` is ``None`` (default: ``num_heads``).
        use_scale_shift_norm: AdaGN, ``GroupNorm(h)·(1 + s) + b`` with (s, b) from the embedding (paper §3).
        resblock_updown: BigGAN-style residual blocks for up/downsampling.
        low_res_channels: super-resolution models: channels of a low-resolution image that is bilinearly upsampled to
            the sample's size and concatenated to it (the first convolution sees ``in_channels + low_res_channels``).
        class_names: optional human-readable name per class index (pipelines accept these names as labels).
        context_dim: every attention block also attends to context tokens ``[N, S, context_dim]`` (``context`` in
            :meth:`body`; GLIDE's ``encoder_kv``), through keys and values of its own; ``None`` = self-attention only.

    ``forward(sample [N, C, H, W], timestep [N] or scalar, class_labels [N] | None) → [N, out_channels, H, W]``.
    Gradient checkpointing (``enable_gradient_checkpointing()``) wraps every block; GroupNorm runs in float32 so the
    model can be cast to fp16/bf16 or run under autocast like the reference.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        model_channels: int = 128,
        num_res_blocks: int = 2,
        attention_downsample_factors: Sequence[int] = (2, 4),
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 2, 4, 8),
        conv_resample: bool = True,
        num_classes: int | None = None,
        null_class_embedding: bool = False,
        num_heads: int = 1,
        num_head_channels: int | None = None,
        num_heads_upsample: int | None = None,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        low_res_channels: int = 0,
        class_names: Sequence[str] | None = None,
        context_dim: int | None = None,
    ):
        super().__init__()
        if class_names is not None and (num_classes is None or len(class_names) != num_classes):
            raise ValueError(f"class_names must list exactly num_classes={num_classes} names, got {len(class_names)}")
        if null_class_embedding and num_classes is None:
            raise ValueError("null_class_embedding=True needs num_classes")
        self.gradient_checkpointing = False
        temb_channels = 4 * model_channels
        skip_channels, factor = self.build_trunk(in_channels + low_res_channels, context_dim)
        self.class_embedding = (
            nn.Embedding(num_classes + int(null_class_embedding), temb_channels) if num_classes is not None else None
        )
        widths = level_channels(model_channels, channel_mult)
        channels = skip_channels[-1]  # the middle block keeps the last stage's width

        decoder_heads = num_heads if num_heads_upsample is None else num_heads_upsample
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for index in range(num_res_blocks + 1):
                resnet = resnet_block(
                    channels + skip_channels.pop(), widths[level], temb_channels, dropout, use_scale_shift_norm
                )
                channels = widths[level]
                block = ADMBlock(resnet=resnet)
                if factor in attention_downsample_factors:
                    heads = heads_for(channels, decoder_heads, num_head_channels)
                    block.attention = attention_block(channels, heads, context_dim)
                if level and index == num_res_blocks:
                    block.resample = upsampler(
                        channels, temb_channels, dropout, use_scale_shift_norm, resblock_updown, conv_resample
                    )
                    factor //= 2
                self.up_blocks.append(block)

        self.conv_norm_out = nn.GroupNorm(NORM_GROUPS, channels, eps=NORM_EPS)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(widths[0], out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        zero_output_layers(self)
        float32_group_norms(self)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.Tensor | None = None,
        low_res: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> ADMUNet2DOutput | tuple[torch.Tensor]:
        """Args:
            sample: noisy images ``x_t``, ``[N, in_channels, H, W]``.
            timestep: ``[N]`` or scalar; what the network was trained with (``t``, or ``t·1000/T`` for checkpoints
                trained with ``rescale_timesteps``).
            class_labels: ``[N]`` int64 class indices (``num_classes`` = "no class" with ``null_class_embedding``);
                required exactly when the model is class-conditional.
            low_res: super-resolution models only: ``[N, low_res_channels, h, w]``, upsampled bilinearly to ``H×W``.
            return_dict: return an :class:`ADMUNet2DOutput` (else a tuple).

        Returns:
            :class:`ADMUNet2DOutput` with ``sample`` ``[N, out_channels, H, W]``.
        """
        temb = self.embed_timesteps(timestep, sample) + self.class_embedding_of(class_labels, sample)
        output = self.body(self.with_low_res(sample, low_res), temb)
        if not return_dict:
            return (output,)
        return ADMUNet2DOutput(sample=output)

    def class_embedding_of(self, class_labels: torch.Tensor | None, sample: torch.Tensor) -> torch.Tensor | float:
        """The class embedding to add to the timestep embedding (0 for unconditional models); ``ValueError`` unless
        labels are given exactly when the model is class-conditional."""
        num_classes = self.config.get("num_classes")
        if (class_labels is None) != (num_classes is None):
            raise ValueError(
                "class_labels must be given exactly when the model is class-conditional "
                f"(num_classes={num_classes}, got class_labels={'None' if class_labels is None else 'a tensor'})"
            )
        if class_labels is None:
            return 0.0
        return self.class_embedding(class_labels.to(sample.device)).to(self.dtype)

    def with_low_res(self, sample: torch.Tensor, low_res: torch.Tensor | None) -> torch.Tensor:
        """``sample`` with the low-resolution conditioning, upsampled bilinearly to its size, concatenated as extra
        channels (guided-diffusion's ``SuperResModel``); ``ValueError`` unless given exactly when
        ``low_res_channels > 0``."""
        channels = self.config.get("low_res_channels", 0)
        if (low_res is None) != (channels == 0):
            raise ValueError(f"low_res must be given exactly when low_res_channels > 0 (it is {channels})")
        if low_res is None:
            return sample
        if low_res.ndim != 4 or low_res.shape[:2] != (sample.shape[0], channels):
            raise ValueError(
                f"low_res has shape {tuple(low_res.shape)}, expected [{sample.shape[0]}, {channels}, h, w]"
            )
        upsampled = F.interpolate(low_res.to(sample.dtype), size=sample.shape[-2:], mode="bilinear")
        return torch.cat([sample, upsampled], dim=1)

    def body(self, sample: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The network after the embeddings, shared by every ADM U-Net: ``[N, in_channels + low_res_channels, H, W]``
        (already concatenated), ``temb`` ``[N, 4·model_channels]`` and, for ``context_dim`` models, the context
        tokens ``[N, S, context_dim]`` → ``[N, out_channels, H, W]``."""
        if (context is None) != (self.config.get("context_dim") is None):
            raise ValueError(f"context must be given exactly when context_dim is set (it is "
                             f"{self.config.get('context_dim')})")
        skips = self.run_trunk(sample, temb, context)
        hidden_states = skips.pop()
        for block in self.up_blocks:
            hidden_states = torch.cat([hidden_states, skips.pop()], dim=1)
            hidden_states = self.run_block(block, hidden_states, temb, context)
        return self.conv_out(self.conv_act(self.conv_norm_out(hidden_states)))
