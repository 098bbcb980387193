"""Train a class-conditional ADM U-Net (Nichol & Dhariwal 2021; Dhariwal & Nichol 2021) from scratch.

The objective is improved DDPM's: with ``--variance_type learned_range`` the network outputs ε and the interpolation v
of Σ_θ = exp(v log β_t + (1 − v) log β̃_t), trained with the hybrid loss L_simple + λ L_vlb (λ = 0.001, the VLB
through Σ only; ``--loss_type rescaled_mse``); a fixed variance gives Ho et al.'s L_simple. Timesteps are uniform or
importance-sampled by √E[L_t²] (``--schedule_sampler loss-second-moment``, ND §3.3; its loss history is part of every
checkpoint). ``--class_dropout p`` replaces the label by the null class (index K) with probability p, so the model
also supports classifier-free guidance (Ho & Salimans 2021).

    accelerate launch training/train_adm.py --output_dir out/adm-glyphs --characters 0123456789 \\
        --model_channels 64 --channel_mult 1,2,2 --attention_resolutions 16,8 --max_train_steps 20000 \\
        --train_batch_size 64 --learning_rate 1e-4 --use_ema --class_dropout 0.1

Data: the glyph world by default, or ``--train_data_dir`` (one sub-folder per class) or ``--dataset_name`` with
``--image_column`` / ``--label_column``; ``--unconditional`` ignores labels. Output: an ``ADMPipeline`` folder (U-Net
with EMA weights when ``--use_ema``, scheduler) loadable with ``ADMPipeline.from_pretrained(output_dir)`` or
``DiffusionPipeline.from_pretrained(output_dir, trust_remote_code=True)``, and its model card.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from diffusion_canon.data.labeled_images import LabeledImages, class_labels, load_labeled_images
from diffusion_canon.data.image_transform import ImageTransform
from diffusion_canon.models import ADMUNet2DModel
from diffusion_canon.pipelines import ADMPipeline, save_pipeline_folder
from diffusion_canon.schedulers import ImprovedDDPMScheduler
from diffusion_canon.training import TrainingRun, image_grid, parse_training_args, training_parser, write_model_card
from diffusion_canon.training.adm_args import (
    add_adm_network_args, add_diffusion_args, add_objective_args, check_network_args, diffusion_scheduler,
    network_kwargs,
)
from diffusion_canon.training.labeled_image_args import add_labeled_image_args, labeled_image_options
from diffusion_canon.training.losses import training_losses
from diffusion_canon.training.timestep_samplers import LossAwareSampler, checkpointed_schedule_sampler
from diffusion_canon.training.validation import class_validation_samples


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=1e-4)
    add_labeled_image_args(parser)
    add_diffusion_args(parser)
    add_objective_args(parser, variance_type="learned_range")
    add_adm_network_args(parser, model_channels=64, num_res_blocks=2, dropout=0.1)
    group = parser.add_argument_group("class conditioning")
    group.add_argument("--unconditional", action="store_true", help="Ignore labels: an unconditional model.")
    group.add_argument("--class_dropout", type=float, default=0.0,
                       help="Label dropout p for classifier-free guidance (0.1 is common); >0 adds a null class.")
    args = parse_training_args(parser, argv)
    if not 0.0 <= args.class_dropout < 1.0:
        raise ValueError(f"--class_dropout must lie in [0, 1), got {args.class_dropout}")
    if args.unconditional and args.class_dropout:
        raise ValueError(f"--class_dropout {args.class_dropout} needs labels; it cannot go with --unconditional")
    check_network_args(parser, args)  # bad network flags fail now, as argparse errors
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)

    # Data: images in [-1, 1] and contiguous class indices (bad columns fail before any model is built).
    dataset = load_labeled_images(**labeled_image_options(args))
    labels, names = ([0] * len(dataset), None) if args.unconditional else class_labels(dataset, args.label_column)
    images = LabeledImages(dataset, args.image_column, labels, ImageTransform(args.resolution, True, args.random_flip))
    run = TrainingRun(args, "adm")

    # Model: the ADM U-Net; 2C outputs when Σ is learned; a null-class row when labels are dropped.
    learned = args.variance_type.startswith("learned")
    unet = ADMUNet2DModel(
        out_channels=6 if learned else 3, num_classes=None if args.unconditional else len(names),
        null_class_embedding=args.class_dropout > 0, class_names=names, **network_kwargs(args),
    )
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    scheduler = diffusion_scheduler(args, args.variance_type)
    sampler = checkpointed_schedule_sampler(run, args.schedule_sampler, scheduler)

    # Optimizer, LR schedule, EMA, resume: the core.
    run.trainable(unet.parameters())
    dataloader = run.dataloader(images)
    unet = run.prepare(unet)
    model = run.unwrap(unet)
    if args.num_validation_images:
        run.validation = lambda: sample_grid(model, scheduler, None if args.unconditional else len(names), args)

    for batch in run.batches(dataloader):
        with run.accumulate(unet):
            x_start = batch["pixel_values"]
            timesteps, weights = sampler.sample(len(x_start), x_start.device)
            noise = torch.randn_like(x_start)
            x_t = scheduler.add_noise(x_start, noise, timesteps)
            y = None if args.unconditional else batch["class_labels"]
            if args.class_dropout:  # the null class K stands for "no label"
                y = torch.where(torch.rand(len(y), device=y.device) < args.class_dropout, len(names), y)
            output = unet(x_t, scheduler.model_timestep(timesteps), y).sample.float()
            terms = training_losses(scheduler, output, x_start, x_t, noise, timesteps, args.loss_type)
            if isinstance(sampler, LossAwareSampler):
                sampler.update_with_local_losses(timesteps, terms["loss"].detach())
            run.backward((terms["loss"] * weights).mean())

    images = run.final_validation()  # copies the EMA weights into the U-Net
    if run.is_main_process:
        with run.final_output() as output_dir:  # beside --output_dir, swapped in whole at the end
            model = run.unwrap(unet).eval()
            pipe = ADMPipeline(unet=model.half() if args.save_fp16 else model, scheduler=scheduler,
                               default_num_inference_steps=args.num_inference_steps)
            save_pipeline_folder(pipe, output_dir)
            write_model_card(
                output_dir, "adm_training", base_model=None, tags=["adm", "class-conditional", "image-generation"],
                images=[image_grid(images, columns=min(len(images), 10))] if images else [],
                repo_id=args.hub_model_id if args.push_to_hub else None, folder=args.output_dir,
                steps=run.global_step, args=args,
                config=dict(model.config), parameters=sum(p.numel() for p in model.parameters()), class_names=names,
                data=data_description(args, len(dataset)),
            )
    run.end()


def sample_grid(unet: ADMUNet2DModel, scheduler: ImprovedDDPMScheduler, num_classes: int | None,
                args: argparse.Namespace) -> list:
    """``--num_validation_images`` samples (classes 0, 1, … in turn) at ``--num_inference_steps`` respaced steps."""
    return class_validation_samples(ADMPipeline(unet=unet, scheduler=scheduler), args.num_validation_images,
                                    args.seed, num_inference_steps=args.num_inference_steps)


def data_description(args: argparse.Namespace, size: int) -> str:
    if args.train_data_dir:
        return f"the image folder `{args.train_data_dir}` ({size} images)"
    if args.dataset_name:
        return f"the dataset `{args.dataset_name}` ({size} images)"
    return (f"the glyph world, `load_glyphs({args.resolution}, seed={args.data_seed}, split='train', "
            f"characters={args.characters!r}, colors={args.colors!r}, backgrounds={args.backgrounds!r}, "
            f"num_images={size})`")


if __name__ == "__main__":
    main(sys.argv[1:])
