"""Train the unCLIP diffusion prior p(z_i | y) (Ramesh et al. 2022, §2.1) on frozen CLIP embeddings of the glyph world.

    accelerate launch training/train_unclip_prior.py --clip_model_path out/glyph-clip --output_dir out/unclip-prior \\
        --num_images 5000 --max_train_steps 4000 --train_batch_size 256 --learning_rate 3e-4 --use_ema

``--clip_model_path`` is a folder with a CLIP model and its tokenizer (``diffusion-canon train-clip`` writes one; any
``CLIPModel`` folder works). CLIP runs once over the data: per caption y the text embedding z_t, the token encodings
and the mask; per image the embedding z_i. The prior's standardisation statistics are set from the training z_i.
Loss (the paper's L_prior, x0 prediction): || f(z_i^(t), t, y) - z_i ||² on standardised embeddings, t uniform,
cosine β schedule, the text condition replaced by the learned null condition with probability ``--condition_dropout``
(10%, for classifier-free guidance). Output: an ``UnCLIPPriorPipeline`` folder (prior with EMA weights when
``--use_ema``, CLIP text encoder, tokenizer, scheduler) loadable with
``DiffusionPipeline.from_pretrained(output_dir, trust_remote_code=True)``, its model card, and ``prior_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPTextModelWithProjection, CLIPTokenizer

from diffusion_canon.data.glyphs import load_glyphs
from diffusion_canon.clip.encoding import encode_pairs
from diffusion_canon.clip.glyph_clip import CLIPImageProcessor
from diffusion_canon.models.unclip_prior import UnCLIPPriorTransformer
from diffusion_canon.pipelines.hub import save_pipeline_folder
from diffusion_canon.pipelines.pipeline_unclip_prior import UnCLIPPriorPipeline, default_prior_scheduler
from diffusion_canon.training import TrainingRun, parse_training_args, training_parser, write_model_card


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=3e-4)
    group = parser.add_argument_group("unCLIP prior")
    group.add_argument("--clip_model_path", required=True, help="CLIP model + tokenizer folder.")
    group.add_argument("--resolution", type=int, default=32)
    group.add_argument("--num_images", type=int, default=5000, help="load_glyphs(split='train') images.")
    group.add_argument("--num_eval_images", type=int, default=100, help="load_glyphs(split='validation') images.")
    group.add_argument("--data_seed", type=int, default=0)
    group.add_argument("--width", type=int, default=128)
    group.add_argument("--num_layers", type=int, default=4)
    group.add_argument("--num_heads", type=int, default=4)
    group.add_argument("--no_text_tokens", action="store_true", help="Condition on z_t only, not the token encodings.")
    group.add_argument("--num_train_timesteps", type=int, default=1000)
    group.add_argument("--condition_dropout", type=float, default=0.1)
    group.add_argument("--eval_inference_steps", type=int, default=64)
    args = parse_training_args(parser, argv)
    if not 0.0 <= args.condition_dropout < 1.0:
        raise ValueError(f"--condition_dropout must lie in [0, 1), got {args.condition_dropout}")
    return args


class EmbeddingDataset(torch.utils.data.Dataset):
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["image_embeds"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[i] for key, value in self.tensors.items()}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run = TrainingRun(args, "unclip-prior")
    clip = CLIPModel.from_pretrained(args.clip_model_path).eval()
    tokenizer = CLIPTokenizer.from_pretrained(args.clip_model_path)
    processor = CLIPImageProcessor.from_pretrained(args.clip_model_path)
    train = load_glyphs(args.resolution, seed=args.data_seed, split="train", num_images=args.num_images)
    embeddings = encode_pairs(clip, tokenizer, processor, list(train["image"]), list(train["caption"]))

    text_config = clip.config.text_config
    prior = UnCLIPPriorTransformer(
        embedding_dim=clip.config.projection_dim,
        text_hidden_size=0 if args.no_text_tokens else text_config.hidden_size,
        num_text_tokens=0 if args.no_text_tokens else tokenizer.model_max_length,
        width=args.width,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
    )
    prior.set_embedding_stats(embeddings["image_embeds"])
    scheduler = default_prior_scheduler(args.num_train_timesteps)
    run.trainable(prior.parameters())
    dataloader = run.dataloader(EmbeddingDataset(embeddings))
    prior = run.prepare(prior)
    model = run.unwrap(prior)

    for batch in run.batches(dataloader):
        with run.accumulate(prior):
            z0 = model.normalize_image_embeds(batch["image_embeds"])
            noise = torch.randn_like(z0)
            t = torch.randint(0, args.num_train_timesteps, (len(z0),), device=z0.device)
            keep = torch.rand(len(z0), device=z0.device) >= args.condition_dropout
            tokens = None if args.no_text_tokens else batch["tokens"]
            prediction = prior(scheduler.add_noise(z0, noise, t), scheduler.model_timestep(t), batch["text_embeds"],
                               tokens, batch["mask"], keep_condition=keep).predicted_image_embedding
            run.backward(F.mse_loss(prediction.float(), z0))

    run.final_validation()  # copies the EMA weights into the prior
    if run.is_main_process:
        with run.final_output() as output_dir:  # beside --output_dir, swapped in whole at the end
            text_encoder = CLIPTextModelWithProjection.from_pretrained(args.clip_model_path)
            pipe = UnCLIPPriorPipeline(run.unwrap(prior).eval(), text_encoder, tokenizer, scheduler)
            save_pipeline_folder(pipe, output_dir)
            held_out = load_glyphs(args.resolution, seed=args.data_seed, split="validation",
                                   num_images=args.num_eval_images)
            captions = list(held_out["caption"])
            metrics = evaluate_prior(pipe, encode_pairs(clip, tokenizer, processor, list(held_out["image"]), captions),
                                     captions, args.eval_inference_steps, args.data_seed)
            with open(os.path.join(output_dir, "prior_eval.json"), "w") as f:
                json.dump(metrics, f, indent=2)
            write_model_card(
                output_dir, "unclip_prior", base_model=args.clip_model_path, tags=["unclip", "diffusion-prior"],
                repo_id=args.hub_model_id if args.push_to_hub else None, folder=args.output_dir,
                steps=run.global_step, metrics=metrics,
                config=dict(model.config), num_images=args.num_images, condition_dropout=args.condition_dropout,
            )
    run.end()


@torch.no_grad()
def evaluate_prior(pipe: UnCLIPPriorPipeline, embeddings: dict[str, torch.Tensor], captions: list[str],
                   num_inference_steps: int, seed: int) -> dict[str, float]:
    """Mean cosine similarity of prior samples to the true image embeddings of held-out captions (DALL-E 2 §5.1 in
    miniature): unguided (w = 0, the caption ignored), conditional (w = 1) and guided (w = 4) sampling, each without
    and with reranking 4 candidates. Baselines: the caption's CLIP text embedding z_t itself, and the training set's
    mean image embedding (what any caption-blind guess scores; CLIP embeddings share a large common component)."""
    pipe.set_progress_bar_config(disable=True)
    true = embeddings["image_embeds"]
    metrics = {
        "text_embedding_baseline": F.cosine_similarity(embeddings["text_embeds"], true).mean().item(),
        "mean_image_embedding_baseline": F.cosine_similarity(pipe.prior.clip_mean[None], true).mean().item(),
    }
    for guidance in (0.0, 1.0, 4.0):
        for candidates in (1, 4):
            sampled = pipe(captions, guidance_scale=guidance, num_candidates=candidates,
                           num_inference_steps=num_inference_steps,
                           generator=torch.Generator().manual_seed(seed)).image_embeds
            metrics[f"guidance_{guidance:g}_candidates_{candidates}"] = F.cosine_similarity(sampled, true).mean().item()
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
