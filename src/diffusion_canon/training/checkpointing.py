"""Atomic training checkpoints: ``output_dir/checkpoint-<step>`` folders written by ``accelerator.save_state``.

A checkpoint is first written to ``checkpoint-<step>.tmp`` and renamed only when complete, so an interrupted save never
leaves a folder that ``--resume_from_checkpoint latest`` would pick up half-written.
"""

from __future__ import annotations

import logging
import os
import re
import shutil

import torch
from accelerate import Accelerator

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoint folders in ``output_dir``, oldest (lowest step) first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _CHECKPOINT.match(name))]
    return [os.path.join(output_dir, name) for _, name in sorted(found)]


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """The folder ``--resume_from_checkpoint`` names: a path, a folder name inside ``output_dir``, or ``"latest"``.

    ``"latest"`` with no checkpoint yet means a fresh start (returns None), so the same command can launch and
    relaunch a job. Any other value that is not an existing folder is an error.
    """
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.warning("--resume_from_checkpoint latest: no checkpoint in %s yet, starting a new run", output_dir)
            return None
        return checkpoints[-1]
    for candidate in (resume_from_checkpoint, os.path.join(output_dir, resume_from_checkpoint)):
        if os.path.isdir(candidate):
            return candidate
    raise ValueError(
        f"--resume_from_checkpoint {resume_from_checkpoint!r} does not exist (neither as a path nor inside "
        f"--output_dir {output_dir!r}); pass a checkpoint folder or 'latest'"
    )


def save_checkpoint(accelerator: Accelerator, output_dir: str, step: int, total_limit: int | None = None) -> str:
    """Save the full training state (models, optimizer, LR schedule, RNG states, registered objects) atomically.

    Must be called on every process (each one saves its own RNG state). Old checkpoints beyond ``total_limit`` are
    deleted after the new one is complete. Returns the checkpoint folder.
    """
    final = os.path.join(output_dir, f"checkpoint-{step}")
    tmp = final + ".tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                logger.info("removing old checkpoint %s (--checkpoints_total_limit %d)", old, total_limit)
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, optimizer: torch.optim.Optimizer, path: str) -> None:
    """``accelerator.load_state(path)``, with a clear ``ValueError`` when the checkpoint was written by another model
    layout: torch reports missing keys or mismatched sizes of the model, but optimizer state is matched to parameters
    by position, so a reordered model would otherwise fail inside Adam with an unexplained shape error."""
    advice = ("it was written by a different model or configuration; resume with the flags of the run that wrote it, "
              "or start a new run in another --output_dir")
    try:
        accelerator.load_state(path)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        raise ValueError(f"--resume_from_checkpoint {path}: the checkpoint does not fit this model ({reason}); "
                         f"{advice}") from error
    for k, parameter in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        for name, value in optimizer.state.get(parameter, {}).items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != parameter.shape:
                raise ValueError(
                    f"--resume_from_checkpoint {path}: optimizer state {name!r} of trainable parameter {k} has shape "
                    f"{tuple(value.shape)}, the parameter has {tuple(parameter.shape)}; {advice}")


class TrainingProgress:
    """The optimizer-step counter, saved with each checkpoint (``accelerator.register_for_checkpointing``)."""

    def __init__(self) -> None:
        self.global_step = 0

    def state_dict(self) -> dict[str, int]:
        return {"global_step": self.global_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.global_step = int(state["global_step"])
