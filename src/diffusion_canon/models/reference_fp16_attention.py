"""The attention numerics of openai/consistency_models, as a diffusers attention processor.

Its ``QKVAttentionLegacy`` casts q, k and v to float16 before the attention, whatever the model's dtype, and computes
softmax(q·kᵀ/√d)·v in float16 (the scale applied to q and k, d^(−1/4) each), returning float32. Published
checkpoints were trained and sampled that way, so exact reproduction of the reference's samples needs the same
rounding; in float32 the samples move by ~5e-4 in [−1, 1]. :func:`use_reference_fp16_attention` installs it on every
self-attention block of a model; ``model.set_default_attn_processor()`` goes back to float32 SDPA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn


class ReferenceFP16AttnProcessor:
    """Self-attention of an ADM block (GroupNorm, q/k/v projections, output projection, residual) with the
    reference's float16 q·kᵀ, softmax and ·v."""

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("the reference's float16 attention is self-attention only (no context, no mask)")
        residual = hidden_states
        batch, channels, height, width = hidden_states.shape
        heads = attn.heads
        head_dim = attn.to_q.out_features // heads
        # q/k/v as the reference computes them — one 1×1 convolution over the normalised map, its rows [q; k; v] —
        # so that the float16 rounding below starts from the very same float32 numbers
        weight = torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight])[:, :, None, None]
        bias = torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias])
        qkv = F.conv2d(attn.group_norm(hidden_states), weight, bias).view(batch, 3, -1, height * width)

        def split(x: torch.Tensor) -> torch.Tensor:  # [N, heads·d, L] → [N·heads, d, L] in float16
            return x.half().reshape(batch * heads, head_dim, -1)

        q, k, v = split(qkv[:, 0]), split(qkv[:, 1]), split(qkv[:, 2])
        scale = 1 / math.sqrt(math.sqrt(head_dim))
        attention = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        attention = torch.softmax(attention, dim=-1).type(attention.dtype)
        out = torch.einsum("bts,bcs->bct", attention, v).float().reshape(batch, heads * head_dim, height, width)
        out = F.conv2d(out.to(hidden_states.dtype), attn.to_out[0].weight[:, :, None, None], attn.to_out[0].bias)
        out = attn.to_out[1](out)
        return (out + residual if attn.residual_connection else out) / attn.rescale_output_factor


def use_reference_fp16_attention(model: nn.Module) -> nn.Module:
    """Give every self-attention block of ``model`` :class:`ReferenceFP16AttnProcessor` (in place)."""
    for module in model.modules():
        if isinstance(module, Attention) and not module.added_kv_proj_dim:
            module.set_processor(ReferenceFP16AttnProcessor())
    return model
