"""Train the noisy-image classifier p_φ(y | x_t, t) that classifier guidance differentiates (Dhariwal & Nichol
2021, §4).

The classifier sees the *noised* image x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε at a timestep t drawn uniformly (or by
``--schedule_sampler``) and is trained with cross-entropy, as guided-diffusion's ``classifier_train.py``;
``--no-noised`` trains on clean images (t = 0) instead. The diffusion q(x_t | x_0) must be the one the guided U-Net was trained on, so
``--pretrained_model_name_or_path`` takes an ADM pipeline folder: its scheduler, resolution and class names are used and
the output is that pipeline with the classifier added (``classifier/``), ready for ``pipe(..., classifier_scale=s)``.

    accelerate launch training/train_classifier.py --pretrained_model_name_or_path out/adm-glyphs \\
        --output_dir out/adm-glyphs-guided --max_train_steps 3000 --train_batch_size 64 --learning_rate 3e-4

Without ``--pretrained_model_name_or_path`` the diffusion comes from ``--num_train_timesteps`` / ``--beta_schedule`` and
the output is the classifier alone (``ADMClassifierModel.from_pretrained(output_dir)``). Either way a model card and
``classifier_eval.json`` (held-out accuracy at several t, glyph world only) are written.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from diffusion_canon.data.labeled_images import LabeledImages, class_labels, load_labeled_images
from diffusion_canon.data.image_transform import ImageTransform
from diffusion_canon.models import ADMClassifierModel
from diffusion_canon.models.adm_classifier import POOLS
from diffusion_canon.pipelines import ADMPipeline, save_pipeline_folder
from diffusion_canon.training import TrainingRun, parse_training_args, training_parser, write_model_card
from diffusion_canon.training.adm_args import (
    add_adm_network_args, add_diffusion_args, check_network_args, diffusion_scheduler, network_kwargs,
)
from diffusion_canon.training.labeled_image_args import add_labeled_image_args, labeled_image_options
from diffusion_canon.training.timestep_samplers import LossAwareSampler, checkpointed_schedule_sampler


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=3e-4)
    add_labeled_image_args(parser)
    add_diffusion_args(parser)
    add_adm_network_args(parser, model_channels=32, num_res_blocks=1, dropout=0.0)
    group = parser.add_argument_group("noisy classifier")
    group.add_argument("--pretrained_model_name_or_path", default=None,
                       help="ADM pipeline folder whose diffusion (and classes) the classifier is trained for.")
    group.add_argument("--noised", action=argparse.BooleanOptionalAction, default=True,
                       help="Train on x_t at sampled t (default, needed for guidance) or on clean images.")
    group.add_argument("--pool", default="attention", choices=POOLS)
    group.add_argument("--num_eval_images", type=int, default=500, help="Glyph world split='validation' images.")
    args = parse_training_args(parser, argv)
    if args.pretrained_model_name_or_path and not os.path.isfile(
        os.path.join(args.pretrained_model_name_or_path, "model_index.json")
    ):
        raise ValueError(f"--pretrained_model_name_or_path {args.pretrained_model_name_or_path!r} is not a pipeline "
                         "folder (no model_index.json); pass an ADM pipeline folder written by train_adm.py")
    base_config = os.path.join(args.pretrained_model_name_or_path, "unet", "config.json") if (
        args.pretrained_model_name_or_path) else None
    if base_config and os.path.isfile(base_config):
        with open(base_config) as f:  # main() trains at the guided U-Net's size: check the flags against it
            args.resolution = json.load(f).get("sample_size") or args.resolution
    check_network_args(parser, args)  # bad network flags fail now, as argparse errors
    if args.pool == "attention" and args.num_head_channels is None:
        parser.error("argument --num_head_channels: invalid value -1: --pool attention needs a fixed head width; "
                     "allowed: a positive number of channels per head")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    base_path = args.pretrained_model_name_or_path
    base = ADMPipeline.from_pretrained(base_path) if base_path else None
    if base is not None:  # the guided model's diffusion and image size, not the flags'
        args.resolution = base.unet.config.sample_size
    scheduler = base.scheduler if base is not None else diffusion_scheduler(args)

    # Data: the same classes, in the same order, as the U-Net to guide.
    dataset = load_labeled_images(**labeled_image_options(args))
    labels, names = class_labels(dataset, args.label_column)
    if base is not None and base.class_names is not None and base.class_names != names:
        raise ValueError(f"the data's classes {names} differ from the U-Net's class_names {base.class_names}")
    images = LabeledImages(dataset, args.image_column, labels, ImageTransform(args.resolution, True, args.random_flip))
    run = TrainingRun(args, "adm-classifier")

    classifier = ADMClassifierModel(num_classes=len(names), pool=args.pool, class_names=names, **network_kwargs(args))
    if args.gradient_checkpointing:
        classifier.enable_gradient_checkpointing()
    sampler = checkpointed_schedule_sampler(run, args.schedule_sampler, scheduler)
    run.trainable(classifier.parameters())
    dataloader = run.dataloader(images)
    classifier = run.prepare(classifier)

    for batch in run.batches(dataloader):
        with run.accumulate(classifier):
            x_start, y = batch["pixel_values"], batch["class_labels"]
            timesteps, weights = sampler.sample(len(x_start), x_start.device)
            if args.noised:
                x_t = scheduler.add_noise(x_start, torch.randn_like(x_start), timesteps)
            else:
                x_t, timesteps = x_start, torch.zeros_like(timesteps)
            logits = classifier(x_t, scheduler.model_timestep(timesteps)).logits.float()
            losses = F.cross_entropy(logits, y, reduction="none")
            if isinstance(sampler, LossAwareSampler):
                sampler.update_with_local_losses(timesteps, losses.detach())
            run.backward((losses * weights).mean())

    run.final_validation()  # copies the EMA weights into the classifier
    if run.is_main_process:
        with run.final_output() as output_dir:  # beside --output_dir, swapped in whole at the end
            unet_card = base_card_body(args.pretrained_model_name_or_path)
            model = run.unwrap(classifier).eval()
            metrics = evaluate(model, scheduler, args) if not (args.train_data_dir or args.dataset_name) else {}
            if base is not None:
                base.register_modules(classifier=model)
                save_pipeline_folder(base.to(torch.float16) if args.save_fp16 else base, output_dir)
                for image in glob.glob(os.path.join(args.pretrained_model_name_or_path, "image_*.png")):
                    shutil.copy(image, output_dir)
            else:
                (model.half() if args.save_fp16 else model).save_pretrained(output_dir)
            with open(os.path.join(output_dir, "classifier_eval.json"), "w") as f:
                json.dump(metrics, f, indent=2)
            write_model_card(
                output_dir, "adm_classifier", base_model=args.pretrained_model_name_or_path,
                tags=["adm", "noisy-classifier", "classifier-guidance"], steps=run.global_step, args=args,
                repo_id=args.hub_model_id if args.push_to_hub else None, folder=args.output_dir,
                config=dict(model.config), class_names=names,
                parameters=sum(p.numel() for p in model.parameters()), metrics=metrics, is_pipeline=base is not None,
                scheduler_config=dict(scheduler.config), unet_card=unet_card,
            )
    run.end()


def base_card_body(folder: str | None) -> str | None:
    """The description part of the guided U-Net's model card (no metadata header, no usage section), for the combined
    pipeline's card; the U-Net's sample grid (``image_0.png``) is copied along by ``save_pipeline_folder``'s caller."""
    path = os.path.join(folder, "README.md") if folder else None
    if path is None or not os.path.isfile(path):
        return None
    text = open(path).read()
    text = text.split("---", 2)[2] if text.startswith("---") else text
    return text.split("\n## Use it")[0].strip()


