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
        tokens = attn.group_norm(hidden_states.view(batch, channels, height * width)).transpose(1, 2)
        heads = attn.heads
        head_dim = attn.to_q.out_features // heads

        def split(x: torch.Tensor) -> torch.Tensor:  # [N, L, heads·d] → [N·heads, d, L] in float16
            return x.half().view(batch, -1, heads, head_dim).permute(0, 2, 3, 1).reshape(batch * heads, head_dim, -1)

        q, k, v = split(attn.to_q(tokens)), split(attn.to_k(tokens)), split(attn.to_v(tokens))
        scale = 1 / math.sqrt(math.sqrt(head_dim))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight, dim=-1).type(weight.dtype)
        out = torch.einsum("bts,bcs->bct", weight, v).float()
        out = out.reshape(batch, heads * head_dim, -1).transpose(1, 2).to(hidden_states.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        out = out.transpose(1, 2).reshape(batch, channels, height, width)
        return (out + residual if attn.residual_connection else out) / attn.rescale_output_factor


def use_reference_fp16_attention(model: nn.Module) -> nn.Module:
    """Give every self-attention block of ``model`` :class:`ReferenceFP16AttnProcessor` (in place)."""
    for module in model.modules():
        if isinstance(module, Attention) and not module.added_kv_proj_dim:
            module.set_processor(ReferenceFP16AttnProcessor())
    return model
