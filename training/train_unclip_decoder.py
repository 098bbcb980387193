"""Train the unCLIP decoder p(x | z_i, y) (Ramesh et al. 2022, §2) on frozen CLIP image embeddings of the glyph world.

    accelerate launch training/train_unclip_decoder.py --clip_model_path out/glyph-clip \\
        --prior_model_path out/unclip-prior --output_dir out/unclip-glyphs --max_train_steps 4000 \\
        --train_batch_size 32 --learning_rate 3e-4 --use_ema --save_fp16

``--clip_model_path`` is a CLIP folder with its tokenizer and image processor (``diffusion-canon train-clip`` writes
one). CLIP runs once over the images, rendered at its own resolution: per image its embedding z_i, per caption the
token encodings. The decoder learns the same glyphs at ``--resolution`` (which may be lower, as DALL-E 2's 64×64
decoder below its super-resolution stages). The decoder is an
ADM U-Net (learned Σ, the hybrid loss L_simple + λ·L_vlb of improved DDPM, cosine β) with z_i added to the timestep
embedding and projected into 4 context tokens, the caption's token encodings appended (``--no_text`` drops them).
For classifier-free guidance the embedding is replaced by a learned null embedding with probability
``--image_embedding_dropout`` (10%) and the caption by learned null tokens with probability ``--text_dropout`` (50%),
independently. Output: an ``UnCLIPPipeline`` folder (decoder with EMA weights when ``--use_ema``, its scheduler, the
CLIP text and image towers, tokenizer, image processor, and the prior + its scheduler from ``--prior_model_path`` when
given) loadable with ``DiffusionPipeline.from_pretrained(output_dir, trust_remote_code=True)``, and its model card.
``--pretrained_decoder_path`` starts from such a folder's decoder instead of a new one: a second phase of training,
with its own optimizer, learning-rate schedule and EMA.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from transformers import CLIPModel, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

from diffusion_canon.data.glyphs import load_glyphs
from diffusion_canon.data.image_transform import ImageTransform
from diffusion_canon.clip.encoding import encode_pairs
from diffusion_canon.clip.glyph_clip import CLIPImageProcessor
from diffusion_canon.models.unclip_decoder import UnCLIPDecoderUNet2DModel
from diffusion_canon.pipelines.hub import cast_for_storage, save_pipeline_folder
from diffusion_canon.pipelines.pipeline_unclip import UnCLIPPipeline
from diffusion_canon.pipelines.pipeline_unclip_prior import UnCLIPPriorPipeline
from diffusion_canon.training import TrainingRun, image_grid, parse_training_args, training_parser, write_model_card
from diffusion_canon.training.adm_args import (
    add_adm_network_args,
    add_diffusion_args,
    add_objective_args,
    check_network_args,
    diffusion_scheduler,
    network_kwargs,
)
from diffusion_canon.training.losses import training_losses
from diffusion_canon.training.timestep_samplers import LossAwareSampler, checkpointed_schedule_sampler


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=3e-4)
    add_diffusion_args(parser)
    add_adm_network_args(parser, model_channels=32, num_res_blocks=1, dropout=0.0)
    group = parser.add_argument_group("unCLIP decoder")
    group.add_argument("--clip_model_path", required=True, help="CLIP model + tokenizer + image processor folder.")
    group.add_argument("--prior_model_path", default=None, help="An UnCLIPPriorPipeline folder to ship alongside.")
    group.add_argument("--pretrained_decoder_path", default=None,
                       help="An UnCLIPPipeline folder whose decoder to go on training (a fresh optimizer and EMA); "
                            "its config replaces the network flags.")
    group.add_argument("--resolution", type=int, default=32)
    group.add_argument("--num_images", type=int, default=5000, help="load_glyphs(split='train') images.")
    group.add_argument("--data_seed", type=int, default=0)
    group.add_argument("--context_dim", type=int, default=128, help="Width of the context tokens.")
    group.add_argument("--num_context_tokens", type=int, default=4)
    group.add_argument("--no_text", action="store_true", help="Condition on the image embedding only.")
    group.add_argument("--image_embedding_dropout", type=float, default=0.1)
    group.add_argument("--text_dropout", type=float, default=0.5)
    add_objective_args(parser, variance_type=None)  # Σ is always learned (learned_range)
    args = parse_training_args(parser, argv)
    for name in ("image_embedding_dropout", "text_dropout"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise ValueError(f"--{name} must lie in [0, 1), got {getattr(args, name)}")
    check_network_args(parser, args)  # bad network flags fail now, as argparse errors
    return args


@torch.no_grad()
class DecoderDataset(torch.utils.data.Dataset):
    """``{"pixel_values": (3, H, W) in [-1, 1], "image_embeds": (D,), ["tokens": (L, H)]}`` per glyph."""

    def __init__(self, images, conditions: dict[str, torch.Tensor], resolution: int):
        self.images, self.conditions = images, conditions
        self.transform = ImageTransform(resolution, center_crop=True)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.transform(self.images[i]), **{k: v[i] for k, v in self.conditions.items()}}


def build_pipeline(decoder: UnCLIPDecoderUNet2DModel, scheduler, args: argparse.Namespace) -> UnCLIPPipeline:
    """The decoder with the CLIP towers it was trained on (and the prior of ``--prior_model_path``)."""
    tokenizer = CLIPTokenizer.from_pretrained(args.clip_model_path)
    parts = dict(
        text_encoder=CLIPTextModelWithProjection.from_pretrained(args.clip_model_path),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(args.clip_model_path),
        image_processor=CLIPImageProcessor.from_pretrained(args.clip_model_path),
    )
    if args.prior_model_path:
        prior = UnCLIPPriorPipeline.from_pretrained(args.prior_model_path)
        parts.update(prior=prior.prior, prior_scheduler=prior.scheduler)
    return UnCLIPPipeline(decoder, scheduler, tokenizer=tokenizer, **parts)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run = TrainingRun(args, "unclip-decoder")

    clip = CLIPModel.from_pretrained(args.clip_model_path).eval()
    tokenizer = CLIPTokenizer.from_pretrained(args.clip_model_path)
    processor = CLIPImageProcessor.from_pretrained(args.clip_model_path)

    # Model: ADM U-Net + image-embedding conditioning; learned Σ (2C outputs). Built first, so that a pretrained
    # decoder that does not fit fails before CLIP encodes the data.
    widths = dict(embedding_dim=clip.config.projection_dim,
                  text_hidden_size=0 if args.no_text else clip.config.text_config.hidden_size,
                  num_text_tokens=0 if args.no_text else tokenizer.model_max_length)
    if args.pretrained_decoder_path:
        decoder = pretrained_decoder(args.pretrained_decoder_path, dict(widths, sample_size=args.resolution))
    else:
        decoder = UnCLIPDecoderUNet2DModel(out_channels=6, num_context_tokens=args.num_context_tokens,
                                           context_dim=args.context_dim, **widths, **network_kwargs(args))

    # Data: glyph images in [-1, 1] and their frozen-CLIP conditions.
    clip_resolution = processor.crop_size["height"]
    sides = sorted({args.resolution, clip_resolution})
    train = load_glyphs(sides[-1], seed=args.data_seed, split="train", num_images=args.num_images, resolutions=sides)
    pairs = encode_pairs(clip, tokenizer, processor, list(train[f"image_{clip_resolution}"]), list(train["caption"]))
    conditions = {key: pairs[key] for key in (("image_embeds",) if args.no_text else ("image_embeds", "tokens"))}
    dataset = DecoderDataset(list(train[f"image_{args.resolution}"]), conditions, args.resolution)
    del clip

    if args.gradient_checkpointing:
        decoder.enable_gradient_checkpointing()
    scheduler = diffusion_scheduler(args, "learned_range")
    sampler = checkpointed_schedule_sampler(run, args.schedule_sampler, scheduler)

    run.trainable(decoder.parameters())
    dataloader = run.dataloader(dataset)
    decoder = run.prepare(decoder)
    model = run.unwrap(decoder)
    if args.num_validation_images:
        validation_embeds = conditions["image_embeds"][: args.num_validation_images]
        run.validation = lambda: reconstructions(model, scheduler, validation_embeds, args)

    for batch in run.batches(dataloader):
        with run.accumulate(decoder):
            x_start = batch["pixel_values"]
            n = len(x_start)
            timesteps, weights = sampler.sample(n, x_start.device)
            noise = torch.randn_like(x_start)
            x_t = scheduler.add_noise(x_start, noise, timesteps)
            keep_image = torch.rand(n, device=x_start.device) >= args.image_embedding_dropout
            keep_text = torch.rand(n, device=x_start.device) >= args.text_dropout
            output = decoder(x_t, scheduler.model_timestep(timesteps), batch["image_embeds"], batch.get("tokens"),
                             keep_image=keep_image, keep_text=keep_text).sample.float()
            terms = training_losses(scheduler, output, x_start, x_t, noise, timesteps, args.loss_type)
            if isinstance(sampler, LossAwareSampler):
                sampler.update_with_local_losses(timesteps, terms["loss"].detach())
            run.backward((terms["loss"] * weights).mean())

    images = run.final_validation()  # copies the EMA weights into the decoder
    if run.is_main_process:
        with run.final_output() as output_dir:  # beside --output_dir, swapped in whole at the end
            model = run.unwrap(decoder).eval()
            pipe = build_pipeline(model, scheduler, args)
            if args.save_fp16:
                cast_for_storage(pipe, torch.float16)
            save_pipeline_folder(pipe, output_dir)
            write_model_card(
                output_dir, "unclip_decoder", base_model=args.pretrained_decoder_path,
                tags=["unclip", "text-to-image", "image-variation"],
                images=[image_grid(images, columns=min(len(images), 8))] if images else [],
                repo_id=args.hub_model_id if args.push_to_hub else None, folder=args.output_dir,
                steps=run.global_step, args=args,
                config=dict(model.config), parameters=sum(p.numel() for p in model.parameters()),
                with_prior=bool(args.prior_model_path),
            )
    run.end()


def pretrained_decoder(folder: str, widths: dict) -> UnCLIPDecoderUNet2DModel:
    """The float32 decoder of an UnCLIPPipeline folder, checked to fit this run's CLIP, caption and resolution."""
    try:
        decoder = UnCLIPDecoderUNet2DModel.from_pretrained(folder, subfolder="decoder", dtype=torch.float32,
                                                           use_safetensors=True)
    except OSError as error:  # no such folder, no decoder/ in it, or no safetensors weights
        raise ValueError(f"--pretrained_decoder_path {folder}: not an UnCLIPPipeline folder with a decoder/ of "
                         f"safetensors weights ({error})") from None
    found = {key: decoder.config[key] for key in widths}
    if found != widths:
        raise ValueError(f"--pretrained_decoder_path {folder}: its decoder has {found}, but this run's CLIP, "
                         f"caption and --resolution need {widths}")
    return decoder


@torch.no_grad()
def reconstructions(decoder: UnCLIPDecoderUNet2DModel, scheduler, image_embeds: torch.Tensor,
                    args: argparse.Namespace) -> list:
    """Decode training images' embeddings (no caption) at ``--num_inference_steps``, guidance ``--guidance_scale``."""
    was_training = decoder.training
    decoder.eval()
    generator = torch.Generator().manual_seed(args.seed or 0)
    config = decoder.config
    noise = torch.randn(len(image_embeds), config.in_channels, config.sample_size, config.sample_size,
                        generator=generator).to(decoder.device)
    pipe = build_pipeline(decoder, scheduler, args)
    pipe.set_progress_bar_config(disable=True)
    images = pipe.decode(image_embeds, num_inference_steps=args.num_inference_steps,
                         guidance_scale=args.guidance_scale, generator=generator, latents=noise)
    decoder.train(was_training)
    return images


if __name__ == "__main__":
    main(sys.argv[1:])
