"""Prompts -> text-encoder hidden states for the fine-tuning scripts, computed once per prompt while the text encoder
is frozen."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class PromptEncoder:
    """Token ids -> text-encoder hidden states (B, L, D). While the text encoder is frozen the states of each prompt
    are computed once and reused (the ``--cache_latents`` counterpart for text)."""

    def __init__(self, tokenizer, text_encoder: torch.nn.Module, cache: bool) -> None:
        self.tokenizer, self.text_encoder, self.cache = tokenizer, text_encoder, cache
        self._cached: dict[str, torch.Tensor] = {}

    def token_ids(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids

    def __call__(self, prompts: Sequence[str], device: torch.device) -> torch.Tensor:
        if not self.cache:
            return self.text_encoder(self.token_ids(prompts).to(device))[0]
        missing = sorted(set(prompts) - set(self._cached))
        if missing:
            with torch.no_grad():
                states = self.text_encoder(self.token_ids(missing).to(device))[0]
            self._cached.update(zip(missing, states))
        return torch.stack([self._cached[p] for p in prompts])
