"""Train one super-resolution stage of a cascade (Ho et al. 2021) with conditioning augmentation.

    accelerate launch training/train_super_resolution.py --output_dir out/sr-8-32 --low_resolution 8 --resolution 32 \\
        --noise_augmentation_probability 0.5 --max_train_steps 2000 --train_batch_size 32 --learning_rate 2e-4

Data: aligned glyph pairs by default (``load_glyphs(resolutions=(low, high))``: both sizes from one master render),
or ``--train_data_dir``, an image folder whose images are resized to ``--resolution`` and downsampled (Lanczos,
antialiased) to ``--low_resolution``. Model: ``SuperResolutionUNet2DModel`` (the ADM U-Net with the upsampled low-res
image concatenated, the augmentation level embedded), class-conditional on the glyph character unless
``--unconditional``, shaped by the network flags of every ADM script (``train_adm.py``'s names and meanings;
``--attention_resolutions`` lists sides of the high-resolution ``--resolution`` feature maps, as guided-diffusion's
``--large_size``). Loss: L_simple on ε, plus the VLB term for the learned Σ (``--variance_type``, ``--loss_type``,
improved DDPM), timesteps from ``--schedule_sampler``.

Conditioning augmentation (§4.1–4.2), per example: blur with probability ``--blur_probability`` (σ ~ U[min, max],
k×k kernel), then Gaussian noise z_s ~ q(z_s | z_0) with probability ``--noise_augmentation_probability``, s uniform in
{0 … ``--max_noise_level`` − 1}, s fed to the network (0 for unaugmented examples). The same training serves both
truncated and non-truncated sampling. Output: a ``SuperResolutionPipeline`` folder (EMA weights with ``--use_ema``),
loadable with ``DiffusionPipeline.from_pretrained(output_dir, trust_remote_code=True)``, and its model card.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from diffusion_canon.data.glyphs import CHARACTERS, load_glyphs
from diffusion_canon.models.sr_unet import SuperResolutionUNet2DModel
from diffusion_canon.pipelines.hub import save_pipeline_folder
from diffusion_canon.pipelines.pipeline_super_resolution import SuperResolutionPipeline
from diffusion_canon.augmentation import ConditioningAugmentation
from diffusion_canon.training import TrainingRun, parse_training_args, training_parser, write_model_card
from diffusion_canon.training.adm_args import (
    add_adm_network_args, add_diffusion_args, add_objective_args, check_network_args, diffusion_scheduler,
    network_kwargs,
)
from diffusion_canon.training.arguments import COUNT
from diffusion_canon.training.losses import training_losses
from diffusion_canon.training.timestep_samplers import LossAwareSampler, UniformSampler, checkpointed_schedule_sampler


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=2e-4)
    data = parser.add_argument_group("data (default: aligned glyph pairs)")
    data.add_argument("--train_data_dir", default=None, help="An image folder instead of the glyph world.")
    data.add_argument("--resolution", type=COUNT, default=32,
                      help="High-resolution side (the stage's output; the reference's --large_size).")
    data.add_argument("--low_resolution", type=COUNT, default=8,
                      help="Low-resolution side (the conditioning; the reference's --small_size).")
    data.add_argument("--num_images", type=int, default=5000, help="Glyph world: renders of split='train'.")
    data.add_argument("--characters", default="".join(CHARACTERS), help="Glyph world: the classes.")
    data.add_argument("--data_seed", type=int, default=0)
    # the ADM scripts' flags; --attention_resolutions are sides of the high-resolution (--resolution) feature maps
    add_diffusion_args(parser)
    add_objective_args(parser, variance_type="learned_range")
    add_adm_network_args(parser, model_channels=32, num_res_blocks=1, dropout=0.0, attention_resolutions=(),
                         num_head_channels=None)
    model = parser.add_argument_group("super-resolution conditioning")
    model.add_argument("--unconditional", action="store_true", help="No class conditioning.")
    model.add_argument("--no_augmentation_level_embedding", action="store_true")
    augmentation = parser.add_argument_group("conditioning augmentation")
    augmentation.add_argument("--noise_augmentation_probability", type=float, default=0.0)
    augmentation.add_argument("--max_noise_level", type=int, default=None, help="Default: --num_train_timesteps.")
    augmentation.add_argument("--blur_probability", type=float, default=0.0)
    augmentation.add_argument("--blur_sigma_min", type=float, default=0.4)
    augmentation.add_argument("--blur_sigma_max", type=float, default=0.6)
    augmentation.add_argument("--blur_kernel_size", type=int, default=3)
    args = parse_training_args(parser, argv)
    if args.low_resolution < 1 or args.resolution <= args.low_resolution:
        raise ValueError(f"--low_resolution ({args.low_resolution}) must be >= 1 and below --resolution ({args.resolution})")
    check_network_args(parser, args)  # bad network flags fail now, as argparse errors
    args.augmentation = ConditioningAugmentation(
        noise_probability=args.noise_augmentation_probability,
        max_noise_level=args.max_noise_level or args.num_train_timesteps,
        blur_probability=args.blur_probability,
        blur_sigma=(args.blur_sigma_min, args.blur_sigma_max),
        blur_kernel_size=args.blur_kernel_size,
    )
    if args.augmentation.max_noise_level > args.num_train_timesteps:
        raise ValueError(f"--max_noise_level {args.max_noise_level} exceeds --num_train_timesteps {args.num_train_timesteps}")
    return args


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL → ``[3, H, W]`` float in [−1, 1]."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)


class ImagePairs(torch.utils.data.Dataset):
    """``{"high": [3, H, W], "low": [3, h, w], "class_labels": int64}`` in [−1, 1], decoded once (small data)."""

    def __init__(self, high: Sequence[Image.Image], low: Sequence[Image.Image], labels: Sequence[int]):
        self.high = torch.stack([to_tensor(image) for image in high])
        self.low = torch.stack([to_tensor(image) for image in low])
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"high": self.high[i], "low": self.low[i], "class_labels": self.labels[i]}


def load_pairs(args: argparse.Namespace, split: str = "train", num_images: int | None = None) -> tuple[ImagePairs, list[str] | None]:
    """Aligned (high, low) pairs and the class names (``None`` for an image folder)."""
    if args.train_data_dir:
        import datasets

        folder = datasets.load_dataset("imagefolder", data_dir=args.train_data_dir, split="train")
        size, low = (args.resolution,) * 2, (args.low_resolution,) * 2
        high = [image.convert("RGB").resize(size, Image.Resampling.LANCZOS) for image in folder["image"]]
        return ImagePairs(high, [image.resize(low, Image.Resampling.LANCZOS) for image in high], [0] * len(high)), None
    unknown = sorted(set(args.characters) - set(CHARACTERS))
    if unknown or not args.characters:
        raise ValueError(f"--characters {args.characters!r}: unknown {unknown}; allowed: {''.join(CHARACTERS)}")
    glyphs = load_glyphs(seed=args.data_seed, split=split, characters=args.characters,
                         num_images=num_images or args.num_images, resolutions=(args.low_resolution, args.resolution))
    names = list(CHARACTERS)
    return ImagePairs(glyphs[f"image_{args.resolution}"], glyphs[f"image_{args.low_resolution}"], glyphs["label"]), names


def build_unet(args: argparse.Namespace, class_names: list[str] | None) -> SuperResolutionUNet2DModel:
    """The stage's U-Net from the flags (class-conditional on ``class_names`` when given); 2C outputs when Σ is
    learned."""
    return SuperResolutionUNet2DModel(
        low_res_sample_size=args.low_resolution, out_channels=6 if args.variance_type.startswith("learned") else 3,
        num_classes=len(class_names) if class_names else None, class_names=class_names,
        augmentation_level_embedding=not args.no_augmentation_level_embedding, **network_kwargs(args),
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run = TrainingRun(args, "super-resolution")
    pairs, class_names = load_pairs(args)
    conditional = class_names is not None and not args.unconditional
    unet = build_unet(args, class_names if conditional else None)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    scheduler = diffusion_scheduler(args, args.variance_type)
    sampler = checkpointed_schedule_sampler(run, args.schedule_sampler, scheduler)
    run.trainable(unet.parameters())
    dataloader = run.dataloader(pairs)
    model = run.prepare(unet)

    if args.num_validation_images:  # else no validation images, as in train_adm.py
        validation = load_pairs(args, split="validation", num_images=args.num_validation_images)[0] if not args.train_data_dir else pairs
        low_res = (validation.low[: args.num_validation_images] + 1) / 2
        labels = validation.labels[: args.num_validation_images] if conditional else None

        def validate() -> list[Image.Image]:
            pipe = SuperResolutionPipeline(run.unwrap(model), scheduler)
            pipe.set_progress_bar_config(disable=True)
            return pipe(low_res, class_labels=labels, num_inference_steps=args.num_inference_steps,
                        generator=torch.Generator().manual_seed(0)).images

        run.validation = validate

    for batch in run.batches(dataloader):
        with run.accumulate(model):
            x0, labels_batch = batch["high"], batch["class_labels"] if conditional else None
            conditioning, levels = args.augmentation(batch["low"], scheduler)
            noise = torch.randn_like(x0)
            if isinstance(sampler, UniformSampler):  # uniform t, drawn as before the sampler flag (same runs)
                t, weights = torch.randint(0, args.num_train_timesteps, (len(x0),), device=x0.device), 1.0
            else:
                t, weights = sampler.sample(len(x0), x0.device)
            x_t = scheduler.add_noise(x0, noise, t)
            output = model(x_t, scheduler.model_timestep(t), conditioning, levels, labels_batch).sample.float()
            terms = training_losses(scheduler, output, x0, x_t, noise, t, loss_type=args.loss_type)
            if isinstance(sampler, LossAwareSampler):
                sampler.update_with_local_losses(t, terms["loss"].detach())
            run.backward((terms["loss"] * weights).mean())

    images = run.final_validation()  # copies the EMA weights into the model
    if run.is_main_process:
        with run.final_output() as output_dir:  # beside --output_dir, swapped in whole at the end
            unet = run.unwrap(model).eval()
            pipe = SuperResolutionPipeline(unet.half() if args.save_fp16 else unet, scheduler,
                                           default_num_inference_steps=args.num_inference_steps)
            save_pipeline_folder(pipe, output_dir)
            write_model_card(
                output_dir, "super_resolution", base_model=None, tags=["super-resolution", "cascaded-diffusion"],
                images=images, repo_id=args.hub_model_id if args.push_to_hub else None, folder=args.output_dir,
                steps=run.global_step,
                low_resolution=args.low_resolution, resolution=args.resolution, augmentation=args.augmentation,
                data=args.train_data_dir or f"glyph world, {len(pairs)} aligned pairs", command=" ".join(sys.argv[1:] if argv is None else argv),
            )
    run.end()


if __name__ == "__main__":
    main(sys.argv[1:])
