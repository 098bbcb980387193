"""Text-to-image LoRA (Hu et al. 2021): W' = W + (alpha / r) B A on the UNet's attention projections (``--lora_layers``
picks other layers; ``--train_text_encoder`` adds the text encoder's), trained with the latent-diffusion loss on a
captioned dataset; the base weights stay frozen.

    accelerate launch training/train_lora.py --pretrained_model_name_or_path pipelines/tiny-sd-glyphs \\
        --train_data_dir my_style --rank 4 --resolution 32 --max_train_steps 500 --output_dir out/lora

``--train_data_dir`` holds images and a ``metadata.jsonl`` ({"file_name": "0.png", "text": "a caption"} per line);
``--dataset_name`` takes a ``datasets`` dataset instead. Output: ``pytorch_lora_weights.safetensors`` (rank, alpha and
target modules in its metadata) for ``pipe.load_lora_weights(output_dir)``, optionally a kohya/A1111 file, a model
card.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from diffusion_canon.data.image_transform import ImageTransform
from diffusion_canon.finetune.data import CachedLatents, captioned_images, collate
from diffusion_canon.finetune.lora import TEXT_ENCODER_TARGETS, add_lora, check_lora_layers, save_lora
from diffusion_canon.finetune.objective import denoising_loss, predict_batch
from diffusion_canon.finetune.prompt_encoder import PromptEncoder
from diffusion_canon.finetune.sd_args import add_lora_args, add_sd_args, check_sd_args
from diffusion_canon.finetune.sd_base import load_base, training_modules
from diffusion_canon.finetune.validation import validation_images
from diffusion_canon.training import TrainingRun, parse_training_args, training_parser, write_model_card


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=1e-4)
    add_sd_args(parser)
    add_lora_args(parser)
    group = parser.add_argument_group("data and LoRA")
    group.add_argument("--train_data_dir", default=None, help="Images + metadata.jsonl captions.")
    group.add_argument("--dataset_name", default=None, help="A datasets dataset (Hub id or local path).")
    group.add_argument("--image_column", default="image")
    group.add_argument("--caption_column", default="text")
    group.add_argument("--train_text_encoder", action="store_true", help="Also put LoRA on the text encoder.")
    group.add_argument("--export_kohya", action="store_true", help="Also write kohya/A1111 keys.")
    args = parse_training_args(parser, argv)
    check_sd_args(args)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    transform = ImageTransform(args.resolution, args.center_crop, args.random_flip)
    dataset = captioned_images(args.train_data_dir, args.dataset_name, transform, args.image_column,
                               args.caption_column, args.repeats)  # bad data fails before any model loads
    base = load_base(args)
    check_lora_layers(base.unet, args.lora_layers)
    run = TrainingRun(args, "lora")

    # Models: everything frozen in the run's dtype; LoRA adapters (fp32) on --lora_layers.
    base.vae.requires_grad_(False).to(run.device, run.weight_dtype)
    base.text_encoder.requires_grad_(False).to(run.device, run.weight_dtype)
    add_lora(base.unet.to(run.device, run.weight_dtype), args.rank, args.lora_alpha, args.lora_layers)
    if args.train_text_encoder:
        add_lora(base.text_encoder, args.rank, args.lora_alpha, TEXT_ENCODER_TARGETS)
    if args.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
    run.trainable([*base.unet.parameters(), *base.text_encoder.parameters()])

    if args.cache_latents:
        dataset = CachedLatents(dataset, base.vae)
    dataloader = run.dataloader(dataset, collate)
    if args.train_text_encoder:
        unet, text_encoder = run.prepare(base.unet, base.text_encoder)
    else:
        unet, text_encoder = run.prepare(base.unet), base.text_encoder
    encode_prompts = PromptEncoder(base.tokenizer, text_encoder, cache=not args.train_text_encoder)
    if args.validation_prompt:  # base.pipeline() shares the modules being trained
        run.validation = lambda: validation_images(base.pipeline, args.validation_prompt, args)

    models = training_modules(unet, text_encoder, args.train_text_encoder)
    for batch in run.batches(dataloader):
        with run.accumulate(*models):
            model_pred, target, timesteps = predict_batch(batch, base, unet, encode_prompts, args.noise_offset,
                                                          run.weight_dtype)
            run.backward(denoising_loss(model_pred, target, timesteps, base.noise_scheduler, args.snr_gamma).mean())

    images = run.final_validation()
    if run.is_main_process:
        with run.final_output() as output_dir:  # beside --output_dir, swapped in whole at the end
            save_lora(output_dir, run.unwrap(unet), run.unwrap(text_encoder) if args.train_text_encoder else None,
                      args.export_kohya)
            write_model_card(
                output_dir, "lora", base_model=args.pretrained_model_name_or_path, tags=["lora", "text-to-image"],
                images=images, repo_id=args.hub_model_id if args.push_to_hub else None, folder=args.output_dir,
                rank=args.rank,
                alpha=args.lora_alpha or args.rank, target_modules=list(args.lora_layers),
                validation_prompt=args.validation_prompt, steps=run.global_step,
            )
    run.end()


if __name__ == "__main__":
    main(sys.argv[1:])
