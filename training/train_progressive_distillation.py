"""Progressive distillation (Salimans & Ho 2022, Algorithm 2): a student learns to take in one sampling step what its
teacher takes in two, then becomes the teacher of the next round, halving the number of steps each round.

Round r distils a teacher sampled with 2N steps into a student of N = ``--teacher_steps`` / 2^(r+1) steps on the
N + 1 noise levels σ_0 = σ_max > … > σ_N = σ_min. Each training step draws data x₀, a level n < N and ε, sets
x = x₀ + σ_n ε, takes the teacher's two Euler steps σ_n → σ_{n+½} → σ_{n+1} (in the VP form z = x/√(1 + σ²) these
are DDIM steps), and pulls the student's x̂₀ = D(x; σ_n) towards the x̃ that one step from σ_n would need to land
there, weighted by λ(σ_n) (``--weight_schedule``, the paper's truncated SNR max(1/σ², 1) by default). The student of
round 0 starts as the teacher; every round's student starts where the last one ended.

Two grids, one objective:

* ``--grid timesteps`` (a VP teacher; Algorithm 2): levels evenly spaced over the teacher's training timesteps — the
  paper's t = i/N; the student keeps the teacher's VP parameterisation, or predicts x₀ or v
  (``--prediction_type sample`` / ``v_prediction``);
* ``--grid karras`` (openai/consistency_models' ``progdist_losses``, whose loss this equals): Karras et al.'s ρ-spaced
  levels on the teacher's σ range, an EDM teacher's preconditioning or a VP teacher's.

    accelerate launch training/train_progressive_distillation.py --teacher_model_path pipelines/adm-glyphs-32 \\
        --output_dir out/pd-glyphs --characters 0123456789 --colors black --backgrounds white \\
        --teacher_steps 16 --student_steps 1 --steps_per_round 500

Output: one ``EDMPipeline`` folder per round under ``--output_dir`` (``steps-8``, ``steps-4``, …), written as the
round ends, each sampled with ``pipe(class_labels=..., num_inference_steps=N)`` (sampler ``progdist``, exactly N
steps) and its model card. Resume is exact: the round's teacher is part of every checkpoint. Adam's moments and the
learning-rate schedule run on across rounds; ``--use_ema`` is not offered (each round's student starts afresh).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from diffusion_canon.data.image_transform import ImageTransform
from diffusion_canon.data.labeled_images import LabeledImages, class_labels, load_labeled_images
from diffusion_canon.pipelines import EDMPipeline, save_pipeline_folder
from diffusion_canon.schedulers import KarrasDiffusionScheduler, ProgressiveDistillationScheduler
from diffusion_canon.schedulers.scheduling_karras import VP_PREDICTION_TYPES
from diffusion_canon.training import TrainingRun, image_grid, parse_training_args, training_parser, write_model_card
from diffusion_canon.training.arguments import COUNT
from diffusion_canon.training.atomic_folder import staged_folder
from diffusion_canon.training.karras_losses import WEIGHT_SCHEDULES, progressive_distillation_loss
from diffusion_canon.training.labeled_image_args import add_labeled_image_args, labeled_image_options
from diffusion_canon.training.teachers import load_teacher
from diffusion_canon.training.validation import class_validation_samples


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = training_parser(__doc__.split("\n\n")[0], learning_rate=5e-5)
    add_labeled_image_args(parser)
    group = parser.add_argument_group("progressive distillation")
    group.add_argument("--teacher_model_path", required=True, help="An ADMPipeline (VP) or EDMPipeline folder.")
    group.add_argument("--teacher_steps", type=COUNT, default=1024,
                       help="The teacher's step count in the first round (the paper's 1024 for a VP teacher).")
    group.add_argument("--student_steps", type=COUNT, default=1, help="The last round's student's step count.")
    group.add_argument("--steps_per_round", type=COUNT, required=True, help="Optimizer updates per round.")
    group.add_argument("--grid", choices=("timesteps", "karras"),
                       help="The levels: evenly spaced VP timesteps (Algorithm 2) or Karras' (the reference's "
                            "progdist_losses). Default: timesteps for a VP teacher, karras for an EDM teacher.")
    group.add_argument("--prediction_type", choices=VP_PREDICTION_TYPES,
                       help="A VP student's output: ε, v or x₀ ('sample'). Default: the teacher's.")
    group.add_argument("--weight_schedule", default="truncated-snr", choices=WEIGHT_SCHEDULES,
                       help="λ(σ) with SNR = 1/σ²: truncated-snr is the paper's max(SNR, 1).")
    group.add_argument("--loss_norm", default="l2", choices=("l2", "l1"), help="The distance (the reference's l2 / l1).")
    group.add_argument("--save_fp16", action="store_true", help="Store each round's student in float16.")
    args = parse_training_args(parser, argv)
    rounds = args.teacher_steps // args.student_steps
    if args.teacher_steps % args.student_steps or rounds < 2 or rounds & (rounds - 1):
        parser.error(f"--teacher_steps {args.teacher_steps} must be --student_steps {args.student_steps} times a power "
                     f"of 2 (at least 2): each round halves the steps")
    args.num_rounds = rounds.bit_length() - 1
    total = args.num_rounds * args.steps_per_round
    if args.max_train_steps not in (None, total):
        parser.error(f"--max_train_steps {args.max_train_steps} disagrees with {args.num_rounds} rounds of "
                     f"--steps_per_round {args.steps_per_round} ({total}); leave it out")
    args.max_train_steps = total
    if args.use_ema:
        parser.error("--use_ema is not offered: every round's student starts from the last round's weights")
    return args


def student_denoiser(teacher: KarrasDiffusionScheduler, grid: str | None,
                     prediction_type: str | None) -> ProgressiveDistillationScheduler:
    """The student's preconditioning and levels: the teacher's, on ``grid``, with a VP student's ``prediction_type``."""
    # (without diffusers' record of which values were defaults: from_config would reset those it lists)
    config = {key: value for key, value in teacher.config.items() if key != "_use_default_values"}
    vp = config["vp_alphas_cumprod"] is not None
    if config["boundary_condition"]:
        raise ValueError("--teacher_model_path is a consistency model: progressive distillation needs a diffusion "
                         "teacher (an ADMPipeline or EDMPipeline folder of a denoiser)")
    if prediction_type is not None and not vp:
        raise ValueError(f"--prediction_type {prediction_type} is for a VP teacher; an EDM student has the teacher's "
                         "preconditioning")
    config["spacing"] = grid or ("timesteps" if vp else "karras")
    if vp:  # x̂₀ clamped to [−1, 1] at every sampling step, as the teacher's DDIM sampling clips it
        config["clip_denoised"] = True
        config["vp_prediction_type"] = prediction_type or config["vp_prediction_type"]
    return ProgressiveDistillationScheduler.from_config(config)


