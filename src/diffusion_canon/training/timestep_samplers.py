"""Timestep samplers for diffusion training (Nichol & Dhariwal 2021 §3.3).

A sampler draws training timesteps t ~ p_t and returns importance weights 1/(T p_t) so that
E[w · L_t] is the uniform average of L_t: the objective is unchanged, only its variance is. Multiply the
per-sample loss by the weights::

    timesteps, weights = sampler.sample(batch_size, device)
    loss = (training_losses(...)["loss"] * weights).mean()
    sampler.update_with_local_losses(timesteps, terms["loss"].detach())   # loss-aware samplers only
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def _num_timesteps(scheduler_or_num_timesteps) -> int:
    if isinstance(scheduler_or_num_timesteps, int) and not isinstance(scheduler_or_num_timesteps, bool):
        value = scheduler_or_num_timesteps
    elif hasattr(scheduler_or_num_timesteps, "config"):
        value = scheduler_or_num_timesteps.config.num_train_timesteps
    else:
        raise TypeError(f"expected a scheduler or an int number of timesteps; got {type(scheduler_or_num_timesteps)}")
    if value < 1:
        raise ValueError(f"num_timesteps={value} must be >= 1")
    return value


class ScheduleSampler(ABC):
    """A distribution over the T training timesteps, ``weights()`` ∝ p_t."""

    def __init__(self, scheduler_or_num_timesteps) -> None:
        self.num_timesteps = _num_timesteps(scheduler_or_num_timesteps)

    @abstractmethod
    def weights(self) -> np.ndarray:
        """Unnormalised positive weights, shape ``(T,)`` float64."""

    def sample(
        self, batch_size: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Importance-sample ``batch_size`` timesteps: (timesteps LongTensor ``(B,)``, weights 1/(T p_t) ``(B,)``)."""
        p = self.weights() / np.sum(self.weights())
        probs = torch.from_numpy(p)
        timesteps = torch.multinomial(probs, batch_size, replacement=True, generator=generator)
        weights = 1.0 / (len(p) * probs[timesteps])
        return timesteps.to(device), weights.float().to(device)


class UniformSampler(ScheduleSampler):
    """p_t = 1/T (Ho et al.); all weights are 1."""

    def weights(self) -> np.ndarray:
        return np.ones(self.num_timesteps, dtype=np.float64)


class LossAwareSampler(ScheduleSampler):
    """A sampler whose distribution is updated from observed losses, kept identical on every process."""

    def update_with_local_losses(self, local_timesteps: torch.Tensor, local_losses: torch.Tensor) -> None:
        """Record this process's ``(B,)`` timesteps and losses. Under ``torch.distributed`` (as set up by
        ``accelerate launch``), every process's batch is gathered in rank order first, so all processes apply the
        same update; in a single process the batch is used as is. Call it on every process."""
        pairs = (local_timesteps.detach().cpu().tolist(), local_losses.detach().cpu().tolist())
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, pairs)
        else:
            gathered = [pairs]
        timesteps = [t for ts, _ in gathered for t in ts]
        losses = [loss for _, ls in gathered for loss in ls]
        self.update_with_all_losses(timesteps, losses)

    @abstractmethod
    def update_with_all_losses(self, timesteps: Sequence[int], losses: Sequence[float]) -> None:
        """Apply the losses of all processes (deterministic, so every process ends in the same state)."""


class LossSecondMomentResampler(LossAwareSampler):
    """ND §3.3: p_t ∝ √E[L_t²] over the last ``history_per_term`` losses of each t, mixed with ``uniform_prob`` of
    the uniform distribution; uniform until every t has a full history.

    ``state_dict()`` / ``load_state_dict()`` let a training checkpoint carry the history.
    """

    def __init__(self, scheduler_or_num_timesteps, history_per_term: int = 10, uniform_prob: float = 0.001) -> None:
        super().__init__(scheduler_or_num_timesteps)
        if history_per_term < 1:
            raise ValueError(f"history_per_term={history_per_term} must be >= 1")
        if not 0.0 <= uniform_prob <= 1.0:
            raise ValueError(f"uniform_prob={uniform_prob} must lie in [0, 1]")
        self.history_per_term = history_per_term
        self.uniform_prob = uniform_prob
        self.loss_history = np.zeros((self.num_timesteps, history_per_term), dtype=np.float64)
        self.loss_counts = np.zeros(self.num_timesteps, dtype=np.int64)

    def warmed_up(self) -> bool:
        return bool((self.loss_counts == self.history_per_term).all())

    def weights(self) -> np.ndarray:
        if not self.warmed_up():
            return np.ones(self.num_timesteps, dtype=np.float64)
        weights = np.sqrt(np.mean(self.loss_history**2, axis=-1))
        weights /= np.sum(weights)
        return weights * (1 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def update_with_all_losses(self, timesteps: Sequence[int], losses: Sequence[float]) -> None:
        for t, loss in zip(timesteps, losses):
            t = int(t)
            if not 0 <= t < self.num_timesteps:
                raise ValueError(f"timestep {t} outside [0, {self.num_timesteps - 1}]")
            if self.loss_counts[t] == self.history_per_term:
                self.loss_history[t] = np.roll(self.loss_history[t], -1)  # drop the oldest
                self.loss_history[t, -1] = loss
            else:
                self.loss_history[t, self.loss_counts[t]] = loss
                self.loss_counts[t] += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"loss_history": torch.from_numpy(self.loss_history.copy()),
                "loss_counts": torch.from_numpy(self.loss_counts.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        history = np.asarray(state["loss_history"], dtype=np.float64)
        if history.shape != self.loss_history.shape:
            raise ValueError(f"loss_history has shape {history.shape}; expected {self.loss_history.shape}")
        self.loss_history = history.copy()
        self.loss_counts = np.asarray(state["loss_counts"], dtype=np.int64).copy()


SCHEDULE_SAMPLERS = {"uniform": UniformSampler, "loss-second-moment": LossSecondMomentResampler}


def create_named_schedule_sampler(name: str, scheduler_or_num_timesteps) -> ScheduleSampler:
    """``"uniform"`` or ``"loss-second-moment"`` (improved-diffusion's ``--schedule_sampler`` names)."""
    if name not in SCHEDULE_SAMPLERS:
        raise ValueError(f"schedule sampler {name!r} is not supported; allowed: {', '.join(map(repr, SCHEDULE_SAMPLERS))}")
    return SCHEDULE_SAMPLERS[name](scheduler_or_num_timesteps)


def checkpointed_schedule_sampler(run: Any, name: str, scheduler_or_num_timesteps) -> ScheduleSampler:
    """:func:`create_named_schedule_sampler` for a training run: a loss-aware sampler's loss history decides future
    timesteps, so it is registered with ``run``'s checkpoints (an exact resume needs it)."""
    sampler = create_named_schedule_sampler(name, scheduler_or_num_timesteps)
    if isinstance(sampler, LossAwareSampler):
        run.accelerator.register_for_checkpointing(sampler)
    return sampler
