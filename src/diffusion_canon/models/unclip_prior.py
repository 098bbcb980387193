"""The unCLIP diffusion prior p(z_i | y) (Ramesh et al. 2022, §2.1 "Diffusion prior").

A decoder-only transformer with a causal attention mask over the sequence, in this order,

    [text token encodings (L), CLIP text embedding z_t, timestep embedding, noised image embedding z_i^(t), query]

whose output at the final (learned query) position predicts the unnoised image embedding z_i directly (x0
prediction; the paper found it better than ε), trained with L_prior = E_t || f(z_i^(t), t, y) - z_i ||².

Pitfalls of diffusers' ``PriorTransformer`` this class avoids:
- the causal mask is part of the model, applied on every call, not only when an attention mask is passed;
- the image-embedding statistics (``clip_mean`` / ``clip_std``) start unset and are set from data with
  :meth:`UnCLIPPriorTransformer.set_embedding_stats`; normalising before that raises instead of dividing by zero.

The diffusion runs on standardised embeddings (z - mean) / std; :meth:`normalize_image_embeds` and
:meth:`unnormalize_image_embeds` convert. Classifier-free guidance (Ho & Salimans 2021) uses a learned null text
condition: rows whose ``keep_condition`` is False see learned null token encodings and a learned null text embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .config_types import CheckedConfigMixin


@dataclass
class UnCLIPPriorOutput(BaseOutput):
    """``predicted_image_embedding`` (B, D): the predicted clean image embedding z_i, standardised.
    ``hidden_states`` (B, L + 4, W): the final transformer states of the whole sequence, when asked for."""

    predicted_image_embedding: torch.Tensor
    hidden_states: torch.Tensor | None = None


class CausalSelfAttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + Attn(LN(x), mask), then x + MLP(LN(x)) (GPT-2 layout)."""

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, S, W); mask: (B, 1, S, S) bool, True where query i may attend to key j."""
        b, s, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.num_heads, w // self.num_heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        x = x + self.out(attended.transpose(1, 2).reshape(b, s, w))
        return x + self.mlp(self.norm2(x))


class UnCLIPPriorTransformer(CheckedConfigMixin, ModelMixin, ConfigMixin):
    """The unCLIP diffusion prior.

    Args:
        embedding_dim: D, the CLIP projection dim (text and image embeddings).
        text_hidden_size: H, the CLIP text encoder's hidden size (token encodings); 0 to condition on z_t only.
        num_text_tokens: L, the text sequence length (the tokenizer's ``model_max_length``); 0 with
            ``text_hidden_size=0``.
        width: W, the transformer width.
        num_layers, num_heads, dropout: transformer depth, heads per layer, dropout.
        flip_sin_to_cos, freq_shift: the sinusoidal timestep embedding's layout (diffusers ``Timesteps``).
    """

    @register_to_config
    def __init__(
        self,
        embedding_dim: int = 32,
        text_hidden_size: int = 64,
        num_text_tokens: int = 32,
        width: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        dropout: float = 0.0,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
    ):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width must be divisible by num_heads, got width={width}, num_heads={num_heads}")
        if (text_hidden_size == 0) != (num_text_tokens == 0):
            raise ValueError(
                f"text_hidden_size and num_text_tokens must both be 0 (no token encodings) or both > 0, got "
                f"{text_hidden_size} and {num_text_tokens}"
            )
        self.time_proj = Timesteps(width, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(width, width)
        self.text_embed_proj = nn.Linear(embedding_dim, width)
        self.image_embed_proj = nn.Linear(embedding_dim, width)
        self.text_tokens_proj = nn.Linear(text_hidden_size, width) if text_hidden_size else None
        self.query = nn.Parameter(torch.randn(width) * 0.02)
        self.null_text_embed = nn.Parameter(torch.randn(width) * 0.02)
        self.null_text_tokens = nn.Parameter(torch.randn(num_text_tokens, width) * 0.02)
        self.position_embedding = nn.Parameter(torch.randn(num_text_tokens + 4, width) * 0.02)
        self.blocks = nn.ModuleList(CausalSelfAttentionBlock(width, num_heads, dropout) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, embedding_dim)
        # which null tokens are visible (all, for a learned null; a converted model keeps its empty prompt's mask)
        self.register_buffer("null_text_mask", torch.ones(num_text_tokens, dtype=torch.bool))
        # unset (std 0) until set_embedding_stats; saved with the weights
        self.register_buffer("clip_mean", torch.zeros(embedding_dim))
        self.register_buffer("clip_std", torch.zeros(embedding_dim))

    # -- diffusers PriorTransformer weights -------------------------------------------------------------------------
    @classmethod
    def from_diffusers_prior(
        cls,
        prior: torch.nn.Module,
        null_text_embeds: torch.Tensor,
        null_token_encodings: torch.Tensor,
        null_attention_mask: torch.Tensor,
    ) -> UnCLIPPriorTransformer:
        """Convert a diffusers ``PriorTransformer`` in the Karlo layout (linear token projection, "prd" query, no
        input norms) — same token order, blocks and embeddings, so the outputs agree with diffusers' forward *with* an
        attention mask (diffusers drops its causal mask without one).

        Karlo's guidance uses the CLIP encoding of the empty prompt as the unconditional input; it becomes this
        model's null condition. Get it with ``encode_prompts(text_encoder, tokenizer, [""])``:

        Args:
            null_text_embeds: (D,) or (1, D) z_t of "".
            null_token_encodings: (L, D) or (1, L, D) token encodings of "".
            null_attention_mask: (L,) or (1, L) tokenizer mask of "".
        """
        config = prior.config
        karlo = {"norm_in_type": None, "embedding_proj_norm_type": None, "encoder_hid_proj_type": "linear",
                 "added_emb_type": "prd", "time_embed_act_fn": "silu", "time_embed_dim": None,
                 "embedding_proj_dim": None, "clip_embed_dim": None}
        differing = {key: config[key] for key, value in karlo.items() if config[key] != value}
        if differing:
            raise ValueError(f"only the Karlo PriorTransformer layout {karlo} converts; this one has {differing}")
        width = config.num_attention_heads * config.attention_head_dim
        model = cls(
            embedding_dim=config.embedding_dim, text_hidden_size=config.embedding_dim,
            num_text_tokens=config.num_embeddings, width=width, num_layers=config.num_layers,
            num_heads=config.num_attention_heads, dropout=config.dropout,
        )
        source = prior.state_dict()
        state = {
            "query": source["prd_embedding"].reshape(width),
            "position_embedding": source["positional_embedding"][0],
            "clip_mean": source["clip_mean"].reshape(-1),
            "clip_std": source["clip_std"].reshape(-1),
        }
        renames = {"time_embedding.": "time_embedding.", "proj_in.": "image_embed_proj.",
                   "embedding_proj.": "text_embed_proj.", "encoder_hidden_states_proj.": "text_tokens_proj.",
                   "norm_out.": "norm_out.", "proj_to_clip_embeddings.": "proj_out."}
        for old, new in renames.items():
            state.update({new + k[len(old):]: v for k, v in source.items() if k.startswith(old)})
        for i in range(config.num_layers):
            block = f"transformer_blocks.{i}."
            for kind in ("weight", "bias"):
                state[f"blocks.{i}.qkv.{kind}"] = torch.cat(
                    [source[f"{block}attn1.to_{x}.{kind}"] for x in "qkv"])
                for old, new in (("attn1.to_out.0", "out"), ("norm1", "norm1"), ("norm3", "norm2"),
                                 ("ff.net.0.proj", "mlp.0"), ("ff.net.2", "mlp.2")):
                    state[f"blocks.{i}.{new}.{kind}"] = source[f"{block}{old}.{kind}"]
        with torch.no_grad():
            state["null_text_embed"] = prior.embedding_proj(null_text_embeds.reshape(1, -1).to(prior.dtype))[0]
            tokens = null_token_encodings.reshape(config.num_embeddings, -1).to(prior.dtype)
            state["null_text_tokens"] = prior.encoder_hidden_states_proj(tokens)
        state["null_text_mask"] = null_attention_mask.reshape(-1).bool()
        model.load_state_dict(state, strict=True)
        return model

    # -- embedding statistics -------------------------------------------------------------------------------------
    @property
    def embedding_stats_set(self) -> bool:
        return bool((self.clip_std > 0).all())

    @torch.no_grad()
    def set_embedding_stats(self, image_embeds: torch.Tensor, eps: float = 1e-6) -> None:
        """Set the per-dimension mean and standard deviation of CLIP image embeddings (N, D) (N >= 2) used to
        standardise them; call once on the training set before training."""
        if image_embeds.ndim != 2 or image_embeds.shape[1] != self.config.embedding_dim or image_embeds.shape[0] < 2:
            raise ValueError(
                f"image_embeds must have shape (N >= 2, embedding_dim={self.config.embedding_dim}), "
                f"got {tuple(image_embeds.shape)}"
            )
        image_embeds = image_embeds.to(self.clip_mean.device, torch.float32)
        self.clip_mean.copy_(image_embeds.mean(0))
        self.clip_std.copy_(image_embeds.std(0).clamp_min(eps))

    def _check_stats(self) -> None:
        if not self.embedding_stats_set:
            raise ValueError(
                "the prior's clip_mean/clip_std are unset (zero std): call set_embedding_stats(image_embeds) with "
                "the training set's CLIP image embeddings first"
            )

    def normalize_image_embeds(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """(z_i - mean) / std, (B, D) -> (B, D)."""
        self._check_stats()
        return (image_embeds - self.clip_mean) / self.clip_std

    def unnormalize_image_embeds(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """z * std + mean, (B, D) -> (B, D)."""
        self._check_stats()
        return image_embeds * self.clip_std + self.clip_mean

    # -- the network -----------------------------------------------------------------------------------------------
    def forward(
        self,
        noised_image_embeds: torch.Tensor,
        timestep: torch.Tensor | float | int,
        text_embeds: torch.Tensor,
        text_token_encodings: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        keep_condition: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ) -> UnCLIPPriorOutput | tuple:
        """Predict the clean, standardised image embedding.

        Args:
            noised_image_embeds: (B, D) z_i^(t), standardised.
            timestep: (B,) or a scalar, what the scheduler's ``model_timestep`` gives.
            text_embeds: (B, D) CLIP text embeddings z_t (as the text encoder returns them).
            text_token_encodings: (B, L, H) CLIP text last hidden states; required when ``text_hidden_size > 0``.
            text_attention_mask: (B, L), 1 for real tokens; padding tokens are hidden from every other position.
            keep_condition: (B,) bool; False rows get the null text condition (learned, or a converted model's
                empty prompt) in place of ``text_embeds`` / ``text_token_encodings`` / ``text_attention_mask``.
            output_hidden_states: also return the final states of the whole sequence.

        Returns:
            :class:`UnCLIPPriorOutput` (or a tuple) with ``predicted_image_embedding`` (B, D).
        """
        b, d = noised_image_embeds.shape
        c = self.config
        if d != c.embedding_dim or text_embeds.shape != (b, c.embedding_dim):
            raise ValueError(
                f"noised_image_embeds and text_embeds must be (B, embedding_dim={c.embedding_dim}), got "
                f"{tuple(noised_image_embeds.shape)} and {tuple(text_embeds.shape)}"
            )
        dtype = self.query.dtype
        tokens = self._text_tokens(b, text_token_encodings, dtype)
        timestep = torch.as_tensor(timestep, device=noised_image_embeds.device).reshape(-1).expand(b)
        time = self.time_embedding(self.time_proj(timestep).to(dtype))
        text = self.text_embed_proj(text_embeds.to(dtype))
        key_valid = torch.ones(b, c.num_text_tokens + 4, dtype=torch.bool, device=time.device)
        if text_attention_mask is not None and c.num_text_tokens:
            key_valid[:, : c.num_text_tokens] = text_attention_mask.bool()
        if keep_condition is not None:
            keep = keep_condition.to(time.device).bool()
            text = torch.where(keep[:, None], text, self.null_text_embed)
            tokens = torch.where(keep[:, None, None], tokens, self.null_text_tokens)
            key_valid[:, : c.num_text_tokens] = torch.where(keep[:, None], key_valid[:, : c.num_text_tokens],
                                                            self.null_text_mask)
        hidden = torch.cat(
            [tokens, text[:, None], time[:, None], self.image_embed_proj(noised_image_embeds.to(dtype))[:, None],
             self.query.expand(b, 1, -1)],
            dim=1,
        ) + self.position_embedding
        mask = self.attention_mask(key_valid)
        for block in self.blocks:
            hidden = block(hidden, mask)
        hidden = self.norm_out(hidden)
        prediction = self.proj_out(hidden[:, -1])
        states = hidden if output_hidden_states else None
        if not return_dict:
            return (prediction, states) if output_hidden_states else (prediction,)
        return UnCLIPPriorOutput(predicted_image_embedding=prediction, hidden_states=states)

    @staticmethod
    def attention_mask(key_valid: torch.Tensor) -> torch.Tensor:
        """(B, S) valid keys -> (B, 1, S, S) bool mask: causal (key j <= query i) and the key valid; every position
        keeps itself, so a padding position still has one key (its output is seen by no other position)."""
        s = key_valid.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool, device=key_valid.device).tril()
        itself = torch.eye(s, dtype=torch.bool, device=key_valid.device)
        return ((causal & key_valid[:, None, :]) | itself)[:, None]

    def _text_tokens(self, batch: int, encodings: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        c = self.config
        if self.text_tokens_proj is None:
            return self.null_text_tokens.expand(batch, 0, -1)
        if encodings is None or encodings.shape != (batch, c.num_text_tokens, c.text_hidden_size):
            got = None if encodings is None else tuple(encodings.shape)
            raise ValueError(
                f"text_token_encodings must have shape (B={batch}, num_text_tokens={c.num_text_tokens}, "
                f"text_hidden_size={c.text_hidden_size}), got {got}"
            )
        return self.text_tokens_proj(encodings.to(dtype))
