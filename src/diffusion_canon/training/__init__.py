"""The shared training core (every script in ``training/`` builds on it), plus losses and timestep samplers.

- `training_parser` / `parse_training_args` and the ``add_*_args`` groups: diffusers-example flag names.
- `TrainingRun`: accelerator, dtype, fp32 trainable parameters, optimizer + LR schedule, EMA, clipping, the step loop
  with exact mid-epoch resume, atomic checkpoints, validation, ``--push_to_hub``.
- `save_checkpoint`, `resolve_checkpoint`, `list_checkpoints`; `write_model_card`; `push_to_hub`; `image_grid`.
"""

from .arguments import (
    add_checkpointing_args,
    add_diffusion_loss_args,
    add_hub_args,
    add_optimization_args,
    add_validation_args,
    parse_training_args,
    training_parser,
)
from .checkpointing import TrainingProgress, list_checkpoints, resolve_checkpoint, save_checkpoint
from .hub import push_to_hub
from .model_card import write_model_card
from .run import TrainingRun, weight_dtype
from ..image_grid import image_grid  # the one grid of the package, re-exported for the training scripts
from .validation import save_validation_images

__all__ = [
    "TrainingProgress",
    "TrainingRun",
    "add_checkpointing_args",
    "add_diffusion_loss_args",
    "add_hub_args",
    "add_optimization_args",
    "add_validation_args",
    "image_grid",
    "list_checkpoints",
    "parse_training_args",
    "push_to_hub",
    "resolve_checkpoint",
    "save_checkpoint",
    "save_validation_images",
    "training_parser",
    "weight_dtype",
    "write_model_card",
]