class RoundTeacher(torch.nn.Module):
    """The current round's teacher network and the round it teaches; registered with the run, so a checkpoint taken
    mid-round resumes with the same teacher."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = copy.deepcopy(network).requires_grad_(False).eval()
        self.register_buffer("round", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def advance(self, student: torch.nn.Module) -> None:
        """The student becomes the next round's teacher."""
        self.network.load_state_dict(student.state_dict())
        self.round += 1


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    dataset = load_labeled_images(**labeled_image_options(args))
    labels, names = class_labels(dataset, args.label_column)
    images = LabeledImages(dataset, args.image_column, labels, ImageTransform(args.resolution, True, args.random_flip))
    run = TrainingRun(args, "progressive_distillation")

    teacher_unet, first_teacher_denoiser = load_teacher(args.teacher_model_path, names)
    denoiser = student_denoiser(first_teacher_denoiser, args.grid, args.prediction_type)
    unet = teacher_unet.to(run.device, torch.float32).requires_grad_(True)
    teacher = RoundTeacher(unet).to(run.device)
    run.accelerator.register_for_checkpointing(teacher)

    run.trainable(unet.parameters())
    dataloader = run.dataloader(images)
    unet = run.prepare(unet)
    model = run.unwrap(unet)
    steps_of = lambda r: args.teacher_steps >> (r + 1)  # noqa: E731 (the student's N in round r)
    if args.num_validation_images:
        run.validation = lambda: sample_grid(model, denoiser, steps_of(int(teacher.round)), args)

    def save_student(r: int) -> None:
        """Write round r's student (the current weights) as ``--output_dir/steps-N``."""
        if run.is_main_process:
            n = steps_of(r)
            target = Path(args.output_dir) / f"steps-{n}"
            student = copy.deepcopy(model).eval()
            with staged_folder(target) as folder:
                pipe = EDMPipeline(student.half() if args.save_fp16 else student, denoiser, distilled_steps=n)
                save_pipeline_folder(pipe, folder)
                grid = sample_grid(model, denoiser, n, args) if args.num_validation_images else []
                write_model_card(
                    str(folder), "progressive_distillation", base_model=args.teacher_model_path,
                    tags=["progressive-distillation"], images=[image_grid(grid, columns=min(len(grid), 10))] if grid else [],
                    repo_id=None, folder=str(target), steps=run.global_step, round=r, distilled_steps=n, args=args,
                    spacing=denoiser.config.spacing, config=dict(model.config),
                    parameters=sum(p.numel() for p in model.parameters()))
        run.accelerator.wait_for_everyone()

    for batch in run.batches(dataloader):
        if run.global_step // args.steps_per_round != int(teacher.round):  # a round is over
            save_student(int(teacher.round))
            teacher.advance(model)
        with run.accumulate(unet):
            x_start, y = batch["pixel_values"], batch["class_labels"]
            if model.config.num_classes is None:
                y = None
            # round 0's teacher is the folder's model; later ones are students, with the student's preconditioning
            teacher_denoiser = first_teacher_denoiser if int(teacher.round) == 0 else denoiser
            terms = progressive_distillation_loss(
                lambda x, t: unet(x, t, y).sample.float(), denoiser,
                lambda x, t: teacher.network(x, t, y).sample.float(), teacher_denoiser,
                x_start, steps_of(int(teacher.round)), args.weight_schedule, args.loss_norm)
            run.backward(terms["loss"].mean())

    if run.global_step >= run.max_train_steps:  # the last round is over
        save_student(int(teacher.round))
    run.end()


def sample_grid(unet, denoiser: ProgressiveDistillationScheduler, steps: int, args: argparse.Namespace) -> list:
    """``--num_validation_images`` samples of the student at its N steps (classes 0, 1, … in turn)."""
    pipe = EDMPipeline(unet, denoiser, distilled_steps=steps)
    return class_validation_samples(pipe, args.num_validation_images, args.seed)


if __name__ == "__main__":
    main(sys.argv[1:])
