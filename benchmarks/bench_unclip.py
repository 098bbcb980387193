"""Benchmark Q4 — DALL-E 2 §5.1 in miniature: does the decoder need the prior?

On N held-out (validation split) glyph captions, the unCLIP decoder is conditioned on

- the true CLIP image embedding of the caption's own rendering (an oracle, the ceiling),
- an image embedding sampled by the prior (the full unCLIP),
- the caption's CLIP *text* embedding z_t used in place of an image embedding (the paper's "no prior" baseline),
- the caption alone (null image embedding; GLIDE-like),

each with and without the caption's token encodings. Reported per condition: cFID against the real renderings (Fréchet
distance in the glyph classifier's feature space; "cFID", never "FID") and caption-attribute accuracy — character and
font read back by the glyph classifier, colour read from the pixels (``evaluation.read_ink_colors``; scored only on
captions that name a colour). The same scores on the real
renderings are the ceiling. Prior quality: mean cosine similarity of sampled to true image embeddings across guidance
scales, with and without reranking candidates by CLIP similarity to the caption.

    python benchmarks/bench_unclip.py --pipeline pipelines/unclip-glyphs --num_captions 200 --json out.json

The paper: FID 7.99 with the diffusion prior vs 9.16 passing the text embedding (MS-COCO 256×256, its Table 2 / §5.1).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from diffusion_canon.data.glyphs import load_glyphs
from diffusion_canon.evaluation import cfid, load_glyph_classifier, predict_glyphs, read_ink_colors
from diffusion_canon.clip.encoding import encode_prompts
from diffusion_canon.pipelines.pipeline_unclip import UnCLIPPipeline

def attribute_scores(images: np.ndarray, rows: dict, classifier) -> dict[str, float]:
    """Character / font accuracy (glyph classifier) and colour accuracy (on captions naming their colour)."""
    predicted = predict_glyphs(images, classifier)
    characters = [str(c) for c in rows["character"]]
    named = [i for i, (caption, color) in enumerate(zip(rows["caption"], rows["color"])) if color in caption]
    colors = read_ink_colors(images)
    return {
        "character_accuracy": float(np.mean([p == t for p, t in zip(predicted["character"], characters)])),
        "font_accuracy": float(np.mean([p == t for p, t in zip(predicted["font"], rows["font"])])),
        "color_accuracy": float(np.mean([colors[i] == rows["color"][i] for i in named])) if named else float("nan"),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default="pipelines/unclip-glyphs")
    parser.add_argument("--num_captions", type=int, default=200)
    parser.add_argument("--num_inference_steps", type=int, default=25, help="Decoder respaced steps.")
    parser.add_argument("--prior_num_inference_steps", type=int, default=25)
    parser.add_argument("--guidance_scale", type=float, default=3.0, help="Decoder guidance.")
    parser.add_argument("--prior_guidance_scale", type=float, default=4.0, help="Prior guidance for the decoder rows.")
    parser.add_argument("--prior_guidance_scales", default="0,1,2,4,8", help="Prior-quality sweep.")
    parser.add_argument("--candidates", default="1,4", help="Rerank candidate counts in the prior-quality sweep.")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    pipe = UnCLIPPipeline.from_pretrained(args.pipeline, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    resolution = pipe.decoder.config.sample_size
    clip_resolution = pipe.image_processor.crop_size["height"]
    sides = sorted({resolution, clip_resolution})
    data = load_glyphs(sides[-1], seed=args.seed, split="validation", num_images=args.num_captions, resolutions=sides)
    rows = {"caption": list(data["caption"]), "font": list(data["font"]), "color": list(data["color"]),
            "character": [data.features["label"].int2str(i) for i in data["label"]]}
    real = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in data[f"image_{resolution}"]])
    classifier = load_glyph_classifier()

    true_embeds = pipe.encode_image(list(data[f"image_{clip_resolution}"]))
    text_embeds, tokens, _ = encode_prompts(pipe.text_encoder, pipe.tokenizer, rows["caption"])
    text_embeds, tokens = text_embeds.float(), tokens.float()
    if not pipe.decoder.config.text_hidden_size:
        tokens = None
    prior = pipe.prior_pipeline
    generator = torch.Generator().manual_seed(args.seed)
    prior_embeds = prior(rows["caption"], guidance_scale=args.prior_guidance_scale,
                         num_inference_steps=args.prior_num_inference_steps, generator=generator).image_embeds

    conditions = {
        "true image embedding (oracle)": true_embeds,
        "prior-sampled image embedding": prior_embeds,
        "text embedding z_t in its place": text_embeds,
    }
    # the floor of cFID: a second, independent set of real renderings of the same split
    other = load_glyphs(resolution, seed=args.seed + 1, split="validation", num_images=args.num_captions)
    other = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in other["image"]])
    results: dict = {"settings": vars(args),
                     "real": {"cfid": cfid(other, real, classifier), **attribute_scores(real, rows, classifier)}}
    decoder_rows = [(name + suffix, embeds, toks) for name, embeds in conditions.items()
                    for suffix, toks in ((" + caption", tokens), ("", None)) if toks is not None or suffix == ""]
    if tokens is not None:
        decoder_rows.append(("caption only (null image embedding)", None, tokens))
    for name, embeds, toks in decoder_rows:
        start = time.perf_counter()
        images = []
        for i in range(0, args.num_captions, args.batch_size):
            part = slice(i, i + args.batch_size)
            images.append(pipe.decode(None if embeds is None else embeds[part], None if toks is None else toks[part],
                                      num_inference_steps=args.num_inference_steps,
                                      guidance_scale=args.guidance_scale,
                                      generator=torch.Generator().manual_seed(args.seed + i), output_type="np"))
        images = np.concatenate(images)
        results[name] = {"cfid": cfid(images, real, classifier), **attribute_scores(images, rows, classifier),
                         "seconds": round(time.perf_counter() - start, 1)}
        print(name, json.dumps(results[name]), flush=True)

    quality = {"text embedding z_t (baseline)": F.cosine_similarity(text_embeds, true_embeds).mean().item(),
               "mean image embedding (baseline)": F.cosine_similarity(
                   pipe.prior.clip_mean[None].float(), true_embeds).mean().item()}
    for scale in (float(s) for s in args.prior_guidance_scales.split(",")):
        for n in (int(c) for c in args.candidates.split(",")):
            sampled = prior(rows["caption"], guidance_scale=scale, num_candidates=n,
                            num_inference_steps=args.prior_num_inference_steps,
                            generator=torch.Generator().manual_seed(args.seed)).image_embeds
            quality[f"guidance {scale:g}, candidates {n}"] = F.cosine_similarity(sampled, true_embeds).mean().item()
    results["prior_cosine_similarity"] = quality
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


def markdown(results: dict) -> str:
    lines = ["| decoder conditioned on | cFID ↓ | character acc | font acc | colour acc | s |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name in ("settings", "prior_cosine_similarity"):
            continue
        label = "real renderings (ceiling; cFID between two real sets)" if name == "real" else name
        lines.append(f"| {label} | {r['cfid']:.2f} | {r['character_accuracy']:.3f} | {r['font_accuracy']:.3f} | "
                     f"{r['color_accuracy']:.3f} | {r.get('seconds', '')} |")
    lines += ["", "| prior sampling | cos(sampled z_i, true z_i) |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in results["prior_cosine_similarity"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
