"""Class labels and the initial noise of a pipeline whose ``unet`` may be class-conditional (ADM, its SR stages, EDM
and consistency-model folders): labels by index or by the names in the U-Net config, checked against its classes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

ClassLabels = int | str | Sequence[int | str] | torch.Tensor


class ClassConditionalMixin:
    """For pipelines with a ``unet`` (``num_classes``, ``class_names``, ``in_channels``, ``sample_size`` in its
    config) and optionally a ``classifier`` that knows the classes of an unconditional U-Net."""

    @property
    def class_names(self) -> list[str] | None:
        """Names of the class indices (from the U-Net config, else the classifier's), or ``None``."""
        for model in (self.unet, getattr(self, "classifier", None)):
            if model is not None and model.config.get("class_names"):
                return list(model.config.class_names)
        return None

    @property
    def num_classes(self) -> int | None:
        """Classes the labels index: the U-Net's, else the classifier's (unconditional U-Net guided by a classifier)."""
        if self.unet.config.num_classes is not None:
            return self.unet.config.num_classes
        classifier = getattr(self, "classifier", None)
        return None if classifier is None else classifier.config.num_classes

    def class_index(self, label: int | str) -> int:
        """A class index from an int or a class name; ``ValueError`` when out of range or unknown."""
        num_classes = self.num_classes
        if isinstance(label, str):
            names = self.class_names
            if names is None or label not in names:
                known = "this model has no class names" if names is None else f"known names include {names[:10]}"
                raise ValueError(f"class_labels: unknown class name {label!r} ({known})")
            return names.index(label)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise TypeError(f"class_labels must hold ints or class names, got {type(label).__name__} {label!r}")
        if num_classes is None or not 0 <= int(label) < num_classes:
            allowed = "none (the pipeline has no classes)" if num_classes is None else f"0 … {num_classes - 1}"
            raise ValueError(f"class_labels: {int(label)} is out of range; allowed {allowed}")
        return int(label)

    def get_label_ids(self, label: str | Sequence[str]) -> list[int]:
        """Class name(s) → index(es), as diffusers' ``DiTPipeline.get_label_ids``."""
        return [self.class_index(name) for name in ([label] if isinstance(label, str) else label)]

    def prepare_class_labels(self, class_labels: ClassLabels | None, batch_size: int) -> torch.Tensor | None:
        """``[N]`` LongTensor of class indices (``None`` for unconditional sampling). A single label is repeated
        ``batch_size`` times; a sequence or tensor sets the batch size."""
        if class_labels is None:
            return None
        if isinstance(class_labels, torch.Tensor):
            class_labels = class_labels.reshape(-1).tolist()
        if isinstance(class_labels, (int, str, np.integer)):
            class_labels = [class_labels] * batch_size
        elif not isinstance(class_labels, (list, tuple)):
            raise TypeError("class_labels must be a class index or name, a list of them or a tensor, got "
                            f"{type(class_labels).__name__}")
        elif not class_labels:
            raise ValueError("class_labels is empty: pass at least one label (or None for unconditional sampling)")
        elif batch_size not in (1, len(class_labels)):
            raise ValueError(f"batch_size={batch_size} disagrees with the {len(class_labels)} class_labels given")
        return torch.tensor([self.class_index(label) for label in class_labels], dtype=torch.long)

    def prepare_latents(
        self,
        batch_size: int,
        generator: torch.Generator | None,
        latents: torch.Tensor | None,
        device: torch.device,
    ) -> torch.Tensor:
        """x_T ~ N(0, I) of shape ``[N, in_channels, sample_size, sample_size]`` (float32), or the given latents."""
        config = self.unet.config
        if latents is None and config.sample_size is None:
            raise ValueError("the U-Net config has no sample_size: pass latents of shape [N, C, H, W]")
        size = config.sample_size if config.sample_size is not None else latents.shape[-1]
        shape = (batch_size, config.in_channels, size, size)
        if latents is None:
            return randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        if tuple(latents.shape) != shape and not (
            latents.ndim == 4 and latents.shape[:2] == shape[:2] and config.sample_size is None
        ):
            raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
        return latents.to(device=device, dtype=torch.float32)

    def unet_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The labels the U-Net reads (``None`` for an unconditional U-Net guided by a classifier)."""
        return labels if self.unet.config.num_classes is not None else None
