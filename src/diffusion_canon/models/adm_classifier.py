"""The ADM noisy-image classifier p_φ(y | x_t, t) used for classifier guidance (Dhariwal & Nichol 2021, §4, App. A):
the encoder half of the ADM U-Net followed by a pooling head."""

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
    ADMTrunk,
    float32_group_norms,
    heads_for,
    zero_output_layers,
)

POOLS = ("adaptive", "attention", "spatial", "spatial_v2")


class AttentionPool2d(nn.Module):
    """CLIP-style attention pooling: the spatial mean is prepended as a query token, a learned positional embedding is
    added, one multi-head attention layer runs over all tokens and the mean token's output is projected.

    ``[N, C, H, W] → [N, out_channels]``; ``positional_embedding`` is ``[C, H·W + 1]``.
    """

    def __init__(self, spatial_size: int, channels: int, head_channels: int, out_channels: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(channels, spatial_size**2 + 1) / channels**0.5)
        self.qkv_proj = nn.Linear(channels, 3 * channels)
        self.c_proj = nn.Linear(channels, out_channels)
        self.heads = heads_for(channels, 1, head_channels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        tokens = hidden_states.flatten(2)  # [N, C, HW]
        tokens = torch.cat([tokens.mean(dim=-1, keepdim=True), tokens], dim=-1)
        tokens = (tokens + self.positional_embedding.to(tokens.dtype)).transpose(1, 2)  # [N, HW+1, C]
        batch, length, channels = tokens.shape
        query, key, value = (
            part.view(batch, length, self.heads, channels // self.heads).transpose(1, 2)
            for part in self.qkv_proj(tokens).chunk(3, dim=-1)
        )
        pooled = F.scaled_dot_product_attention(query[:, :, :1], key, value)  # only the mean token's output is used
        return self.c_proj(pooled.transpose(1, 2).reshape(batch, channels))


@dataclass
class ADMClassifierOutput(BaseOutput):
    """``logits``: ``[N, num_classes]``, log p_φ(y | x_t, t) up to a constant."""

    logits: torch.Tensor


class ADMClassifierModel(ADMTrunk, CheckedConfigMixin, ModelMixin, ConfigMixin):
    r"""The noisy-image classifier: ``logits = f_φ(x_t, t)``; guidance uses ``∇_{x_t} log softmax(logits)_y``.

    Args:
        sample_size: image side (needed by the ``"attention"`` pool's positional embedding).
        in_channels: image channels.
        num_classes: number of output logits.
        model_channels: base width ("classifier_width" in the reference flags).
        num_res_blocks: residual blocks per level ("classifier_depth").
        attention_downsample_factors: downsample factors whose levels get self-attention (``--classifier_attention_
            resolutions 32,16,8`` at 128 px = factors (4, 8, 16)).
        dropout, channel_mult, conv_resample, num_heads, num_head_channels, use_scale_shift_norm, resblock_updown:
            as in :class:`ADMUNet2DModel` (the published classifiers use 64-channel heads).
        pool: ``"attention"`` (attention pooling), ``"adaptive"`` (GroupNorm → SiLU → global average → linear),
            ``"spatial"`` / ``"spatial_v2"`` (an MLP on the spatial means of every encoder stage, concatenated).
        class_names: optional human-readable name per class index.

    ``forward(sample [N, C, H, W], timestep [N] or scalar) → logits [N, num_classes]``.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int = 64,
        in_channels: int = 3,
        num_classes: int = 1000,
        model_channels: int = 128,
        num_res_blocks: int = 2,
        attention_downsample_factors: Sequence[int] = (2, 4, 8),
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 2, 3, 4),
        conv_resample: bool = True,
        num_heads: int = 1,
        num_head_channels: int | None = 64,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        pool: str = "attention",
        class_names: Sequence[str] | None = None,
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if pool == "attention" and num_head_channels is None:
            raise ValueError("pool='attention' needs num_head_channels")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names must list exactly num_classes={num_classes} names, got {len(class_names)}")
        self.gradient_checkpointing = False
        stage_channels, factor = self.build_trunk(in_channels)
        channels = stage_channels[-1]
        if pool.startswith("spatial"):
            features = sum(stage_channels) + channels  # every encoder stage's mean, then the middle block's
            self.head = nn.Sequential(
                nn.Linear(features, 2048),
                nn.GroupNorm(NORM_GROUPS, 2048, eps=NORM_EPS) if pool == "spatial_v2" else nn.Identity(),
                nn.SiLU() if pool == "spatial_v2" else nn.ReLU(),
                nn.Linear(2048, num_classes),
            )
        else:
            self.norm_out = nn.GroupNorm(NORM_GROUPS, channels, eps=NORM_EPS)
            self.act_out = nn.SiLU()
            if pool == "attention":
                spatial_size = sample_size // factor
                self.head = AttentionPool2d(spatial_size, channels, num_head_channels, num_classes)
            else:
                self.head = nn.Linear(channels, num_classes)
                nn.init.zeros_(self.head.weight)
                nn.init.zeros_(self.head.bias)
        zero_output_layers(self)
        float32_group_norms(self)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float | int, return_dict: bool = True
    ) -> ADMClassifierOutput | tuple[torch.Tensor]:
        """Args:
            sample: noisy images ``x_t``, ``[N, C, H, W]``.
            timestep: ``[N]`` or scalar, as the classifier was trained (``scheduler.model_timestep``).
            return_dict: return an :class:`ADMClassifierOutput` (else a tuple).

        Returns:
            :class:`ADMClassifierOutput` with ``logits`` ``[N, num_classes]``.
        """
        logits = self.head(self.features(sample, timestep))
        if not return_dict:
            return (logits,)
        return ADMClassifierOutput(logits=logits)

    def features(self, sample: torch.Tensor, timestep: torch.Tensor | float | int) -> torch.Tensor:
        """What the head reads: the pooled trunk output (or, for ``"attention"``, the normalised feature map)."""
        states = self.run_trunk(sample, self.embed_timesteps(timestep, sample))
        if self.config.pool.startswith("spatial"):
            return torch.cat([state.mean(dim=(2, 3)) for state in states], dim=-1)
        hidden_states = self.act_out(self.norm_out(states[-1]))
        if self.config.pool == "adaptive":
            return hidden_states.mean(dim=(2, 3))
        return hidden_states
