"""The glyph BPE tokenizer: CLIP file format, CLIP's tokenization rules (checked against an independent BPE written
here from OpenAI CLIP's published algorithm), single-token words, determinism, bad input."""

import json
import shutil

import pytest
import regex
from transformers import CLIPTokenizer, CLIPTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from diffusion_canon.data.tokenizer import build_glyph_tokenizer

CAPTIONS = [
    "a red bold serif letter Q",
    "the digit 7 in blue monospace",
    "a green oblique sans letter B",
    "the digit 3 in black bold-oblique serif",
    "a purple regular mono letter Z",
] * 4
PROBES = [
    "a red bold serif letter Q",
    "THE Digit 7   in blue\tmonospace",
    "a sks font letter A",
    "zebra crossing, 1234 times!",  # words and digits never seen in training fall back to byte symbols
    "don't-stop",
]


def reference_clip_bpe(text: str, vocab: dict, merges: list[tuple[str, str]]) -> list[int]:
    """OpenAI CLIP's simple tokenizer (without ftfy): lower-case, split with CLIP's regex, byte-map, greedy BPE by
    merge rank with '</w>' on each word's last symbol, then bos ... eos."""
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    byte_encoder = bytes_to_unicode()
    pattern = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    ids = [vocab["<|startoftext|>"]]
    for word in regex.findall(pattern, " ".join(text.split()).lower()):
        symbols = [byte_encoder[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        while len(symbols) > 1:
            pairs = [(ranks.get(pair, float("inf")), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
            rank, _ = min(pairs)
            if rank == float("inf"):
                break
            first, second = merges[rank]
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == (first, second):
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids += [vocab[s] for s in symbols]
    return ids + [vocab["<|endoftext|>"]]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glyph_tokenizer")
    tokenizer = build_glyph_tokenizer(folder, captions=CAPTIONS)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    return folder, tokenizer, vocab, lines


def test_clip_file_layout(built):
    folder, tokenizer, vocab, lines = built
    assert lines[0].startswith("#version")
    merges = [tuple(line.split(" ")) for line in lines[1:]]
    assert all(len(m) == 2 for m in merges)
    byte_symbols = list(bytes_to_unicode().values())
    by_id = sorted(vocab, key=vocab.get)
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert by_id[:256] == byte_symbols
    assert by_id[256:512] == [s + "</w>" for s in byte_symbols]
    assert by_id[512 : 512 + len(merges)] == ["".join(m) for m in merges]
    assert by_id[-2:] == ["<|startoftext|>", "<|endoftext|>"]
    assert tokenizer.bos_token_id == vocab["<|startoftext|>"] and tokenizer.eos_token_id == vocab["<|endoftext|>"]
    assert tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.parametrize("cls", [CLIPTokenizer, CLIPTokenizerFast])
def test_transformers_loads_the_two_clip_files_and_matches_reference_bpe(built, tmp_path, cls):
    folder, tokenizer, vocab, lines = built
    for name in ("vocab.json", "merges.txt"):  # only what OpenAI CLIP ships: no tokenizer.json / config
        shutil.copy(folder / name, tmp_path / name)
    merges = [tuple(line.split(" ")) for line in lines[1:]]
    loaded = cls.from_pretrained(tmp_path)
    for text in PROBES:
        expected = reference_clip_bpe(text, vocab, merges)
        assert loaded(text).input_ids == expected, text
        assert tokenizer(text).input_ids == expected, text
        assert cls.from_pretrained(folder)(text).input_ids == expected, text


def test_caption_words_and_dreambooth_identifier_are_single_tokens(built):
    _, tokenizer, vocab, _ = built
    words = {w.lower() for c in CAPTIONS for w in c.split() if "-" not in w} | {"sks"}
    for word in words:
        assert tokenizer.tokenize(word) == [word + "</w>"]
    assert tokenizer("RED Letter").input_ids == tokenizer("red letter").input_ids  # lower-cased like CLIP
    assert tokenizer.model_max_length == 32


def test_add_tokens_for_textual_inversion(built, tmp_path):
    folder, _, vocab, _ = built
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    assert tokenizer.add_tokens(["<glyph-style>"]) == 1
    new_id = tokenizer.convert_tokens_to_ids("<glyph-style>")
    assert new_id == len(vocab)
    ids = tokenizer("a <glyph-style> letter A").input_ids
    assert ids == [vocab[t] for t in ["<|startoftext|>", "a</w>"]] + [new_id] + [
        vocab[t] for t in ["letter</w>", "a</w>", "<|endoftext|>"]
    ]


def test_deterministic(built, tmp_path):
    folder, *_ = built
    build_glyph_tokenizer(tmp_path, captions=CAPTIONS)
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes()


def test_bad_input():
    with pytest.raises(ValueError, match="vocab_size"):
        build_glyph_tokenizer(captions=CAPTIONS, vocab_size=100)
    with pytest.raises(ValueError, match="too small"):  # room for a few merges only: words stay split
        build_glyph_tokenizer(captions=CAPTIONS, vocab_size=520)
    with pytest.raises(ValueError, match="captions"):
        build_glyph_tokenizer(captions=[])
    with pytest.raises(ValueError, match="captions"):
        build_glyph_tokenizer(captions="a red letter A")


def test_default_tokenizer_covers_the_glyph_world(tmp_path):
    from diffusion_canon.data.glyphs import glyph_specs
    from diffusion_canon.data.tokenizer import glyph_vocabulary_words

    tokenizer = build_glyph_tokenizer(tmp_path)
    assert CLIPTokenizer.from_pretrained(tmp_path)("a sks font letter A").input_ids == tokenizer(
        "a sks font letter A"
    ).input_ids
    # held-out fonts' captions (never in base training) and every attribute word are whole tokens
    held_out = [spec.caption for spec in glyph_specs(num_images=50, split="held_out", seed=3)]
    words = {w for c in held_out for w in regex.findall(r"[\p{L}]+|[\p{N}]", c)} | set(glyph_vocabulary_words())
    assert "typewriter" in words
    for word in words | {"sks", "font", "letter"}:
        assert len(tokenizer.tokenize(word)) == 1, word
    assert max(len(tokenizer(c).input_ids) for c in held_out) <= tokenizer.model_max_length
