"""training/train_textual_inversion.py in-process: loads with pipe.load_textual_inversion, checkpoints hold only the
new rows, bad tokens fail before training."""

from __future__ import annotations

import json
import os

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from finetune_helpers import base, common_args, write_images  # noqa: F401 (fixture)
from script_helpers import fresh_accelerate_state, load_script  # noqa: F401 (fixture)

ti = load_script("train_textual_inversion")


def ti_args(base, data, out, *extra):
    return common_args(base, out, "--train_data_dir", str(data), "--placeholder_token", "<glyph-style>",
                       "--initializer_token", "bold", "--learning_rate", "5e-2", "--repeats", "2", *extra)


def test_textual_inversion_loads_in_diffusers_and_checkpoints_only_rows(base, tmp_path):
    data, out = write_images(tmp_path / "style", 2), tmp_path / "out"
    ti.main(ti_args(base, data, out, "--num_vectors", "2", "--learnable_property", "style", "--checkpointing_steps",
                    "2", "--export_a1111", "--save_as_full_pipeline", "--validation_prompt",
                    "a <glyph-style> letter", "--num_validation_images", "1"))
    learned = load_file(str(out / "learned_embeds.safetensors"))
    assert list(learned) == ["<glyph-style>"] and learned["<glyph-style>"].shape == (2, 32)

    pipe = StableDiffusionPipeline.from_pretrained(base)
    initial = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids("bold</w>")]
    assert not torch.allclose(learned["<glyph-style>"][0], initial)  # it trained
    pipe.load_textual_inversion(str(out))
    ids = pipe.tokenizer.convert_tokens_to_ids(["<glyph-style>", "<glyph-style>_1"])
    torch.testing.assert_close(pipe.text_encoder.get_input_embeddings().weight[ids], learned["<glyph-style>"])
    image = pipe("a <glyph-style> letter", num_inference_steps=2, height=32, width=32, output_type="np").images[0]
    assert image.shape == (32, 32, 3)

    # the checkpoint: the (2, 32) rows and Adam moments of that shape, nothing of the text encoder or UNet
    checkpoint = out / "checkpoint-2"
    model = load_file(str(checkpoint / "model.safetensors"))
    assert {k: tuple(v.shape) for k, v in model.items()} == {"weight": (2, 32)}
    optimizer = torch.load(checkpoint / "optimizer.bin", weights_only=True)
    assert {tuple(s["exp_avg"].shape) for s in optimizer["state"].values()} == {(2, 32)}
    text_encoder_bytes = os.path.getsize(os.path.join(base, "text_encoder", "model.safetensors"))
    assert sum(os.path.getsize(checkpoint / f) for f in os.listdir(checkpoint)) < text_encoder_bytes / 4

    a1111 = load_file(str(out / "a1111_embedding.safetensors"))
    torch.testing.assert_close(a1111["emb_params"], learned["<glyph-style>"])
    full = StableDiffusionPipeline.from_pretrained(str(out))
    full_ids = full.tokenizer.convert_tokens_to_ids(["<glyph-style>", "<glyph-style>_1"])
    torch.testing.assert_close(full.text_encoder.get_input_embeddings().weight[full_ids], learned["<glyph-style>"])
    card = (out / "README.md").read_text()
    assert "pipe.load_textual_inversion" in card and "`<glyph-style>`" in card


@pytest.mark.parametrize("flags, message", [
    (["--placeholder_token", "letter"], "--placeholder_token 'letter'.*already in the tokenizer's vocabulary"),
    (["--initializer_token", "xyzzy"], "--initializer_token 'xyzzy' must be a single token; it tokenizes to 5"),
    (["--num_vectors", "0"], "--num_vectors must be >= 1, got 0"),
])
def test_bad_tokens_fail_before_training(base, tmp_path, flags, message):
    data = write_images(tmp_path / "style", 1)
    with pytest.raises(ValueError, match=message):
        ti.main(ti_args(base, data, tmp_path / "out", *flags))
    assert not (tmp_path / "out").exists()


def write_subjects(folder, subjects: dict[str, str]) -> None:
    lines = [json.dumps({"file_name": name, "subject": subject}) for name, subject in subjects.items()]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def style_prompts(placeholder: str, subject: str) -> set[str]:
    """The three subject templates of a style, written out."""
    return {f"a {placeholder} {subject}", f"the {subject} in {placeholder}", f"{placeholder} {subject}"}


def test_subject_column_puts_each_images_subject_in_its_prompts(base, tmp_path, monkeypatch):
    data = write_images(tmp_path / "style", 2)
    write_subjects(data, {"0.png": "letter Q", "1.png": "digit 7"})
    seen = []
    predict_batch = ti.predict_batch

    def spy(batch, *args, **kwargs):
        seen.extend(batch["prompts"])
        return predict_batch(batch, *args, **kwargs)

    monkeypatch.setattr(ti, "predict_batch", spy)
    out = tmp_path / "out"
    ti.main(ti_args(base, data, out, "--learnable_property", "style", "--subject_column", "subject",
                    "--max_train_steps", "4"))
    q, seven = style_prompts("<glyph-style>", "letter Q"), style_prompts("<glyph-style>", "digit 7")
    assert len(seen) == 8 and set(seen) <= q | seven, seen
    assert set(seen) & q and set(seen) & seven, seen
    assert "metadata.jsonl column `subject`" in (out / "README.md").read_text()


def test_templated_images_pair_each_image_with_its_own_subject(tmp_path):
    from diffusion_canon.finetune.textual_inversion import SUBJECT_TEMPLATES, TemplatedImages

    subjects = ["letter Q", "digit 7", "letter A"]
    dataset = TemplatedImages([str(tmp_path / f"{i}.png") for i in range(3)], SUBJECT_TEMPLATES["style"], "<s>",
                              None, subjects)
    for index in [0, 1, 2] * 10:
        assert dataset.prompt(index) in style_prompts("<s>", subjects[index])


@pytest.mark.parametrize("subjects, message", [
    ({"0.png": "letter Q"}, r"--subject_column 'subject': .*metadata.jsonl gives no subject for 1 image\(s\), "
                            r"e.g. \['1.png'\]"),
    (None, r"--subject_column 'subject': .*gives no subject for 2 image\(s\)"),
])
def test_missing_subjects_fail_before_training(base, tmp_path, subjects, message):
    data = write_images(tmp_path / "style", 2)
    if subjects:
        write_subjects(data, subjects)
    with pytest.raises(ValueError, match=message):
        ti.main(ti_args(base, data, tmp_path / "out", "--subject_column", "subject"))
    assert not (tmp_path / "out").exists()
