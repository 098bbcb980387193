"""training/train_classifier.py in-process on tiny configs: a classifier added to an ADM pipeline folder loads both
ways and guides sampling, the classifier learns from noised images, classes must match the U-Net's, bad input fails
before training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from diffusion_canon.models import ADMClassifierModel, ADMUNet2DModel
from diffusion_canon.pipelines import ADMPipeline, save_pipeline_folder
from diffusion_canon.schedulers import ImprovedDDPMScheduler
from script_helpers import load_script

train_classifier = load_script("train_classifier")

TINY = ["--resolution", "16", "--num_images", "16", "--model_channels", "32", "--channel_mult", "1,2",
        "--num_res_blocks", "1", "--attention_resolutions", "8", "--train_batch_size", "8", "--seed", "0",
        "--checkpointing_steps", "0", "--num_eval_images", "8"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny class-conditional ADM pipeline folder over the glyph classes 0-3 (untrained: only its diffusion and its
    classes matter to the classifier)."""
    torch.manual_seed(0)
    unet = ADMUNet2DModel(sample_size=16, out_channels=6, model_channels=32, num_res_blocks=1, channel_mult=(1, 2),
                          attention_downsample_factors=(2,), num_classes=4, class_names=list("0123"))
    scheduler = ImprovedDDPMScheduler(num_train_timesteps=100, beta_schedule="cosine", variance_type="learned_range")
    folder = tmp_path_factory.mktemp("base")
    save_pipeline_folder(ADMPipeline(unet=unet, scheduler=scheduler), folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# A U-Net card\n\nIts description.\n\n## Use it\n\nx\n")
    return folder


def test_classifier_added_to_pipeline_loads_both_ways_and_guides(base, tmp_path):
    out = tmp_path / "guided"
    train_classifier.main(["--pretrained_model_name_or_path", str(base), "--output_dir", str(out), *TINY,
                           "--characters", "0123", "--max_train_steps", "2", "--learning_rate", "1e-3", "--save_fp16"])
    index = json.loads((out / "model_index.json").read_text())
    assert index["classifier"][1] == "ADMClassifierModel" and index["_class_name"] == ["pipeline", "ADMPipeline"]
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["num_train_timesteps"] == 100
    metrics = json.loads((out / "classifier_eval.json").read_text())
    assert sorted(metrics) == ["accuracy_t0", "accuracy_t25", "accuracy_t50", "accuracy_t75"]
    card = (out / "README.md").read_text()
    assert "U-Net + noisy-image classifier" in card and "Its description." in card and "\nx\n" not in card

    for pipe in (ADMPipeline.from_pretrained(out), DiffusionPipeline.from_pretrained(out, trust_remote_code=True)):
        assert pipe.classifier.config.class_names == list("0123") and pipe.classifier.dtype == torch.float32
        plain, guided = (
            pipe(["1", "2"], num_inference_steps=3, classifier_scale=scale, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
            for scale in (0.0, 10.0)
        )
        assert plain.shape == guided.shape == (2, 16, 16, 3) and not np.allclose(plain, guided)


def test_classifier_learns_from_noised_images(tmp_path):
    """Two classes (dark vs light squares): after a few steps the classifier separates them at moderate noise."""
    data = tmp_path / "data"
    for name, value in (("dark", 30), ("light", 225)):
        (data / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.full((8, 8, 3), value + i, dtype=np.uint8)).save(data / name / f"{i}.png")
    out = tmp_path / "clf"
    train_classifier.main(["--train_data_dir", str(data), "--output_dir", str(out), "--resolution", "8",
                           "--channel_mult", "1", "--attention_resolutions", "", "--pool", "adaptive",
                           "--model_channels", "32", "--train_batch_size", "16", "--max_train_steps", "30",
                           "--learning_rate", "3e-3", "--num_train_timesteps", "100", "--seed", "0",
                           "--checkpointing_steps", "0"])
    classifier = ADMClassifierModel.from_pretrained(out).eval()
    assert classifier.config.class_names == ["dark", "light"]
    x_start = torch.cat([torch.full((8, 3, 8, 8), -0.75), torch.full((8, 3, 8, 8), 0.75)])
    scheduler = ImprovedDDPMScheduler(num_train_timesteps=100, beta_schedule="cosine")
    t = torch.full((16,), 30)
    x_t = scheduler.add_noise(x_start, torch.randn(x_start.shape, generator=torch.Generator().manual_seed(1)), t)
    with torch.no_grad():
        predicted = classifier(x_t, t).logits.argmax(1)
    assert (predicted == torch.tensor([0] * 8 + [1] * 8)).float().mean() >= 0.9


def test_data_classes_must_match_the_unet(base, tmp_path):
    with pytest.raises(ValueError, match=r"classes \['0', '1', '2'\] differ from the U-Net's class_names"):
        train_classifier.main(["--pretrained_model_name_or_path", str(base), "--output_dir", str(tmp_path / "x"),
                               *TINY, "--characters", "012", "--max_train_steps", "1"])


def test_base_must_be_a_pipeline_folder(tmp_path):
    with pytest.raises(ValueError, match="--pretrained_model_name_or_path .* is not a pipeline folder"):
        train_classifier.main(["--pretrained_model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "x"),
                               *TINY, "--max_train_steps", "1"])


@pytest.mark.parametrize("extra, message", [
    # checked against the guided U-Net's size (16, from the base folder), not --resolution
    (["--resolution", "32", "--attention_resolutions", "32"],
     "argument --attention_resolutions: invalid value '32': 32 is not a feature-map side of this network; "
     "allowed: any of 16,8"),
    (["--num_head_channels", "-1"], "argument --num_head_channels: invalid value -1: --pool attention needs"),
])
def test_bad_network_flags_are_argparse_errors(base, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_:
        train_classifier.parse_args(["--pretrained_model_name_or_path", str(base), "--output_dir", str(tmp_path / "x"),
                                     *TINY, *extra])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
