"""training/train_unclip_prior.py in-process: a tiny run saves a loadable prior pipeline with data statistics, and
resuming from a mid-run checkpoint reproduces the uninterrupted run's weights exactly."""

import json

import pytest
import torch
from transformers import CLIPModel

from diffusion_canon.data.glyphs import load_glyphs
from diffusion_canon.clip.encoding import encode_images
from diffusion_canon.clip.glyph_clip import glyph_clip_image_processor
from diffusion_canon.pipelines.pipeline_unclip_prior import UnCLIPPriorPipeline
from script_helpers import load_script


def argv(clip_folder, output_dir, *extra):
    return [
        "--clip_model_path", str(clip_folder), "--output_dir", str(output_dir), "--resolution", "16",
        "--num_images", "16", "--num_eval_images", "4", "--eval_inference_steps", "2", "--train_batch_size", "8",
        "--width", "16", "--num_layers", "1", "--num_heads", "2", "--num_train_timesteps", "50", "--seed", "0",
        "--max_train_steps", "4", "--checkpointing_steps", "2", "--use_ema", "--ema_decay", "0.9", *extra,
    ]


def test_tiny_run_then_exact_resume(clip_folder, tmp_path):
    script = load_script("train_unclip_prior")
    script.main(argv(clip_folder, tmp_path / "full"))
    pipe = UnCLIPPriorPipeline.from_pretrained(tmp_path / "full")

    # statistics: those of the training images' CLIP embeddings, computed here independently
    clip = CLIPModel.from_pretrained(clip_folder).eval()
    images = list(load_glyphs(16, seed=0, split="train", num_images=16)["image"])
    embeds = encode_images(clip, glyph_clip_image_processor(16), images)
    torch.testing.assert_close(pipe.prior.clip_mean, embeds.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pipe.prior.clip_std, embeds.std(0), atol=1e-5, rtol=1e-5)
    assert pipe.scheduler.config.beta_schedule == "cosine" and pipe.scheduler.config.prediction_type == "sample"
    metrics = json.loads((tmp_path / "full" / "prior_eval.json").read_text())
    assert {"text_embedding_baseline", "guidance_4_candidates_4"} <= set(metrics)
    assert all(-1 <= v <= 1 for v in metrics.values())
    assert "unCLIP diffusion prior" in (tmp_path / "full" / "README.md").read_text()
    out = pipe(["a red letter A"], num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.image_embeds.shape == (1, 8)

    script.main(argv(clip_folder, tmp_path / "resumed", "--resume_from_checkpoint",
                     str(tmp_path / "full" / "checkpoint-2")))
    # only steps 3-4 ran (a run that ignored the checkpoint would also have saved checkpoint-2) ...
    assert sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint-*")) == ["checkpoint-4"]
    # ... and they landed on the uninterrupted run's weights, EMA included, bit for bit
    resumed = UnCLIPPriorPipeline.from_pretrained(tmp_path / "resumed").prior.state_dict()
    for name, value in pipe.prior.state_dict().items():
        torch.testing.assert_close(resumed[name], value, atol=0, rtol=0, msg=name)


def test_bad_dropout(clip_folder, tmp_path):
    with pytest.raises(ValueError, match="condition_dropout"):
        load_script("train_unclip_prior").parse_args(argv(clip_folder, tmp_path, "--condition_dropout", "1.5"))
