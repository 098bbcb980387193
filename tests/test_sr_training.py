"""training/train_super_resolution.py in-process: glyph pairs with augmentation, exact resume, an image folder, flags."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
import train_super_resolution  # noqa: E402

from diffusion_canon.pipelines.pipeline_super_resolution import SuperResolutionPipeline  # noqa: E402

TINY = ["--low_resolution", "8", "--resolution", "16", "--model_channels", "32", "--channel_mult", "1",
        "--train_batch_size", "4", "--num_validation_images", "1", "--num_inference_steps", "2", "--seed", "0",
        "--num_train_timesteps", "50"]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_glyph_pairs_with_augmentation_resume_exactly(tmp_path):
    flags = [*TINY, "--num_images", "8", "--characters", "AB", "--max_train_steps", "4", "--checkpointing_steps", "2",
             "--noise_augmentation_probability", "0.5", "--blur_probability", "0.5", "--prediction_type", "v_prediction"]
    train_super_resolution.main([*flags, "--output_dir", str(tmp_path / "full")])
    train_super_resolution.main([*flags, "--output_dir", str(tmp_path / "part"), "--max_train_steps", "2"])
    train_super_resolution.main([*flags, "--output_dir", str(tmp_path / "part"),
                                 "--resume_from_checkpoint", str(tmp_path / "part" / "checkpoint-2")])
    full, resumed = weights(tmp_path / "full"), weights(tmp_path / "part")
    assert all(torch.equal(full[key], resumed[key]) for key in full)
    pipe = SuperResolutionPipeline.from_pretrained(tmp_path / "full")
    assert pipe.unet.config.low_res_sample_size == 8 and pipe.unet.config.num_classes == 36
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert (tmp_path / "full" / "README.md").read_text().count("8×8 → 16×16") == 1


def test_image_folder_is_downsampled_into_pairs(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (80 * i, 30, 200)).save(folder / f"{i}.png")
    pairs, names = train_super_resolution.load_pairs(
        train_super_resolution.parse_args([*TINY, "--output_dir", str(tmp_path / "o"), "--train_data_dir", str(folder)]))
    assert names is None and len(pairs) == 3
    assert pairs.high.shape == (3, 3, 16, 16) and pairs.low.shape == (3, 3, 8, 8)
    torch.testing.assert_close(pairs.low[1, :, 0, 0], torch.tensor([80, 30, 200]) / 127.5 - 1, atol=1e-2, rtol=0)
    train_super_resolution.main([*TINY, "--output_dir", str(tmp_path / "o"), "--train_data_dir", str(folder),
                                 "--max_train_steps", "1", "--checkpointing_steps", "0"])
    assert SuperResolutionPipeline.from_pretrained(tmp_path / "o").unet.config.num_classes is None


@pytest.mark.parametrize("flags, match", [
    (["--low_resolution", "16"], "below --resolution"),
    (["--max_noise_level", "60", "--noise_augmentation_probability", "0.5"], "exceeds --num_train_timesteps"),
    (["--blur_probability", "2"], "blur_probability"),
    (["--blur_kernel_size", "4"], "kernel_size"),
    (["--characters", "a?"], "--characters"),
])
def test_bad_flags(tmp_path, flags, match):
    with pytest.raises(ValueError, match=match):
        train_super_resolution.main([*TINY, "--output_dir", str(tmp_path), "--num_images", "4", *flags])
