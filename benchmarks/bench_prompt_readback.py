"""Benchmark T1 — do the text-conditioned defaults draw what the prompt says?

Held-out prompts are the glyph world's ``validation`` captions (renders and attribute draws no training run saw);
``--num_prompts`` a multiple of 36 covers every character equally (characters cycle). Each sample is read back:

- **character** by the glyph classifier (``evaluation.predict_glyphs``), on every prompt;
- **ink colour** by ``evaluation.read_ink_colors``, on the prompts that name their ink colour.

For Stable Diffusion folders the real renderings are also read back after a round trip through the VAE (encoded to
the posterior mean and decoded): what survives the latent space.

For unCLIP, **variations** of the prompts' real renderings are read back too: does a variation keep its input's
character and colour? The real renderings' own read-back is the instrument's ceiling. The last line times two images
at the settings used, after a warm-up call.

    python benchmarks/bench_prompt_readback.py --pipeline pipelines/unclip-glyphs --num_prompts 216 --json t1.json
    python benchmarks/bench_prompt_readback.py --pipeline pipelines/tiny-sd-glyphs --num_prompts 216
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffusion_canon.data.glyphs import load_glyphs
from diffusion_canon.evaluation import load_glyph_classifier, predict_glyphs, read_ink_colors, vae_round_trip


def readback(images: np.ndarray, characters: list[str], colors: list[str], scored: list[bool], classifier) -> dict:
    """Character accuracy over all images; colour accuracy over the images whose ``scored`` entry is true."""
    read_characters = predict_glyphs(images, classifier)["character"]
    read_colors = read_ink_colors(images)
    named = [i for i, score in enumerate(scored) if score]
    return {
        "character": float(np.mean([r == c for r, c in zip(read_characters, characters)])),
        "color": float(np.mean([read_colors[i] == colors[i] for i in named])),
        "prompts": len(images),
        "color_scored": len(named),
    }


def load(folder: str):
    """The folder with a plain ``from_pretrained`` (its own dtypes), and the set of dtypes its modules hold."""
    index = json.loads((Path(folder) / "model_index.json").read_text())
    if index["_class_name"] == "StableDiffusionPipeline":
        from diffusers import StableDiffusionPipeline as cls
    else:
        from diffusion_canon.pipelines.pipeline_unclip import UnCLIPPipeline as cls
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    dtypes = {str(p.dtype) for c in pipe.components.values() if isinstance(c, torch.nn.Module) for p in c.parameters()}
    return pipe, sorted(dtypes)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--num_prompts", type=int, default=216)
    parser.add_argument("--num_inference_steps", type=int, default=25)
    parser.add_argument("--guidance_scale", type=float, default=None, help="default: the pipeline's own")
    parser.add_argument("--batch_size", type=int, default=72)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    pipe, dtypes = load(args.pipeline)
    is_sd = type(pipe).__name__ == "StableDiffusionPipeline"
    resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor if is_sd else pipe.decoder.config.sample_size
    data = load_glyphs(resolution, seed=args.seed, split="validation", num_images=args.num_prompts)
    captions, colors = list(data["caption"]), list(data["color"])
    characters = [data.features["label"].int2str(i) for i in data["label"]]
    names_color = [color in caption.lower().split() for caption, color in zip(captions, colors)]
    real = np.stack([np.asarray(image, dtype=np.float32) / 255 for image in data["image"]])
    classifier = load_glyph_classifier()
    settings = dict(num_inference_steps=args.num_inference_steps, output_type="np")
    if args.guidance_scale is not None:
        settings["guidance_scale"] = args.guidance_scale
    if is_sd:
        settings.update(height=resolution, width=resolution)

    def sample(prompts: list[str], seed: int) -> np.ndarray:
        return pipe(prompts, generator=torch.Generator().manual_seed(seed), **settings).images

    results: dict = {"settings": vars(args), "dtypes_after_plain_load": dtypes,
                     "real renderings": readback(real, characters, colors, names_color, classifier)}
    if is_sd:
        results["vae round trip"] = readback(vae_round_trip(pipe.vae, real), characters, colors, names_color, classifier)
    start = time.perf_counter()
    images = np.concatenate([sample(captions[i : i + args.batch_size], args.seed + i)
                             for i in range(0, len(captions), args.batch_size)])
    results["prompts"] = {**readback(images, characters, colors, names_color, classifier),
                          "seconds": round(time.perf_counter() - start, 1)}
    print("prompts", json.dumps(results["prompts"]), flush=True)
    if not is_sd:
        variations = np.concatenate([
            pipe.variations(list(data["image"])[i : i + args.batch_size], num_inference_steps=args.num_inference_steps,
                            generator=torch.Generator().manual_seed(args.seed + i), output_type="np").images
            for i in range(0, len(captions), args.batch_size)])
        # every variation is scored on colour: its input image shows its ink whether or not the caption names it
        results["variations"] = readback(variations, characters, colors, [True] * len(colors), classifier)
        print("variations", json.dumps(results["variations"]), flush=True)
    sample(["a red letter Q", "the digit 7 in blue"], 0)  # warm-up
    start = time.perf_counter()
    sample(["a red letter Q", "the digit 7 in blue"], 1)
    results["two_images_seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
