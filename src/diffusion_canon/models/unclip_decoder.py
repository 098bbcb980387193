"""The unCLIP decoder p(x | z_i, y) (Ramesh et al. 2022, §2 "Decoder"): the ADM U-Net conditioned on a CLIP image
embedding, and optionally on the caption's CLIP token encodings, the way GLIDE conditions on text.

The image embedding z_i enters twice:

    emb      = MLP_t(sin(t)) + W_t·ẑ                                    (added to the timestep embedding)
    context  = [W_c·ẑ reshaped to 4 tokens ; LN(W_y·h_y) per text token]   (extra keys/values of every attention)

where ẑ = √D · z_i / ‖z_i‖ (CLIP compares directions; the prior's samples and the image encoder's outputs differ in
norm, so the decoder only sees the direction, at a scale whose components are O(1)) and h_y are the CLIP text
encoder's last hidden states. Every attention block of the U-Net attends over its own H·W positions *and* the context
tokens, whose keys and values come from the block's own projections of the context (GLIDE's ``encoder_kv``): diffusers'
``Attention`` with ``added_kv_proj_dim`` and ``AttnAddedKVProcessor2_0`` computes exactly
softmax(q·[k_ctx ; k_x]ᵀ/√d)·[v_ctx ; v_x].

Classifier-free guidance (Ho & Salimans 2021; the paper drops the embedding 10% and the caption 50% of the time):
rows whose ``keep_image`` is False see a learned null embedding in place of ẑ; rows whose ``keep_text`` is False see
learned null text tokens. The output is ε and, with ``out_channels = 2C``, the σ interpolation v of
Σ = exp(v·log β_t + (1−v)·log β̃_t) (learned Σ, Nichol & Dhariwal eq. 15), as in the ADM U-Net.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 (diffusers finds the loader base here)
from torch import nn

from .adm_unet import ADMUNet2DModel, ADMUNet2DOutput
from .config_types import extends_config

DECODER_DEFAULTS = dict(out_channels=6, model_channels=64, channel_mult=(1, 2, 2), num_head_channels=32,
                        use_scale_shift_norm=True, resblock_updown=True, context_dim=128)
# the U-Net's class and low-resolution inputs do not exist here: unCLIP's decoder is conditioned on z_i and the caption
NOT_DECODER_FIELDS = ("num_classes", "null_class_embedding", "low_res_channels", "class_names")


class UnCLIPDecoderUNet2DModel(ADMUNet2DModel):
    r"""ADM U-Net conditioned on a CLIP image embedding (and optionally the caption's token encodings).

    Args:
        embedding_dim: D, the CLIP projection dim of the image embeddings.
        num_context_tokens: extra context tokens projected from the image embedding (4 in the paper).
        text_hidden_size: H, the CLIP text encoder's hidden size; 0 = no text conditioning.
        num_text_tokens: L, the text sequence length (the tokenizer's ``model_max_length``); 0 with
            ``text_hidden_size=0``.
        normalize_image_embeds: feed √D·z/‖z‖ instead of z (see the module docstring).
        every field of :class:`~diffusion_canon.models.adm_unet.ADMUNet2DModel` but the class and low-resolution
            ones, with the decoder's defaults; ``context_dim`` is the width of the context tokens (the attention
            blocks project them to their own width), and at least one level needs attention, since that is where the
            context enters.

    ``forward(sample [N, C, H, W], timestep [N] | scalar, image_embeds [N, D], text_token_encodings [N, L, H] | None,
    keep_image [N] | None, keep_text [N] | None) → [N, out_channels, H, W]``.
    """

    ignore_for_config = list(NOT_DECODER_FIELDS)

    @register_to_config
    @extends_config(ADMUNet2DModel, defaults=DECODER_DEFAULTS, without=NOT_DECODER_FIELDS)
    def __init__(
        self,
        *,
        embedding_dim: int = 32,
        num_context_tokens: int = 4,
        text_hidden_size: int = 0,
        num_text_tokens: int = 0,
        normalize_image_embeds: bool = True,
        **unet_config,
    ):
        context_dim = unet_config["context_dim"]
        if (text_hidden_size == 0) != (num_text_tokens == 0):
            raise ValueError(
                f"text_hidden_size and num_text_tokens must both be 0 (no text conditioning) or both > 0, got "
                f"{text_hidden_size} and {num_text_tokens}"
            )
        if embedding_dim < 1 or num_context_tokens < 1 or context_dim is None or context_dim < 1:
            raise ValueError(
                f"embedding_dim, num_context_tokens and context_dim must be >= 1, got {embedding_dim}, "
                f"{num_context_tokens} and {context_dim}"
            )
        if not unet_config["attention_downsample_factors"]:
            raise ValueError("attention_downsample_factors must name at least one level: the context enters there")
        super().__init__(**unet_config)
        temb_channels = 4 * unet_config["model_channels"]
        self.image_embedding_to_time = nn.Linear(embedding_dim, temb_channels)
        self.image_embedding_to_context = nn.Linear(embedding_dim, num_context_tokens * context_dim)
        self.null_image_embedding = nn.Parameter(torch.randn(embedding_dim))
        self.text_tokens_proj = nn.Linear(text_hidden_size, context_dim) if text_hidden_size else None
        self.text_tokens_norm = nn.LayerNorm(context_dim) if text_hidden_size else None
        self.null_text_tokens = nn.Parameter(torch.randn(num_text_tokens, context_dim) * 0.02)

    def prepare_image_embeds(self, image_embeds: torch.Tensor, keep_image: torch.Tensor | None) -> torch.Tensor:
        """``[N, D]`` CLIP image embeddings → what the projections read: √D·z/‖z‖ (when configured), with the learned
        null embedding in the rows where ``keep_image`` is False."""
        config = self.config
        if image_embeds.ndim != 2 or image_embeds.shape[1] != config.embedding_dim:
            raise ValueError(
                f"image_embeds must have shape (N, embedding_dim={config.embedding_dim}), "
                f"got {tuple(image_embeds.shape)}"
            )
        embeds = image_embeds.to(self.null_image_embedding.dtype)
        if config.normalize_image_embeds:
            embeds = embeds / embeds.norm(dim=-1, keepdim=True).clamp_min(1e-8) * config.embedding_dim**0.5
        if keep_image is not None:
            embeds = torch.where(keep_image.to(embeds.device).bool()[:, None], embeds, self.null_image_embedding)
        return embeds

    def context_tokens(
        self, embeds: torch.Tensor, text_token_encodings: torch.Tensor | None, keep_text: torch.Tensor | None
    ) -> torch.Tensor:
        """``[N, num_context_tokens + L, context_dim]``: the image tokens, then the (projected, normalised) text
        tokens, or the learned null text tokens where ``keep_text`` is False or no encodings are given."""
        config = self.config
        n = embeds.shape[0]
        tokens = self.image_embedding_to_context(embeds).view(n, config.num_context_tokens, config.context_dim)
        if self.text_tokens_proj is None:
            if text_token_encodings is not None:
                raise ValueError(
                    "text_token_encodings given, but this decoder has no text conditioning (text_hidden_size=0)"
                )
            return tokens
        if text_token_encodings is None:  # no caption: every row gets the learned null text tokens
            return torch.cat([tokens, self.null_text_tokens.expand(n, -1, -1).to(tokens.dtype)], dim=1)
        expected = (n, config.num_text_tokens, config.text_hidden_size)
        if tuple(text_token_encodings.shape) != expected:
            raise ValueError(
                f"text_token_encodings must have shape (N={n}, num_text_tokens={config.num_text_tokens}, "
                f"text_hidden_size={config.text_hidden_size}), got {tuple(text_token_encodings.shape)}"
            )
        text = self.text_tokens_norm(self.text_tokens_proj(text_token_encodings.to(tokens.dtype)))
        if keep_text is not None:
            text = torch.where(keep_text.to(text.device).bool()[:, None, None], text, self.null_text_tokens)
        return torch.cat([tokens, text], dim=1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        image_embeds: torch.Tensor | None = None,
        text_token_encodings: torch.Tensor | None = None,
        keep_image: torch.Tensor | None = None,
        keep_text: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> ADMUNet2DOutput | tuple[torch.Tensor]:
        """Args:
            sample: noisy images ``x_t``, ``[N, in_channels, H, W]``.
            timestep: ``[N]`` or scalar, what ``scheduler.model_timestep`` gives.
            image_embeds: ``[N, D]`` CLIP image embeddings z_i (any norm). Required; rows dropped by ``keep_image``
                are ignored.
            text_token_encodings: ``[N, L, H]`` CLIP text last hidden states (text-conditioned decoders only;
                ``None`` = no caption, the learned null text tokens).
            keep_image, keep_text: ``[N]`` bool; False rows get the learned null embedding / null text tokens.
            return_dict: return an :class:`ADMUNet2DOutput` (else a tuple).

        Returns:
            :class:`ADMUNet2DOutput` with ``sample`` ``[N, out_channels, H, W]``.
        """
        if image_embeds is None:
            raise ValueError("image_embeds is required (use keep_image=False rows for the unconditional model)")
        if image_embeds.shape[0] != sample.shape[0]:
            raise ValueError(f"image_embeds has {image_embeds.shape[0]} rows for {sample.shape[0]} samples")
        embeds = self.prepare_image_embeds(image_embeds.to(sample.device), keep_image)
        temb = self.embed_timesteps(timestep, sample) + self.image_embedding_to_time(embeds).to(self.dtype)
        context = self.context_tokens(embeds, text_token_encodings, keep_text).to(self.dtype)
        output = self.body(sample, temb, context)
        if not return_dict:
            return (output,)
        return ADMUNet2DOutput(sample=output)
