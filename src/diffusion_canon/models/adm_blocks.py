"""Building blocks shared by the ADM U-Net and the ADM noisy-image classifier (Dhariwal & Nichol 2021, App. A).

The residual blocks, attention blocks, resamplers and timestep embedding are diffusers' own modules, which compute
exactly what guided-diffusion / improved-diffusion compute:

* ``ResnetBlock2D`` = the reference ``ResBlock``: GroupNorm → SiLU → [nearest ×2 up / 2×2 average-pool down on both
  the branch and the skip, the "BigGAN" resblock_updown] → 3×3 conv → + Linear(SiLU(emb)) (or AdaGN
  ``GroupNorm(h)·(1 + scale) + shift`` with ``time_embedding_norm="scale_shift"``) → GroupNorm → SiLU → dropout →
  3×3 conv, plus a 1×1 conv skip when the channel count changes.
* ``Attention`` (SDPA) = the reference ``AttentionBlock``: GroupNorm, softmax(q·kᵀ/√d)·v per head, output projection,
  residual. The reference's fused ``qkv`` 1-D convolution becomes ``to_q``/``to_k``/``to_v``; the converter undoes
  both of its head layouts (legacy "heads, then q/k/v" and the new "q/k/v, then heads").
* ``Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)`` = the reference ``timestep_embedding`` ([cos, sin] with
  frequencies 10000^(−i/half)).

Only the normalisation differs: the reference (``GroupNorm32``) always normalises in float32 and casts back, so fp16 /
bf16 models keep full-precision statistics. :func:`float32_group_norms` swaps every ``nn.GroupNorm`` for
:class:`GroupNorm32`, which holds the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnAddedKVProcessor2_0
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

NORM_GROUPS = 32
NORM_EPS = 1e-5  # torch's GroupNorm default, which the reference uses


class GroupNorm32(nn.GroupNorm):
    """``nn.GroupNorm`` computed in float32 whatever the input / parameter dtype; output in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def float32_group_norms(module: nn.Module) -> nn.Module:
    """Replace every ``nn.GroupNorm`` inside ``module`` by a :class:`GroupNorm32` with the same settings (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm) and not isinstance(child, GroupNorm32):
            norm = GroupNorm32(child.num_groups, child.num_channels, child.eps, child.affine)
            norm.to(device=child.weight.device if child.affine else None)
            setattr(module, name, norm)
        else:
            float32_group_norms(child)
    return module


def zero_output_layers(module: nn.Module) -> nn.Module:
    """Zero the last layer of every residual branch (ResnetBlock2D.conv2, Attention.to_out[0]) inside ``module``, as the
    reference initialises them, so every block starts as the identity."""
    for child in module.modules():
        if isinstance(child, ResnetBlock2D):
            layer = child.conv2
        elif isinstance(child, Attention):
            layer = child.to_out[0]
        else:
            continue
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return module


def resnet_block(
    in_channels: int,
    out_channels: int,
    temb_channels: int,
    dropout: float,
    use_scale_shift_norm: bool,
    up: bool = False,
    down: bool = False,
) -> ResnetBlock2D:
    """The reference ``ResBlock`` (see module docstring). Input/output ``[N, C, H, W]``, ``temb`` ``[N, temb]``."""
    return ResnetBlock2D(
        in_channels=in_channels,
        out_channels=out_channels,
        temb_channels=temb_channels,
        dropout=dropout,
        groups=NORM_GROUPS,
        eps=NORM_EPS,
        time_embedding_norm="scale_shift" if use_scale_shift_norm else "default",
        up=up,
        down=down,
    )


def attention_block(channels: int, heads: int, context_dim: int | None = None) -> Attention:
    """Spatial self-attention over ``H·W`` positions with ``heads`` heads of ``channels // heads`` channels.

    With ``context_dim`` the block also attends to context tokens ``[N, S, context_dim]`` through keys and values of
    its own (GLIDE's ``encoder_kv``): diffusers' ``added_kv_proj_dim`` with ``AttnAddedKVProcessor2_0`` computes
    softmax(q·[k_ctx ; k_x]ᵀ/√d)·[v_ctx ; v_x]."""
    if channels % heads:
        raise ValueError(f"attention over {channels} channels cannot be split into {heads} heads")
    return Attention(
        query_dim=channels,
        heads=heads,
        dim_head=channels // heads,
        norm_num_groups=NORM_GROUPS,
        eps=NORM_EPS,
        residual_connection=True,
        bias=True,
        upcast_softmax=True,
        added_kv_proj_dim=context_dim,
        processor=AttnAddedKVProcessor2_0() if context_dim else None,
    )


def attend(attention: Attention, hidden_states: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """Self-attention, over the context tokens too when they are given."""
    if context is None:
        return attention(hidden_states)
    return attention(hidden_states, encoder_hidden_states=context)


def heads_for(channels: int, num_heads: int, num_head_channels: int | None) -> int:
    """The reference's per-level head count: ``channels // num_head_channels`` when that is set, else ``num_heads``."""
    if num_head_channels is None:
        return num_heads
    if channels % num_head_channels:
        raise ValueError(f"{channels} attention channels are not divisible by num_head_channels={num_head_channels}")
    return channels // num_head_channels


class ADMBlock(nn.Module):
    """One entry of the reference's ``input_blocks`` / ``output_blocks``: an optional residual block, an optional
    attention block, then an optional resampler (a plain ``Downsample2D``/``Upsample2D`` or an up/down
    ``ResnetBlock2D``), applied in that order. ``[N, C, H, W] → [N, C', H', W']``."""

    def __init__(
        self,
        resnet: ResnetBlock2D | None = None,
        attention: Attention | None = None,
        resample: nn.Module | None = None,
    ):
        super().__init__()
        self.resnet = resnet
        self.attention = attention
        self.resample = resample

    def forward(
        self, hidden_states: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.resnet is not None:
            hidden_states = self.resnet(hidden_states, temb)
        if self.attention is not None:
            hidden_states = attend(self.attention, hidden_states, context)
        if isinstance(self.resample, ResnetBlock2D):
            hidden_states = self.resample(hidden_states, temb)
        elif self.resample is not None:
            hidden_states = self.resample(hidden_states)
        return hidden_states


class ADMMidBlock(nn.Module):
    """The reference ``middle_block``: residual block → attention → residual block, at constant width."""

    def __init__(self, channels: int, temb_channels: int, dropout: float, use_scale_shift_norm: bool, heads: int,
                 context_dim: int | None = None):
        super().__init__()
        self.resnet_1 = resnet_block(channels, channels, temb_channels, dropout, use_scale_shift_norm)
        self.attention = attention_block(channels, heads, context_dim)
        self.resnet_2 = resnet_block(channels, channels, temb_channels, dropout, use_scale_shift_norm)

    def forward(
        self, hidden_states: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        hidden_states = self.resnet_1(hidden_states, temb)
        hidden_states = attend(self.attention, hidden_states, context)
        return self.resnet_2(hidden_states, temb)


def level_channels(model_channels: int, channel_mult: Sequence[float]) -> list[int]:
    """Channel width per resolution level: ``int(mult · model_channels)`` (``channel_mult`` may hold 0.5)."""
    return [int(mult * model_channels) for mult in channel_mult]


class ADMTrunk:
    """The part the ADM U-Net and the ADM classifier share, mixed into both models (which are ``nn.Module`` s):
    ``time_proj``/``time_embedding`` (sinusoids → Linear → SiLU → Linear, width 4·model_channels), ``conv_in``,
    ``down_blocks`` (the reference's ``input_blocks`` after the first convolution) and ``mid_block``."""

    def build_trunk(self, in_channels: int, context_dim: int | None = None) -> tuple[list[int], int]:
        """Create the shared modules of the configured architecture (``self.config``: ``model_channels``,
        ``channel_mult``, ``num_res_blocks``, ``attention_downsample_factors``, ``dropout``, ``num_heads``,
        ``num_head_channels``, ``use_scale_shift_norm``, ``resblock_updown``, ``conv_resample``) over
        ``in_channels`` input channels. Per level: ``num_res_blocks`` residual blocks (each followed by attention when
        the level's downsample factor is in ``attention_downsample_factors``; over context tokens too with
        ``context_dim``), then, except at the last level, a ×½ resampler.

        Returns ``(stage_channels, downsample_factor)``: the channel count of every encoder stage output
        (``conv_in``'s first; the decoder's skip connections) and the total downsampling factor at the bottom.
        """
        config = self.config
        model_channels, num_heads, num_head_channels = config.model_channels, config.num_heads, config.num_head_channels
        dropout, use_scale_shift_norm = config.dropout, config.use_scale_shift_norm
        temb_channels = 4 * model_channels
        self.time_proj = Timesteps(model_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(model_channels, temb_channels)
        widths = level_channels(model_channels, config.channel_mult)
        self.conv_in = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1)
        channels = widths[0]
        stage_channels = [channels]
        self.down_blocks = nn.ModuleList()
        factor = 1
        for level, width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                resnet = resnet_block(channels, width, temb_channels, dropout, use_scale_shift_norm)
                channels = width
                attention = None
                if factor in config.attention_downsample_factors:
                    heads = heads_for(channels, num_heads, num_head_channels)
                    attention = attention_block(channels, heads, context_dim)
                self.down_blocks.append(ADMBlock(resnet=resnet, attention=attention))
                stage_channels.append(channels)
            if level != len(widths) - 1:
                if config.resblock_updown:
                    resample = resnet_block(channels, channels, temb_channels, dropout, use_scale_shift_norm, down=True)
                else:
                    resample = Downsample2D(channels, use_conv=config.conv_resample, padding=1, name="op")
                self.down_blocks.append(ADMBlock(resample=resample))
                stage_channels.append(channels)
                factor *= 2
        heads = heads_for(channels, num_heads, num_head_channels)
        self.mid_block = ADMMidBlock(channels, temb_channels, dropout, use_scale_shift_norm, heads, context_dim)
        return stage_channels, factor

    def embed_timesteps(self, timestep: torch.Tensor | float | int, sample: torch.Tensor) -> torch.Tensor:
        """``[N, 4·model_channels]`` embedding of a scalar or ``[N]`` timestep (int, or float when rescaled)."""
        timesteps = broadcast_timesteps(timestep, sample.shape[0], sample.device)
        return self.time_embedding(self.time_proj(timesteps).to(self.dtype))

    def run_trunk(
        self, sample: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Every encoder stage's output (``conv_in``'s first), then the middle block's output last."""
        hidden_states = self.conv_in(sample.to(self.dtype))
        states = [hidden_states]
        for block in self.down_blocks:
            hidden_states = self.run_block(block, hidden_states, temb, context)
            states.append(hidden_states)
        states.append(self.run_block(self.mid_block, hidden_states, temb, context))
        return states

    def run_block(self, block: nn.Module, *args: torch.Tensor | None) -> torch.Tensor:
        """``block(*args)``, through gradient checkpointing when it is enabled and grads are on."""
        if torch.is_grad_enabled() and getattr(self, "gradient_checkpointing", False):
            return self._gradient_checkpointing_func(block, *args)
        return block(*args)


def upsampler(
    channels: int,
    temb_channels: int,
    dropout: float,
    use_scale_shift_norm: bool,
    resblock_updown: bool,
    conv_resample: bool,
) -> nn.Module:
    """The decoder's ×2 resampler: an up ``ResnetBlock2D`` (BigGAN style) or nearest ×2 (+ 3×3 conv)."""
    if resblock_updown:
        return resnet_block(channels, channels, temb_channels, dropout, use_scale_shift_norm, up=True)
    return Upsample2D(channels, use_conv=conv_resample)



def broadcast_timesteps(timestep: torch.Tensor | float | int, batch_size: int, device: torch.device) -> torch.Tensor:
    """A scalar or ``[N]`` timestep (int, or float for rescaled timesteps) as an ``[N]`` tensor on ``device``."""
    timesteps = torch.as_tensor(timestep, device=device)
    if timesteps.ndim == 0:
        timesteps = timesteps[None]
    if timesteps.ndim != 1 or timesteps.shape[0] not in (1, batch_size):
        raise ValueError(
            f"timestep must be a scalar or a 1-D tensor of length {batch_size}, got shape {tuple(timesteps.shape)}"
        )
    return timesteps.expand(batch_size)
