"""`ContiguousGradients`: the gradients of all trainable parameters as views of one buffer.

Backward accumulates into the views in place, and gradient clipping and zeroing are one kernel each over the buffer
instead of one per tensor (a few hundred for a UNet, each with its per-call cost on the CPU); the gradients' memory is
kept between steps instead of being freed by ``zero_grad(set_to_none=True)`` and allocated again by the next backward.
What this saves per step, against plain per-tensor clipping and zeroing, is measured in ``benchmarks/RESULTS.md``
(P3). Clipping is ``torch.nn.utils.clip_grad_norm_``'s rule: g <- g * min(1, max_norm / (||g||_2 + 1e-6)).

The optimizer still sees torch's gradients: a parameter that received no gradient since the last ``zero_`` (an
unused branch, a layer skipped in this step) has ``grad=None`` during the step (``received_only``), so AdamW skips
it exactly as after ``zero_grad(set_to_none=True)``: no weight decay, no moment decay, no step count. A buffer alone
cannot tell: its view of such a parameter holds zeros, and a received gradient may be all zeros too (AdamW does step
that parameter). So each parameter has a post-accumulate-grad hook that marks it when autograd writes its gradient.
A skipped parameter's zeros add nothing to the clipping norm, as ``clip_grad_norm_`` ignores a ``None`` gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

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
        # received[k]: parameter k got a gradient since the last zero_ (a gradient it already had counts)
        self.received = [p.grad is not None for p in self.params]
        for p in self.params:
            if p.grad is not None:
                self.buffer[offset : offset + p.numel()].copy_(p.grad.reshape(-1))
            p.grad = self.buffer[offset : offset + p.numel()].view_as(p)
            self.views.append(p.grad)
            offset += p.numel()
        self._hooks = [p.register_post_accumulate_grad_hook(self._marker(k)) for k, p in enumerate(self.params)]

    def _marker(self, k: int) -> Callable[[torch.Tensor], None]:
        received = self.received

        def mark(_: torch.Tensor) -> None:
            received[k] = True

        return mark

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

    @contextlib.contextmanager
    def received_only(
        self, combine: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> Iterator[None]:
        """Within the block (the optimizer step), parameters that received no gradient since the last ``zero_`` have
        ``grad=None``. ``combine`` maps this process's flags (an int tensor, 1 = received) to the flags that decide,
        e.g. a sum over processes: under DDP a gradient used on any process reaches every process."""
        received = self.received
        if combine is not None:
            flags = torch.tensor(received, dtype=torch.int32, device=self.buffer.device)
            received = [bool(f) for f in combine(flags).tolist()]
        missing = [k for k, got in enumerate(received) if not got]
        for k in missing:
            self.params[k].grad = None
        try:
            yield
        finally:
            for k in missing:
                self.params[k].grad = self.views[k]

    def zero_(self) -> None:
        self.buffer.zero_()
        self.received[:] = [False] * len(self.received)

    def release(self) -> None:
        """Detach the parameters from the buffer (their gradients become ``None``) so its memory can go."""
        for hook in self._hooks:
            hook.remove()
        for p in self.params:
            p.grad = None
        self.views, self._hooks = [], []
