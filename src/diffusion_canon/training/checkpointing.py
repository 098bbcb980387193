"""Atomic training checkpoints: ``output_dir/checkpoint-<step>`` folders written by ``accelerator.save_state``.

A checkpoint is first written to ``checkpoint-<step>.tmp`` and renamed only when complete, so an interrupted save never
leaves a folder that ``--resume_from_checkpoint latest`` would pick up half-written; old ones are removed so that no
kill leaves a half-deleted folder under a checkpoint's name (``atomic_folder.remove_folder``).

Resuming loads nothing that could run code. accelerate unpickles the optimizer, LR schedule, RNG states and registered
objects with ``weights_only=False``; :func:`verify_checkpoint` first reads every such file with
``torch.load(weights_only=True)`` (tensors, numbers, strings, containers, and the numpy arrays of the RNG state), reads
every safetensors file whole, and requires every file the run needs, so a crafted, truncated or missing file is a
``ValueError`` naming it before accelerate touches the folder. The files keep accelerate's format: checkpoints of
earlier versions resume unchanged.
"""

from __future__ import annotations

import logging
import os
import re
import shutil

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from ..plain_files import UnreadableFileError, UnsafeFileError, load_plain
from .atomic_folder import remove_folder

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
        if os.path.exists(final):
            remove_folder(final)
        os.replace(tmp, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                logger.info("removing old checkpoint %s (--checkpoints_total_limit %d)", old, total_limit)
                remove_folder(old)
    accelerator.wait_for_everyone()
    return final


# what an RNG state pickle holds besides tensors and plain values: numpy's MT19937 state array
_NUMPY_STATE_GLOBALS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)),
                        getattr(np, "_core", getattr(np, "core", None)).multiarray._reconstruct]


def required_files(accelerator: Accelerator) -> list[str]:
    """The files ``accelerator.save_state`` writes for this run and this process (models, optimizer, LR schedule,
    registered objects, this process's RNG state), in accelerate's naming."""
    def numbered(stem: str, count: int, ext: str) -> list[str]:
        return [f"{stem}{'' if i == 0 else f'_{i}'}.{ext}" for i in range(count)]

    files = [f"random_states_{accelerator.process_index}.pkl"]
    files += [f"custom_checkpoint_{i}.pkl" for i in range(len(accelerator._custom_objects))]
    if accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):  # their own layout
        files += numbered("model", len(accelerator._models), "safetensors")
        files += numbered("optimizer", len(accelerator._optimizers), "bin")
        files += numbered("scheduler", len(accelerator._schedulers), "bin")
    return files


def verify_checkpoint(accelerator: Accelerator, path: str, allow_inexact: bool = False) -> None:
    """Check that ``path`` holds every file this run needs and nothing that could run code (module docstring).

    A missing or unreadable RNG state makes the resume inexact: an error, unless ``allow_inexact`` (the flag
    ``--allow_inexact_resume``), then a warning. Any other missing or bad file is always an error."""
    where = f"--resume_from_checkpoint {path}"
    for name in required_files(accelerator):
        if not os.path.isfile(os.path.join(path, name)):
            if name.startswith("random_states_") and allow_inexact:
                logger.warning("%s: %s is missing; resuming with fresh RNG states (not exact)", where, name)
                continue
            hint = (" (or pass --allow_inexact_resume to resume with fresh RNG states, not exactly)"
                    if name.startswith("random_states_") else "")
            raise ValueError(f"{where}: {name} is missing, so the run cannot be resumed as it was{hint}")
    for name in sorted(os.listdir(path)):
        if not os.path.isfile(os.path.join(path, name)):
            continue
        problem = _read_as_plain_data(os.path.join(path, name))
        if problem is None:
            continue
        if problem == "unsafe":
            raise ValueError(f"{where}: {name} holds objects other than tensors, numbers and containers; loading it "
                             "could run code, so it is refused. Resume only from checkpoints you wrote.")
        if name.startswith("random_states_") and allow_inexact:  # accelerate skips an RNG state it cannot read
            logger.warning("%s: %s is unreadable (%s); resuming with fresh RNG states (not exact)", where, name, problem)
        elif name.startswith("random_states_"):
            raise ValueError(f"{where}: {name} is unreadable ({problem}), so the run cannot be resumed exactly "
                             "(pass --allow_inexact_resume to resume with fresh RNG states)")
        else:
            raise ValueError(f"{where}: {name} is unreadable, truncated or not a checkpoint file ({problem})")


def _read_as_plain_data(file: str) -> str | None:
    """Read a checkpoint file without running code: None when it holds plain data, ``"unsafe"`` when it holds other
    objects (a pickle that would import or call something), else why it is unreadable."""
    try:
        if file.endswith(".safetensors"):
            load_file(file)
        elif file.endswith((".bin", ".pkl", ".pt", ".pth")):
            load_plain(file, _NUMPY_STATE_GLOBALS)
    except UnsafeFileError:
        return "unsafe"
    except UnreadableFileError as error:
        return str(error)
    except Exception as error:  # a damaged safetensors file
        return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
    return None


def load_checkpoint(accelerator: Accelerator, optimizer: torch.optim.Optimizer, path: str,
                    allow_inexact: bool = False) -> None:
    """:func:`verify_checkpoint`, then ``accelerator.load_state(path)``, with a clear ``ValueError`` when the checkpoint
    was written by another model layout: torch reports missing keys or mismatched sizes of the model, but optimizer
    state is matched to parameters by position, so a reordered model would otherwise fail inside Adam with an
    unexplained shape error."""
    verify_checkpoint(accelerator, path, allow_inexact)
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
