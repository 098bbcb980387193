"""Textual inversion (Gal et al. 2022): learn the embedding of a new token (e.g. "<glyph-style>") from a few images,
every model weight frozen; prompts are templates around the token ("a <glyph-style> letter"), and with
``--subject_column`` they also name what each image shows ("a <glyph-style> letter Q").

    accelerate launch training/train_textual_inversion.py --pretrained_model_name_or_path pipelines/tiny-sd-glyphs \\
        --train_data_dir my_style --placeholder_token "<glyph-style>" --initializer_token bold \\
        --learnable_property style --subject_column subject --resolution 32 --max_train_steps 1000 --output_dir out/ti

Output: ``learned_embeds.safetensors`` ({token: (num_vectors, D)}) for ``pipe.load_textual_inversion(output_dir)``,
optionally an A1111 embedding or a full pipeline; a model card. Checkpoints hold only the new rows and their
optimizer state.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from transformers import CLIPTextModel

from diffusion_canon.data.image_transform import ImageTransform
from diffusion_canon.finetune.data import CachedLatents, collate, list_images
from diffusion_canon.finetune.objective import denoising_loss, predict_batch
from diffusion_canon.finetune.prompt_encoder import PromptEncoder
from diffusion_canon.finetune.sd_args import add_sd_args, check_sd_args
from diffusion_canon.finetune.sd_base import base_pipeline, load_base
from diffusion_canon.finetune.textual_inversion import (
    SUBJECT_TEMPLATES, TEMPLATES, PlaceholderEmbeddings, TemplatedImages, add_placeholder_tokens, image_subjects,
    install_placeholder_rows, save_learned_embeds,
)
from diffusion_canon.finetune.validation import validation_images
from diffusion_canon.training import TrainingRun, parse_training_args, training_parser, write_model_card


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=5e-4)
    add_sd_args(parser)
    group = parser.add_argument_group("textual inversion")
    group.add_argument("--train_data_dir", required=True, help="The few images of the concept.")
    group.add_argument("--placeholder_token", required=True, help='The new token, e.g. "<glyph-style>".')
    group.add_argument("--initializer_token", required=True, help="A single existing token to start from.")
    group.add_argument("--num_vectors", type=int, default=1, help="Embedding vectors for the placeholder.")
    group.add_argument("--learnable_property", default="object", choices=("object", "style"))
    group.add_argument("--subject_column", default=None,
                       help="A metadata.jsonl column naming what each image shows besides the concept, put into "
                       'the prompts: for a style e.g. "letter Q" ("a <glyph-style> letter Q"), for an object e.g. '
                       '"on a beach". Without it the prompts name the concept only.')
    group.add_argument("--export_a1111", action="store_true", help="Also write an AUTOMATIC1111 embedding.")
    group.add_argument("--save_as_full_pipeline", action="store_true",
                       help="Also save the whole pipeline with the token baked into the text encoder.")
    parser.set_defaults(repeats=100, adam_weight_decay=0.0)
    args = parse_training_args(parser, argv)
    check_sd_args(args)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    paths = list_images(args.train_data_dir, "train_data_dir") * args.repeats
    subjects = image_subjects(args.train_data_dir, paths, args.subject_column) if args.subject_column else None
    base = load_base(args)
    token_ids, initializer_id = add_placeholder_tokens(base.tokenizer, args.placeholder_token,
                                                       args.initializer_token, args.num_vectors)
    run = TrainingRun(args, "textual_inversion")

    # Models: all frozen in the run's dtype; the only trainable tensor is the (num_vectors, D) block of new rows,
    # each initialised to the initializer token's embedding.
    for model in (base.vae, base.text_encoder, base.unet):
        model.requires_grad_(False).to(run.device, run.weight_dtype)
    if args.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
    initial = base.text_encoder.get_input_embeddings().weight[initializer_id].float()
    rows = PlaceholderEmbeddings(initial.expand(args.num_vectors, -1)).to(run.device)
    run.trainable(rows.parameters())

    # Data: the images (x repeats), each with a template prompt around the placeholder string (and its subject).
    placeholder = " ".join(base.tokenizer.convert_ids_to_tokens(token_ids))
    templates = (SUBJECT_TEMPLATES if subjects else TEMPLATES)[args.learnable_property]
    transform = ImageTransform(args.resolution, args.center_crop, args.random_flip)
    dataset = TemplatedImages(paths, templates, placeholder, transform, subjects)
    if args.cache_latents or transform.deterministic:  # fixed pixels, fixed VAE posterior: encode once
        dataset = CachedLatents(dataset, base.vae)
    dataloader = run.dataloader(dataset, collate)
    rows = run.prepare(rows)
    install_placeholder_rows(base.text_encoder, rows)
    encode_prompts = PromptEncoder(base.tokenizer, base.text_encoder, cache=False)
    if args.validation_prompt:
        run.validation = lambda: validation_images(base.pipeline, args.validation_prompt, args)

    for batch in run.batches(dataloader):
        with run.accumulate(rows):
            model_pred, target, timesteps = predict_batch(batch, base, base.unet, encode_prompts, args.noise_offset,
                                                          run.weight_dtype)
            run.backward(denoising_loss(model_pred, target, timesteps, base.noise_scheduler, args.snr_gamma).mean())

    images = run.final_validation()
    if run.is_main_process:
        with run.final_output() as output_dir:  # beside --output_dir, swapped in whole at the end
            learned = run.unwrap(rows).weight.detach().float().cpu()
            save_learned_embeds(output_dir, args.placeholder_token, learned, args.export_a1111)
            if args.save_as_full_pipeline:
                text_encoder = CLIPTextModel.from_pretrained(args.pretrained_model_name_or_path, subfolder="text_encoder",
                                                             revision=args.revision, variant=args.variant)
                text_encoder.resize_token_embeddings(len(base.tokenizer))
                with torch.no_grad():
                    text_encoder.get_input_embeddings().weight[token_ids] = learned
                base_pipeline(args, torch.float32, text_encoder=text_encoder, tokenizer=base.tokenizer).save_pretrained(
                    output_dir, safe_serialization=True)
            write_model_card(
                output_dir, "textual_inversion", base_model=args.pretrained_model_name_or_path,
                tags=["textual_inversion", "text-to-image"], images=images,
                repo_id=args.hub_model_id if args.push_to_hub else None, folder=args.output_dir,
                placeholder_token=args.placeholder_token,
                initializer_token=args.initializer_token, num_vectors=args.num_vectors,
                learnable_property=args.learnable_property, subject_column=args.subject_column,
                validation_prompt=args.validation_prompt,
                steps=run.global_step,
            )
    run.end()


if __name__ == "__main__":
    main(sys.argv[1:])
