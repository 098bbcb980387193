"""Command-line flags shared by every training script.

Flag names and meanings follow the diffusers example scripts (``train_dreambooth.py``, ``train_text_to_image_lora.py``,
``textual_inversion.py``) wherever the meaning is the same, so a command written for them runs here. Each group is a
function so a script takes only the groups it needs; ``training_parser`` bundles the ones every script uses.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence

from ..checks import check_number
from .checkpointing import resolve_checkpoint

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
MIXED_PRECISION = ("no", "fp16", "bf16")


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an int within the bounds; otherwise argparse's error, which names the flag."""
    return _bounded(int, minimum=minimum, maximum=maximum)


def real(minimum: float | None = None, maximum: float | None = None, below: float | None = None) -> Callable[[str], float]:
    """An argparse ``type``: a finite number within the bounds (``below``: strictly less than)."""
    return _bounded(float, minimum=minimum, maximum=maximum, below=below)


def _bounded(kind: type, **bounds) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        try:
            check_number("the value", value, integer=kind is int, **bounds)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix("the value ")) from None
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


COUNT, STEPS = integer(minimum=1), integer(minimum=0)


def add_optimization_args(parser: argparse.ArgumentParser, learning_rate: float = 5e-6) -> None:
    group = parser.add_argument_group("optimization")
    group.add_argument("--train_batch_size", type=COUNT, default=4, help="Batch size per device.")
    group.add_argument("--num_train_epochs", type=COUNT, default=1)
    group.add_argument("--max_train_steps", type=COUNT, default=None, help="Overrides --num_train_epochs when set.")
    group.add_argument("--gradient_accumulation_steps", type=COUNT, default=1)
    group.add_argument("--gradient_checkpointing", action="store_true")
    group.add_argument("--learning_rate", type=real(minimum=0), default=learning_rate)
    group.add_argument(
        "--scale_lr", action="store_true", help="Multiply the learning rate by batch size x accumulation x processes."
    )
    group.add_argument("--lr_scheduler", default="constant", choices=LR_SCHEDULERS)
    group.add_argument("--lr_warmup_steps", type=STEPS, default=0)
    group.add_argument("--lr_num_cycles", type=COUNT, default=1, help="Hard restarts for cosine_with_restarts.")
    group.add_argument("--lr_power", type=real(minimum=0), default=1.0, help="Power of the polynomial scheduler.")
    group.add_argument("--adam_beta1", type=real(minimum=0, below=1), default=0.9)
    group.add_argument("--adam_beta2", type=real(minimum=0, below=1), default=0.999)
    group.add_argument("--adam_weight_decay", type=real(minimum=0), default=1e-2)
    group.add_argument("--adam_epsilon", type=real(minimum=0), default=1e-8)
    group.add_argument("--max_grad_norm", type=real(minimum=0), default=1.0, help="Gradient clipping; 0 disables it.")
    group.add_argument("--mixed_precision", default=None, choices=MIXED_PRECISION,
                       help="Overrides the accelerate config. Frozen weights use this dtype, trainable ones fp32.")
    group.add_argument("--allow_tf32", action="store_true")
    group.add_argument("--dataloader_num_workers", type=STEPS, default=0)
    group.add_argument("--use_ema", action="store_true", help="Keep an exponential moving average of the weights.")
    group.add_argument("--ema_decay", type=real(minimum=0, below=1), default=0.9999)


def add_checkpointing_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output and checkpoints")
    group.add_argument("--output_dir", required=True)
    group.add_argument("--seed", type=integer(minimum=0, maximum=2**32 - 1), default=None)
    group.add_argument("--checkpointing_steps", type=STEPS, default=500,
                       help="Save the full training state every N optimizer steps (0 disables).")
    group.add_argument("--checkpoints_total_limit", type=COUNT, default=None, help="Keep at most this many checkpoints.")
    group.add_argument("--resume_from_checkpoint", default=None,
                       help='A checkpoint folder, or "latest" for the newest one in --output_dir.')
    group.add_argument("--allow_inexact_resume", action="store_true",
                       help="Resume even when the checkpoint's RNG state is missing or unreadable (with a warning): "
                            "the run goes on, but no longer exactly as an uninterrupted one would.")
    group.add_argument("--logging_dir", default="logs", help="Relative to --output_dir.")
    group.add_argument("--report_to", default="none",
                       help='"tensorboard", "wandb", "all" or "none" (accelerate trackers).')


def add_validation_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("validation")
    group.add_argument("--validation_prompt", default=None)
    group.add_argument("--num_validation_images", type=STEPS, default=4)
    group.add_argument("--validation_steps", type=STEPS, default=100,
                       help="Validation images every N optimizer steps; 0: only the final ones.")
    group.add_argument("--num_inference_steps", type=COUNT, default=25, help="Sampling steps of validation images; ADM-family scripts also record it as the saved pipeline's "
                       "default_num_inference_steps.")
    group.add_argument("--guidance_scale", type=real(), default=7.5, help="Guidance of validation images.")


def add_hub_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Hugging Face Hub")
    group.add_argument("--push_to_hub", action="store_true", help="Upload --output_dir (no checkpoints) at the end.")
    group.add_argument("--hub_model_id", default=None, help="Repository id; default: the name of --output_dir.")
    group.add_argument("--hub_token", default=None)


def add_diffusion_loss_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("diffusion loss")
    group.add_argument("--snr_gamma", type=real(minimum=0), default=None,
                       help="Min-SNR-gamma loss weighting (Hang et al. 2023); 5.0 is the recommended value.")
    group.add_argument("--noise_offset", type=real(minimum=0), default=0.0, help="Scale of per-channel offset noise.")
    group.add_argument("--prediction_type", default=None, choices=("epsilon", "v_prediction"),
                       help="Overrides the base scheduler's prediction type.")


def training_parser(description: str, learning_rate: float = 5e-6) -> argparse.ArgumentParser:
    """A parser with the groups every training script shares; scripts add their own model and data flags."""
    parser = argparse.ArgumentParser(description=description)
    add_optimization_args(parser, learning_rate=learning_rate)
    add_checkpointing_args(parser)
    add_validation_args(parser)
    add_hub_args(parser)
    return parser


def parse_training_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and check the shared flags, so bad values fail before any model is loaded."""
    args = parser.parse_args(argv)
    # the shared flags carry their bounds in their types; a script's own plain float flags must at least be finite
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.type is float and isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{action.option_strings[0]} must be finite, got {value}")
    # resolved now so that a wrong path fails before any model is loaded; None for "latest" with no checkpoint yet
    args.resume_from_checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    return args
