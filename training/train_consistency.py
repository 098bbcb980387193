"""Train a consistency model (Song et al. 2023) by consistency distillation from a teacher, or by consistency training.

Each step draws a level n of an N(k)-point Karras grid and data x₀, noises x₀ to σ_n, takes one ODE step down to
σ_{n+1} — a Heun step of the teacher's denoiser (``--training_mode consistency_distillation``) or an Euler step with
x₀ as the denoiser (``consistency_training``) — and pulls f_θ(x_{σ_n}, σ_n) towards f_θ⁻(x̂_{σ_{n+1}}, σ_{n+1}) of the
target network θ⁻, an EMA of θ at rate μ(k); N(k) and μ(k) follow ``--scale_mode`` / ``--target_ema_mode``
(:mod:`diffusion_canon.training.consistency_schedules`), the distance ``--loss_norm`` (l2, l1, l2-32, iCT's
pseudo-Huber; LPIPS needs pretrained weights that cannot be had offline), the weighting ``--weight_schedule``; iCT's
improvements are options (``--scale_mode ict``, ``--index_distribution lognormal``, ``--loss_norm pseudo-huber``,
``--weight_schedule ict``). The losses equal the
reference's ``consistency_losses`` (openai/consistency_models). The student has the boundary-condition
preconditioning, so f_θ(x, σ_min) = x.

    accelerate launch training/train_consistency.py --teacher_model_path pipelines/adm-glyphs-32 \\
        --output_dir out/cd-glyphs --characters 0123456789 --colors black --backgrounds white --max_train_steps 2000

Teacher: an ``ADMPipeline`` folder (a VP model, wrapped as a denoiser on σ = √((1 − ᾱ)/ᾱ)) or an ``EDMPipeline``
folder; the student starts as a copy of its U-Net (as the reference initialises it), on the teacher's σ range. A
VP teacher's student keeps the teacher's network inputs and mixes its x̂₀ with x by the boundary condition
(``--student_preconditioning teacher``, :mod:`~diffusion_canon.schedulers.scheduling_karras`), so it starts as the
teacher, as the reference's EDM students do; ``edm`` gives it the EDM preconditioning instead.
Consistency training needs no teacher but takes one's U-Net as the starting point when given, else builds one from
the network flags. Resume is exact: the target network is part of every checkpoint. Output: an ``EDMPipeline``
folder (one step by default; ``timesteps`` for multistep sampling) and its model card.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence

import torch

from diffusion_canon.data.image_transform import ImageTransform
from diffusion_canon.data.labeled_images import LabeledImages, class_labels, load_labeled_images
from diffusion_canon.models import ADMUNet2DModel
from diffusion_canon.pipelines import EDMPipeline, save_pipeline_folder
from diffusion_canon.schedulers import ConsistencyScheduler
from diffusion_canon.training import TrainingRun, image_grid, parse_training_args, training_parser, write_model_card
from diffusion_canon.training.adm_args import add_adm_network_args, check_network_args, network_kwargs
from diffusion_canon.training.arguments import COUNT, real
from diffusion_canon.training.consistency_schedules import EMA_MODES, consistency_schedule
from diffusion_canon.training.karras_losses import INDEX_DISTRIBUTIONS, LOSS_NORMS, WEIGHT_SCHEDULES, consistency_loss
from diffusion_canon.training.labeled_image_args import add_labeled_image_args, labeled_image_options
from diffusion_canon.training.teachers import load_teacher
from diffusion_canon.training.validation import class_validation_samples


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=4e-5)
    add_labeled_image_args(parser)
    add_adm_network_args(parser, model_channels=64, num_res_blocks=2, dropout=0.0)
    group = parser.add_argument_group("consistency objective (the reference's cm_train.py names)")
    group.add_argument("--training_mode", default="consistency_distillation",
                       choices=("consistency_distillation", "consistency_training"))
    group.add_argument("--teacher_model_path", help="An ADMPipeline or EDMPipeline folder (needed for distillation).")
    group.add_argument("--target_ema_mode", default="fixed", choices=EMA_MODES)
    group.add_argument("--scale_mode", default="fixed", choices=("fixed", "progressive", "ict"),
                       help="N(k): fixed, the reference's progressive, or iCT's doubling curriculum.")
    group.add_argument("--start_ema", type=real(0.0, 1.0), default=0.95, help="μ₀ of the target network's EMA.")
    group.add_argument("--start_scales", type=COUNT, default=40, help="N at the start (the grid size).")
    group.add_argument("--end_scales", type=COUNT, default=40, help="N at the end (progressive scale_mode).")
    group.add_argument("--loss_norm", default="l2", choices=LOSS_NORMS)
    group.add_argument("--weight_schedule", default="uniform", choices=(*WEIGHT_SCHEDULES, "ict"),
                       help="λ(σ): the reference's weightings, or iCT's 1/(σ_n − σ_{n+1}).")
    group.add_argument("--index_distribution", default="uniform", choices=INDEX_DISTRIBUTIONS,
                       help="How the grid level is drawn: uniform (the reference) or iCT's discretised lognormal.")
    group.add_argument("--sigma_min", type=real(1e-6, 1e6), help="σ_min of the student (default: the teacher's, or 0.002).")
    group.add_argument("--sigma_max", type=real(1e-6, 1e6), help="σ_max of the student (default: the teacher's, or 80).")
    group.add_argument("--student_preconditioning", default="teacher", choices=("teacher", "edm"),
                       help="A VP teacher's student: 'teacher' keeps its network's inputs and x̂₀, mixed with x by "
                            "the boundary condition (the student starts as the teacher); 'edm': the reference's EDM "
                            "boundary-condition preconditioning. An EDM teacher's student has the EDM one either way.")
    group.add_argument("--grid_size", type=COUNT, default=40,
                       help="The saved folder's grid (the reference's --steps) for multistep sampling.")
    args = parse_training_args(parser, argv)
    if args.training_mode == "consistency_distillation" and not args.teacher_model_path:
        parser.error("--training_mode consistency_distillation needs --teacher_model_path")
    if args.start_scales < 2 or args.end_scales < 2:
        parser.error(f"--start_scales / --end_scales must be >= 2, got {args.start_scales} / {args.end_scales}")
    if not args.teacher_model_path:  # else the network is the teacher's
        check_network_args(parser, args)
    return args


class TargetNetwork(torch.nn.Module):
    """θ⁻ ← μ·θ⁻ + (1 − μ)·θ after every update; registered with the run, so checkpoints hold it."""

    def __init__(self, student: torch.nn.Module):
        super().__init__()
        self.network = copy.deepcopy(student).requires_grad_(False)

    @torch.no_grad()
    def update(self, student: torch.nn.Module, rate: float) -> None:
        for target, online in zip(self.network.parameters(), student.parameters()):
            target.mul_(rate).add_(online.detach(), alpha=1 - rate)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    dataset = load_labeled_images(**labeled_image_options(args))
    labels, names = class_labels(dataset, args.label_column)
    images = LabeledImages(dataset, args.image_column, labels, ImageTransform(args.resolution, True, args.random_flip))
    run = TrainingRun(args, "consistency")

    teacher, preconditioning = None, {}
    if args.teacher_model_path:
        teacher_unet, teacher_denoiser = load_teacher(args.teacher_model_path, names)
        teacher_unet = teacher_unet.to(run.device, torch.float32).eval().requires_grad_(False)
        unet = copy.deepcopy(teacher_unet).requires_grad_(True)
        sigma_range = teacher_denoiser.config.sigma_min, teacher_denoiser.config.sigma_max
        vp = teacher_denoiser.config.vp_alphas_cumprod is not None
        if vp and args.student_preconditioning == "teacher":  # the VP network's inputs and x̂₀ (see the docstring)
            preconditioning = {key: teacher_denoiser.config[key] for key in ("vp_alphas_cumprod", "vp_prediction_type")}
        if args.training_mode == "consistency_distillation":
            teacher = (lambda x, t, y=None: teacher_unet(x, t, y).sample.float(), teacher_denoiser)
    else:
        unet = ADMUNet2DModel(num_classes=len(names), class_names=names, **network_kwargs(args))
        sigma_range = 0.002, 80.0
    sigma_min = args.sigma_min if args.sigma_min is not None else sigma_range[0]
    sigma_max = args.sigma_max if args.sigma_max is not None else sigma_range[1]
    denoiser = ConsistencyScheduler(sigma_min=sigma_min, sigma_max=sigma_max, boundary_condition=True,
                                    **preconditioning)
    target = TargetNetwork(unet).to(run.device)
    run.accelerator.register_for_checkpointing(target)

    run.trainable(unet.parameters())
    dataloader = run.dataloader(images)
    unet = run.prepare(unet)
    model = run.unwrap(unet)
    if args.num_validation_images:
        run.validation = lambda: sample_grid(model, denoiser, args)

    for batch in run.batches(dataloader):
        with run.accumulate(unet):
            x_start, y = batch["pixel_values"], batch["class_labels"]
            if model.config.num_classes is None:
                y = None
            target_ema, num_scales = consistency_schedule(
                run.global_step, args.target_ema_mode, args.start_ema, args.scale_mode, args.start_scales,
                args.end_scales, args.max_train_steps, 1)
            terms = consistency_loss(
                lambda x, t: unet(x, t, y).sample.float(), lambda x, t: target.network(x, t, y).sample.float(),
                denoiser, x_start, num_scales,
                None if teacher is None else (lambda x, t: teacher[0](x, t, y), teacher[1]),
                args.weight_schedule, args.loss_norm, index_distribution=args.index_distribution)
            run.backward(terms["loss"].mean())
            if run.accelerator.sync_gradients:
                target.update(model, target_ema)

    images = run.final_validation()  # copies the EMA weights (--use_ema) into the U-Net
    if run.is_main_process:
        with run.final_output() as output_dir:
            student = run.unwrap(unet).eval()
            pipe = EDMPipeline(student.half() if args.save_fp16 else student, denoiser, grid_size=args.grid_size)
            save_pipeline_folder(pipe, output_dir)
            write_model_card(
                output_dir, "consistency_training", base_model=args.teacher_model_path,
                tags=["consistency-models", args.training_mode],
                images=[image_grid(images, columns=min(len(images), 10))] if images else [],
                repo_id=args.hub_model_id if args.push_to_hub else None, folder=args.output_dir,
                steps=run.global_step, args=args, config=dict(student.config),
                parameters=sum(p.numel() for p in student.parameters()),
            )
    run.end()


def sample_grid(unet: ADMUNet2DModel, denoiser: ConsistencyScheduler, args: argparse.Namespace) -> list:
    """``--num_validation_images`` one-step samples (classes 0, 1, … in turn)."""
    pipe = EDMPipeline(unet, denoiser, grid_size=args.grid_size)
    return class_validation_samples(pipe, args.num_validation_images, args.seed)


if __name__ == "__main__":
    main(sys.argv[1:])
