"""Input checks the pipelines, schedulers and training flags share: each names the argument, the value received and
what is allowed, so bad input is a ``TypeError``/``ValueError`` at the call, never a traceback from deep inside torch
or a silent NaN image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import PIL.Image
import torch

MAX_BATCH_SIZE = 10_000  # far above what fits in memory at any image size we ship; beyond it a typo, not a batch


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 integer: bool = False, below: float | None = None) -> None:
    """``value`` must be a finite real number (an int when ``integer``) within [minimum, maximum] (and < ``below``)."""
    kind = "an int" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else Real):
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum) or (
            below is not None and value >= below):
        bounds = [f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else "",
                  f"< {below}" if below is not None else ""]
        raise ValueError(f"{name} must be {' and '.join(b for b in bounds if b)}, got {value}")


def check_count(name: str, value: Any) -> int:
    """A number of images (or candidates, or images per prompt): an int in [1, MAX_BATCH_SIZE]; returns it."""
    check_number(name, value, minimum=1, maximum=MAX_BATCH_SIZE, integer=True)
    return value


def check_tensor_type(name: str, value: Any) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def check_tensor(name: str, value: Any, ndim: int | None = None) -> None:
    """``value`` must be a finite tensor (with ``ndim`` dimensions)."""
    check_tensor_type(name, value)
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")


def check_generator(generator: Any, batch_size: int) -> None:
    """``None``, one ``torch.Generator``, or a list of exactly ``batch_size`` of them (one per image)."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, (list, tuple)):
        wrong = [type(g).__name__ for g in generator if not isinstance(g, torch.Generator)]
        if wrong:
            raise TypeError(f"generator: a list must hold torch.Generator objects, got {wrong[0]}")
        if len(generator) != batch_size:
            raise ValueError(f"generator: a list needs one torch.Generator per image ({batch_size}), got {len(generator)}")
        return
    raise TypeError(f"generator must be a torch.Generator or a list of them, got {type(generator).__name__}")


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """``value`` must be one of the strings ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r:.80} is not supported; allowed: {', '.join(map(repr, allowed))}")


def check_prompts(prompt: Any) -> list[str]:
    """A prompt or a non-empty list of prompts, as a list of strings."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt is None:
        raise ValueError("prompt must be a string or a non-empty list of strings, got None")
    if not isinstance(prompt, (list, tuple)):
        raise TypeError(f"prompt must be a string or a non-empty list of strings, got {type(prompt).__name__}")
    if not prompt:
        raise ValueError("prompt must be a string or a non-empty list of strings, got an empty list")
    bad = [p for p in prompt if not isinstance(p, str)]
    if bad:
        raise TypeError(f"prompt must hold strings only, got {type(bad[0]).__name__} {bad[0]!r:.80}")
    return list(prompt)


class NonFiniteError(ValueError):
    """A computation produced NaN or inf (a scheduler step's result)."""


def checked_step(scheduler: Any, step: int, causes: str, model_output: torch.Tensor, timestep: Any,
                 sample: torch.Tensor, **kwargs: Any) -> Any:
    """``scheduler.step(model_output, timestep, sample, **kwargs)`` of a sampling loop; a result that turned
    non-finite stops the run, naming the step and the pipeline arguments (``causes``) that scale the sample."""
    try:
        return scheduler.step(model_output, timestep, sample, **kwargs)
    except NonFiniteError:
        raise ValueError(f"sampling turned non-finite at step {step} (timestep {int(timestep)}); the inputs that "
                         f"scale the sample are {causes}") from None


def check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r:.80}")


def check_callback(callback: Any, tensor_inputs: Any, allowed: Sequence[str]) -> None:
    """``callback_on_step_end`` is None or callable; its tensor inputs a list of names from ``allowed``."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback_on_step_end must be callable, got {type(callback).__name__}")
    if isinstance(tensor_inputs, str) or not isinstance(tensor_inputs, (list, tuple)) or not all(
            isinstance(name, str) for name in tensor_inputs):
        raise TypeError(f"callback_on_step_end_tensor_inputs must be a list of names from {list(allowed)}, got "
                        f"{type(tensor_inputs).__name__}")
    extra = set(tensor_inputs) - set(allowed)
    if extra:
        raise ValueError(f"callback_on_step_end_tensor_inputs may only hold {list(allowed)}, got {sorted(extra)}")


def check_sampling(num_train_timesteps: int, num_inference_steps: Any, use_ddim: Any, eta: Any,
                   guidance_scale: Any) -> None:
    """The sampling arguments of one ADM-family stage."""
    if num_inference_steps is not None:
        check_number("num_inference_steps", num_inference_steps, minimum=1, maximum=num_train_timesteps, integer=True)
    check_flag("use_ddim", use_ddim)
    check_number("eta", eta, minimum=0)
    if guidance_scale is not None:
        check_number("guidance_scale", guidance_scale)


def check_augmentation(num_train_timesteps: int, noise_level: Any, blur_sigma: Any, blur_kernel_size: Any) -> None:
    """Conditioning augmentation at inference: a noise level in [0, T), a blur σ >= 0, an odd kernel size."""
    if noise_level is not None:
        check_number("noise_level", noise_level, minimum=0, below=num_train_timesteps, integer=True)
    if blur_sigma is not None:
        check_number("blur_sigma", blur_sigma, minimum=0)
    check_number("blur_kernel_size", blur_kernel_size, minimum=1, maximum=99, integer=True)
    if blur_kernel_size % 2 == 0:
        raise ValueError(f"blur_kernel_size must be odd, got {blur_kernel_size}")


def check_images(name: str, images: Any) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
    """A PIL image or a non-empty list of them (as a list), or an HWC/NHWC array or CHW/NCHW tensor in [0, 1]."""
    if isinstance(images, PIL.Image.Image):
        return [images]
    if images is None:
        raise ValueError(f"{name} must be PIL image(s), a numpy array or a torch tensor, got None")
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name} must hold at least one image, got an empty list")
        if not all(isinstance(image, PIL.Image.Image) for image in images):
            raise TypeError(f"{name} as a list must hold PIL images only")
        return list(images)
    if not isinstance(images, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be PIL image(s), a numpy array or a torch tensor, got {type(images).__name__}")
    values = torch.as_tensor(np.asarray(images, dtype=np.float32)) if isinstance(images, np.ndarray) else images
    if values.ndim not in (3, 4) or values.numel() == 0:
        raise ValueError(f"{name} must be one image or a batch (3 or 4 dimensions), got shape {tuple(values.shape)}")
    if not torch.isfinite(values.float()).all() or values.min() < 0 or values.max() > 1:
        raise ValueError(f"{name} values must be finite and lie in [0, 1]")
    return images
