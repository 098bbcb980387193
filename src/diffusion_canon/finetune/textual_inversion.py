"""Textual inversion (Gal et al. 2022): learn the embedding v* of a new token S* so that prompts containing S*
reproduce a few images, every model weight frozen:

    v* = argmin_v E_{z, c(S*), eps, t} || eps - eps_theta(z_t, t, c_theta(y; v)) ||^2

The new rows live in their own small module (`PlaceholderEmbeddings`), which is all the optimizer and the
checkpoints see; the text encoder's token embedding is wrapped so ids beyond the base vocabulary read those rows. (The
diffusers example trains the whole embedding matrix, resets the other rows after each step and checkpoints the whole
text encoder.)
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence

import torch
from safetensors.torch import save_file
from torch import nn

from .data import PromptedImages, read_captions

# Prompt templates per --learnable_property, around the placeholder string.
TEMPLATES = {
    "object": ("a photo of a {placeholder}", "a rendering of a {placeholder}", "a close-up photo of a {placeholder}",
               "a good photo of the {placeholder}", "a {placeholder}", "a picture of a {placeholder}",
               "an image of the {placeholder}", "a small {placeholder}", "a large {placeholder}",
               "a clean {placeholder}"),
    "style": ("a letter in the style of {placeholder}", "a digit in the style of {placeholder}",
              "a painting in the style of {placeholder}", "a rendering in the style of {placeholder}",
              "an image in the style of {placeholder}", "a {placeholder} letter", "a {placeholder} digit",
              "a {placeholder} glyph"),
}
# With --subject_column the prompts also name what each image shows besides the concept (a style's "letter Q", an
# object's "on a beach"). The loss then leaves the subject to the words: a style vector trained on prompts without it
# also learns the characters of its few images and draws them for "a <style> letter Q" (benchmarks/RESULTS.md F2).
SUBJECT_TEMPLATES = {
    "object": ("a photo of a {placeholder} {subject}", "a rendering of a {placeholder} {subject}",
               "a {placeholder} {subject}"),
    "style": ("a {placeholder} {subject}", "the {subject} in {placeholder}", "{placeholder} {subject}"),
}
WEIGHT_NAME = "learned_embeds.safetensors"
A1111_WEIGHT_NAME = "a1111_embedding.safetensors"


def add_placeholder_tokens(tokenizer, placeholder_token: str, initializer_token: str, num_vectors: int) -> tuple[
        list[int], int]:
    """Add ``placeholder_token`` (and ``<token>_1`` ... for several vectors, the names diffusers'
    ``load_textual_inversion`` gives them) to the tokenizer. Returns (new token ids, initializer token id).

    Errors (before training): a placeholder already in the vocabulary, an initializer that is not exactly one token.
    """
    if num_vectors < 1:
        raise ValueError(f"--num_vectors must be >= 1, got {num_vectors}")
    tokens = [placeholder_token] + [f"{placeholder_token}_{i}" for i in range(1, num_vectors)]
    vocabulary = tokenizer.get_vocab()
    taken = [t for t in tokens if t in vocabulary or t + "</w>" in vocabulary]
    if taken or tokenizer.add_tokens(tokens) != num_vectors:
        raise ValueError(f"--placeholder_token {placeholder_token!r}: {taken or tokens} already in the tokenizer's "
                         "vocabulary; pass a token that is not, e.g. '<my-style>'")
    initializer_ids = tokenizer.encode(initializer_token, add_special_tokens=False)
    if len(initializer_ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(initializer_ids)
        raise ValueError(f"--initializer_token {initializer_token!r} must be a single token; it tokenizes to "
                         f"{len(initializer_ids)}: {pieces}")
    return tokenizer.convert_tokens_to_ids(tokens), initializer_ids[0]


class PlaceholderEmbeddings(nn.Module):
    """The learned rows v*, (num_vectors, D); ``forward()`` returns them (so DDP can wrap this module alone)."""

    def __init__(self, initial: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(initial.detach().clone().float())

    def forward(self) -> torch.Tensor:
        return self.weight


class ExtendedTokenEmbedding(nn.Module):
    """A frozen token embedding of V rows extended by the learned rows: id < V reads the base table, id >= V reads
    row id - V of ``rows()``. The text encoder's input embedding during training."""

    def __init__(self, base: nn.Embedding, rows: nn.Module) -> None:
        super().__init__()
        self.base, self.rows = base, rows

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        vocab = self.base.num_embeddings
        embeds = self.base(input_ids.clamp(max=vocab - 1))
        rows = self.rows().to(embeds.dtype)
        learned = rows[(input_ids - vocab).clamp(min=0, max=rows.shape[0] - 1)]
        return torch.where((input_ids >= vocab).unsqueeze(-1), learned, embeds)


def install_placeholder_rows(text_encoder: nn.Module, rows: nn.Module) -> None:
    """Route the text encoder's token lookups through `ExtendedTokenEmbedding` (idempotent: re-installing after
    ``accelerator.prepare`` swaps in the wrapped rows)."""
    base = text_encoder.get_input_embeddings()
    base = base.base if isinstance(base, ExtendedTokenEmbedding) else base
    text_encoder.set_input_embeddings(ExtendedTokenEmbedding(base, rows))


class TemplatedImages(PromptedImages):
    """Images with a prompt drawn per access from templates around the placeholder string ("a photo of a <tok>"),
    and, given each image's subject, naming it too ("a <tok> letter Q")."""

    def __init__(self, paths: Sequence[str], templates: Sequence[str], placeholder: str, transform: Callable,
                 subjects: Sequence[str] | None = None) -> None:
        # PromptedImages' per-image strings hold the subjects; prompt() puts them into a template
        super().__init__(paths, [""] * len(paths) if subjects is None else subjects, transform)
        self.templates, self.placeholder = templates, placeholder

    def prompt(self, index: int) -> str:
        return random.choice(self.templates).format(placeholder=self.placeholder, subject=self.prompts[index])


def image_subjects(folder: str, paths: Sequence[str], column: str) -> list[str]:
    """Each image's subject from ``folder/metadata.jsonl``'s ``column`` (``--subject_column``); an image without
    one is a ``ValueError`` naming the flag and the file."""
    subjects = read_captions(folder, column)
    missing = sorted({os.path.basename(p) for p in paths} - set(subjects))
    if missing:
        raise ValueError(f"--subject_column {column!r}: {os.path.join(folder, 'metadata.jsonl')} gives no subject "
                         f"for {len(missing)} image(s), e.g. {missing[:3]}; add lines like "
                         f'{{"file_name": "{missing[0]}", "{column}": "letter Q"}}')
    return [subjects[os.path.basename(p)] for p in paths]


def save_learned_embeds(output_dir: str, placeholder_token: str, rows: torch.Tensor, a1111: bool = False) -> None:
    """``learned_embeds.safetensors`` = {placeholder_token: (num_vectors, D)} for ``pipe.load_textual_inversion``;
    with ``a1111`` also {"emb_params": ...} in the AUTOMATIC1111 embedding format."""
    rows = rows.detach().float().cpu().contiguous()
    save_file({placeholder_token: rows}, os.path.join(output_dir, WEIGHT_NAME))
    if a1111:
        save_file({"emb_params": rows}, os.path.join(output_dir, A1111_WEIGHT_NAME),
                  metadata={"name": placeholder_token})
