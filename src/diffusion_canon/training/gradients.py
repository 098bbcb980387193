"""`ContiguousGradients`: the gradients of all trainable parameters as views of one buffer.

Backward then accumulates into the views in place, and gradient clipping and zeroing are one kernel each over the
buffer instead of one per tensor: ~290 tensors for the tiny SD UNet, where the per-tensor loops of
``clip_grad_norm_`` and ``zero_grad`` cost ~3 ms of a ~88 ms DreamBooth step on the CPU. Clipping is
``torch.nn.utils.clip_grad_norm_``'s rule: g <- g * min(1, max_norm / (||g||_2 + 1e-6)).

A parameter that gets no gradient in a step keeps a zero gradient instead of ``None``, so AdamW's weight decay still
applies to it (as with ``zero_grad(set_to_none=False)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class ContiguousGradients:
    @staticmethod
    def fits(params: Sequence[torch.nn.Parameter]) -> bool:
        """One buffer holds them: the parameters share one device and dtype."""
        return len({(p.device, p.dtype) for p in params}) == 1

    def __init__(self, params: Sequence[torch.nn.Parameter]) -> None:
        if not self.fits(params):
            found = sorted({f"{p.device} {p.dtype}" for p in params})
            raise ValueError(f"contiguous gradients need one device and dtype; the parameters have {found}")
        self.buffer = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=params[0].dtype)
        self.params, self.views, offset = list(params), [], 0
        for p in self.params:
            if p.grad is not None:
                self.buffer[offset : offset + p.numel()].copy_(p.grad.reshape(-1))
            p.grad = self.buffer[offset : offset + p.numel()].view_as(p)
            self.views.append(p.grad)
            offset += p.numel()

    def check(self) -> None:
        """Raise if a gradient no longer lives in the buffer (``module.zero_grad()`` sets it to ``None``, ``.to()``
        moves it): clipping and the zeroing would silently miss it."""
        for k, (p, view) in enumerate(zip(self.params, self.views)):
            if p.grad is not view:
                raise RuntimeError(
                    f"the gradient of trainable parameter {k} {tuple(p.shape)} was replaced outside the training run "
                    "(e.g. by module.zero_grad() or module.to()); let run.backward() step and zero the gradients")

    def clip_(self, max_norm: float) -> torch.Tensor:
        """Scale all gradients so their joint L2 norm is at most ``max_norm``; returns the norm before clipping."""
        norm = torch.linalg.vector_norm(self.buffer)
        self.buffer.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        return norm

    def zero_(self) -> None:
        self.buffer.zero_()

    def release(self) -> None:
        """Detach the parameters from the buffer (their gradients become ``None``) so its memory can go."""
        for p in self.params:
            p.grad = None
        self.views = []
