"""A CLIP-format BPE tokenizer for the glyph world, trained offline with the `tokenizers` library.

The tiny text encoders (the glyph CLIP, the tiny Stable Diffusion base) need a tokenizer, and none can be downloaded,
so we learn byte-pair merges (Sennrich et al. 2016) on the glyph captions and write them exactly as OpenAI's CLIP
tokenizer is stored: ``vocab.json`` (token -> id) and ``merges.txt`` (``#version`` header, one merge per line).
``transformers.CLIPTokenizer.from_pretrained(folder)`` (and ``CLIPTokenizerFast``) load that folder unchanged.

CLIP conventions kept: text is NFC-normalised, whitespace-collapsed and lower-cased; words are split by CLIP's regex
(letters runs, single digits, punctuation runs); bytes are mapped to printable unicode (GPT-2 byte level); the last
symbol of every word carries the ``</w>`` end-of-word suffix; ``<|startoftext|>`` / ``<|endoftext|>`` are bos / eos
(eos doubles as pad and unk). The vocabulary is laid out like CLIP's: the 256 byte symbols, the same with ``</w>``,
one entry per merge in merge order, then the two special tokens.

Every word of the glyph vocabulary (characters, fonts, colours, styles, the caption words) and the DreamBooth
identifier ``sks`` is checked to be a single token, so a rare-token prompt such as "a sks font letter A" puts the
subject in one embedding, and textual inversion can ``add_tokens`` a placeholder next to whole-word tokens.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# the DreamBooth paper's rare identifier; kept a single token so one embedding carries the new subject
DREAMBOOTH_IDENTIFIER = "sks"
# CLIP's word split: special tokens, English contractions, runs of letters, single digits, runs of other symbols
CLIP_WORD_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def byte_symbols() -> list[str]:
    """The 256 printable unicode symbols standing for bytes (GPT-2/CLIP byte level), in CLIP's vocabulary order:
    bytes that are printable Latin-1 map to themselves and come first, the rest map to code points 256, 257, ..."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def _clip_style_tokenizer() -> Tokenizer:
    """An untrained `tokenizers` BPE with CLIP's normaliser and pre-tokenizer (the ones CLIPTokenizer builds)."""
    tokenizer = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix=END_OF_WORD))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return tokenizer


def train_clip_bpe(texts: Iterable[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn BPE merges on ``texts`` and return ``(vocab, merges)`` in CLIP's layout.

    ``vocab_size`` counts everything: 512 byte symbols (with and without ``</w>``), the merges and the 2 special
    tokens; the trainer stops earlier when no pair is left to merge."""
    base = byte_symbols()
    base = base + [symbol + END_OF_WORD for symbol in base]
    min_size = len(base) + 2
    if vocab_size < min_size:
        raise ValueError(f"vocab_size must be at least {min_size} (byte symbols + specials), got {vocab_size}")
    tokenizer = _clip_style_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 2,
        min_frequency=1,
        show_progress=False,
        # Declaring the 512 base symbols up front fixes their ids. Otherwise the trainer creates the "x</w>" symbols
        # in hash-map order, and equal-count merges (tie-broken by id) differ from run to run
        # (huggingface/tokenizers#1794).
        special_tokens=base,
        end_of_word_suffix=END_OF_WORD,
        continuing_subword_prefix="",
    )
    tokenizer.train_from_iterator(list(texts), trainer)
    learned = json.loads(tokenizer.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned]
    merges = merges[: vocab_size - min_size]
    tokens = base + ["".join(pair) for pair in merges] + [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}, merges


def save_clip_bpe(vocab: dict[str, int], merges: Sequence[tuple[str, str]], output_dir: str | os.PathLike) -> None:
    """Write ``vocab.json`` and ``merges.txt`` exactly as OpenAI's CLIP tokenizer files are laid out."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=None)
    with open(os.path.join(output_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines(f"{a} {b}\n" for a, b in merges)


def glyph_vocabulary_words() -> list[str]:
    """Every attribute name of the glyph world (characters, fonts incl. held-out ones, styles, colours, backgrounds)
    split into words, so names that captions spell differently are still whole tokens."""
    from . import glyphs

    names = [*glyphs.CHARACTERS, *glyphs.FONTS, *glyphs.STYLES, *glyphs.COLORS, *glyphs.BACKGROUNDS]
    return sorted({word for name in names for word in name.replace("-", " ").split()})


def glyph_captions(seed: int = 0) -> list[str]:
    """The captions of the glyph world's default training and held-out splits (no rendering needed)."""
    from .glyphs import glyph_specs

    return [spec.caption for split in ("train", "held_out") for spec in glyph_specs(seed=seed, split=split)]


def _distinct_words(texts: Iterable[str]) -> set[str]:
    """The distinct CLIP words (normalised, before byte mapping) in ``texts``."""
    normalizer = _clip_style_tokenizer().normalizer
    split = pre_tokenizers.Split(Regex(CLIP_WORD_PATTERN), behavior="removed", invert=True)
    return {word for text in set(texts) for word, _ in split.pre_tokenize_str(normalizer.normalize_str(text))}


def build_glyph_tokenizer(
    output_dir: str | os.PathLike | None = None,
    vocab_size: int = 1024,
    captions: Sequence[str] | None = None,
    extra_words: Sequence[str] = (DREAMBOOTH_IDENTIFIER,),
    model_max_length: int = 32,
) -> CLIPTokenizer:
    """Train the glyph-world BPE and return it as a ``transformers.CLIPTokenizer``.

    Args:
        output_dir: folder to save ``vocab.json``, ``merges.txt`` and the transformers tokenizer config in (loadable
            with ``CLIPTokenizer.from_pretrained(output_dir)``); a temporary folder when None.
        vocab_size: total vocabulary size (byte symbols, merges and the 2 special tokens), at least 514.
        captions: training text; by default the captions of the glyph world's ``train`` and ``held_out`` splits (so
            the held-out fonts' words are whole tokens for fine-tuning) plus every attribute word.
        extra_words: words that must end up single tokens besides the caption words (default: ``"sks"``).
        model_max_length: the tokenizer's padding/truncation length (CLIP uses 77; glyph captions are short).

    Returns:
        the loaded ``CLIPTokenizer``. The build is deterministic: the same arguments give byte-identical files.

    Raises:
        ValueError: ``vocab_size`` too small to make every caption word and extra word a single token, or no text.
    """
    from transformers import CLIPTokenizer

    if captions is None:
        captions = glyph_captions() + glyph_vocabulary_words()
    if isinstance(captions, str) or not len(captions):
        raise ValueError(f"captions must be a non-empty sequence of strings, got {captions!r}")
    extra_words = list(extra_words)
    vocab, merges = train_clip_bpe([*captions, *extra_words], vocab_size)

    with tempfile.TemporaryDirectory() as scratch:
        folder = os.fspath(output_dir) if output_dir is not None else scratch
        save_clip_bpe(vocab, merges, folder)
        tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=model_max_length)
        tokenizer.save_pretrained(folder)

    words = _distinct_words([*captions, *extra_words])
    split_words = sorted(word for word in words if len(tokenizer.tokenize(word)) > 1)
    if split_words:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the words {split_words[:10]} still split into several tokens; "
            f"raise vocab_size (the merges learned fill {len(vocab)} entries)"
        )
    return tokenizer