@torch.no_grad()
def evaluate(classifier: ADMClassifierModel, scheduler, args: argparse.Namespace) -> dict[str, float]:
    """Top-1 accuracy on held-out glyph renders (split="validation") noised to t ∈ {0, T/4, T/2, 3T/4}."""
    if not args.num_eval_images:
        return {}
    held_out = load_labeled_images(**{**labeled_image_options(args), "num_images": args.num_eval_images},
                                   split="validation")
    labels, names = class_labels(held_out, args.label_column)
    if names != list(classifier.config.class_names):
        return {}  # a selection too small to hold every class: no comparable number
    data = LabeledImages(held_out, args.image_column, labels, ImageTransform(args.resolution, True))
    x_start = torch.stack([data[i]["pixel_values"] for i in range(len(data))])
    y = data.labels
    generator = torch.Generator().manual_seed(0)
    metrics = {}
    quarter = scheduler.config.num_train_timesteps // 4
    for t in (0, quarter, 2 * quarter, 3 * quarter):
        timesteps = torch.full((len(x_start),), t)
        noise = torch.randn(x_start.shape, generator=generator)
        x_t = scheduler.add_noise(x_start, noise, timesteps) if args.noised else x_start
        logits = torch.cat([classifier(x_t[i : i + 256], scheduler.model_timestep(timesteps[i : i + 256])).logits
                            for i in range(0, len(x_t), 256)])
        metrics[f"accuracy_t{t}"] = float((logits.argmax(1) == y).float().mean())
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
