"""DreamBooth (Ruiz et al. 2022): fine-tune a Stable-Diffusion-format model on a few images of a subject, bound to a
rare identifier ("a sks font letter A"), with the class-specific prior preservation loss

    L = E || eps - eps_theta(z_t, t, c) ||^2 + lambda E || eps' - eps_theta(z'_t', t', c_pr) ||^2

where z' are the base model's own samples of the class prompt c_pr (eq. 2 of the paper). ``--use_lora --rank N``
trains LoRA adapters (Hu et al. 2021) instead of all UNet weights.

    accelerate launch training/train_dreambooth.py --pretrained_model_name_or_path pipelines/tiny-sd-glyphs \\
        --instance_data_dir my_font --instance_prompt "a sks font letter A" \\
        --with_prior_preservation --class_data_dir class_letters --class_prompt "a letter A" \\
        --resolution 32 --max_train_steps 400 --output_dir out/dreambooth

Output: a StableDiffusionPipeline folder (``from_pretrained(output_dir)``), or with ``--use_lora`` LoRA weights
(``pipe.load_lora_weights(output_dir)``); a model card either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch
from diffusion_canon.finetune.class_images import generate_class_images
from diffusion_canon.data.image_transform import ImageTransform
from diffusion_canon.finetune.data import (
    CachedLatents, Concept, PriorPreservationPairs, PromptedImages, collate, instance_examples, list_images,
)
from diffusion_canon.finetune.lora import TEXT_ENCODER_TARGETS, add_lora, check_lora_layers, save_lora
from diffusion_canon.finetune.objective import dreambooth_loss, predict_batch
from diffusion_canon.finetune.prompt_encoder import PromptEncoder
from diffusion_canon.finetune.sd_args import add_lora_args, add_sd_args, check_sd_args
from diffusion_canon.finetune.sd_base import base_pipeline, load_base, training_modules
from diffusion_canon.finetune.validation import validation_images
from diffusion_canon.training import TrainingRun, parse_training_args, training_parser, write_model_card
from diffusion_canon.training.arguments import COUNT, STEPS, real


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=5e-6)
    add_sd_args(parser)
    add_lora_args(parser)
    group = parser.add_argument_group("DreamBooth")
    group.add_argument("--instance_data_dir", default=None, help="Images of the subject.")
    group.add_argument("--instance_prompt", default=None, help='e.g. "a sks font letter A".')
    group.add_argument("--class_data_dir", default=None, help="Class images; filled by sampling the base if short.")
    group.add_argument("--class_prompt", default=None, help='e.g. "a letter A".')
    group.add_argument("--with_prior_preservation", action="store_true")
    group.add_argument("--prior_loss_weight", type=real(minimum=0), default=1.0, help="lambda of the prior term.")
    group.add_argument("--num_class_images", type=STEPS, default=100)
    group.add_argument("--sample_batch_size", type=COUNT, default=4, help="Batch size for sampling class images.")
    group.add_argument("--train_text_encoder", action="store_true")
    group.add_argument("--use_lora", action="store_true", help="Train LoRA adapters instead of all weights.")
    group.add_argument("--export_kohya", action="store_true", help="With --use_lora: also write kohya/A1111 keys.")
    group.add_argument("--concepts_list", default=None,
                       help="JSON file: a list of {instance_data_dir, instance_prompt, class_data_dir, class_prompt}"
                            " to train several subjects in one run (replaces the single-concept flags).")
    args = parse_training_args(parser, argv)
    check_sd_args(args)
    args.concepts = read_concepts(args)
    return args


def read_concepts(args: argparse.Namespace) -> list[Concept]:
    """The subjects to learn, checked before any model is loaded."""
    if args.concepts_list:
        try:
            with open(args.concepts_list) as f:
                entries = json.load(f)
            concepts = [Concept(**entry) for entry in entries]
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"--concepts_list {args.concepts_list!r}: expected a JSON list of objects with keys "
                             f"{list(Concept.__dataclass_fields__)} ({type(error).__name__}: {error})") from None
    else:
        concepts = [Concept(args.instance_data_dir, args.instance_prompt, args.class_data_dir, args.class_prompt)]
    for concept in concepts:
        list_images(concept.instance_data_dir, "instance_data_dir")  # missing or empty folder: error now
        if not concept.instance_prompt:
            raise ValueError(f"--instance_prompt is required (got {concept.instance_prompt!r})")
        if args.with_prior_preservation and not (concept.class_prompt and concept.class_data_dir):
            raise ValueError(
                "--with_prior_preservation needs --class_prompt and --class_data_dir, got "
                f"class_prompt={concept.class_prompt!r}, class_data_dir={concept.class_data_dir!r}"
            )
    return concepts


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    base = load_base(args)  # fp32; what trains stays fp32, frozen parts move to the run's dtype below
    if args.use_lora:
        check_lora_layers(base.unet, args.lora_layers)
    run = TrainingRun(args, "dreambooth")
    dtype = run.weight_dtype

    # Prior preservation data: the base model's own samples of each class prompt, made before any weight changes.
    if args.with_prior_preservation:
        for concept in args.concepts:
            generate_class_images(run.accelerator, lambda: base_pipeline(args, dtype).to(run.device),
                                  concept.class_data_dir, concept.class_prompt, args.num_class_images,
                                  args.sample_batch_size, args)

    # Models: the VAE is frozen; the UNet (and with --train_text_encoder the text encoder) trains, or LoRA on them.
    base.vae.requires_grad_(False).to(run.device, dtype)
    base.text_encoder.requires_grad_(False)
    unet, text_encoder = base.unet, base.text_encoder
    if args.use_lora:
        add_lora(unet.to(run.device, dtype), args.rank, args.lora_alpha, args.lora_layers)
        if args.train_text_encoder:
            add_lora(text_encoder.to(run.device, dtype), args.rank, args.lora_alpha, TEXT_ENCODER_TARGETS)
    else:
        text_encoder.requires_grad_(args.train_text_encoder)
    if not args.train_text_encoder:
        text_encoder.to(run.device, dtype)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if args.train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    run.trainable([*unet.parameters(), *(text_encoder.parameters() if args.train_text_encoder else [])])

    # Data: instance images (several concepts, repeats, per-image captions), paired with class images.
    # Fixed pixels (a deterministic transform) have a fixed VAE posterior: encode once instead of every step.
    transform = ImageTransform(args.resolution, args.center_crop, args.random_flip)
    cache_latents = args.cache_latents or transform.deterministic
    dataset = PromptedImages(*instance_examples(args.concepts, args.repeats), transform)
    if cache_latents:
        dataset = CachedLatents(dataset, base.vae)
    if args.with_prior_preservation:
        classes = [(path, c.class_prompt) for c in args.concepts
                   for path in list_images(c.class_data_dir, "class_data_dir")[: args.num_class_images]]
        class_dataset = PromptedImages([p for p, _ in classes], [q for _, q in classes], transform)
        dataset = PriorPreservationPairs(dataset, CachedLatents(class_dataset, base.vae) if cache_latents
                                         else class_dataset)
    dataloader = run.dataloader(dataset, collate)

    if args.train_text_encoder:
        unet, text_encoder = run.prepare(unet, text_encoder)
    else:
        unet = run.prepare(unet)
    encode_prompts = PromptEncoder(base.tokenizer, text_encoder, cache=not args.train_text_encoder)
    unet_dtype = dtype if args.use_lora else torch.float32
    if args.validation_prompt:  # base.pipeline() shares the modules being trained
        run.validation = lambda: validation_images(base.pipeline, args.validation_prompt, args)

    models = training_modules(unet, text_encoder, args.train_text_encoder)
    for batch in run.batches(dataloader):
        with run.accumulate(*models):
            model_pred, target, timesteps = predict_batch(batch, base, unet, encode_prompts, args.noise_offset,
                                                          unet_dtype)
            loss = dreambooth_loss(model_pred, target, timesteps, base.noise_scheduler, args.snr_gamma,
                                   args.prior_loss_weight, args.with_prior_preservation)
            run.backward(loss)

    images = run.final_validation()
    if run.is_main_process:
        with run.final_output() as output_dir:  # beside --output_dir, swapped in whole at the end
            unet, text_encoder = run.unwrap(unet), run.unwrap(text_encoder)
            if args.use_lora:
                save_lora(output_dir, unet, text_encoder if args.train_text_encoder else None, args.export_kohya)
            else:
                # frozen components reloaded from the base: fp32, not the run's fp16/bf16 copies
                trained = {"unet": unet, **({"text_encoder": text_encoder} if args.train_text_encoder else {})}
                base_pipeline(args, torch.float32, **trained).save_pretrained(output_dir, safe_serialization=True)
            write_model_card(
                output_dir, "dreambooth", base_model=args.pretrained_model_name_or_path,
                tags=["dreambooth", "text-to-image", *(["lora"] if args.use_lora else [])], images=images,
                repo_id=args.hub_model_id if args.push_to_hub else None, folder=args.output_dir, use_lora=args.use_lora,
                instance_prompts=[c.instance_prompt for c in args.concepts], validation_prompt=args.validation_prompt,
                prior_preservation=args.with_prior_preservation, train_text_encoder=args.train_text_encoder,
                rank=args.rank, steps=run.global_step,
            )
    run.end()


if __name__ == "__main__":
    main(sys.argv[1:])
