"""Choosing a consistency model's multistep schedule by search: Song et al. (2023) pick the intermediate levels of
multistep sampling greedily, one at a time, each by ternary search on the sample quality (FID there; cFID here).

A schedule for n steps is the reference's ``--ts``: n + 1 increasing indices into a Karras grid of ``grid_size``
levels, from 0 (σ_max) to ``grid_size − 1`` (σ_min). The n-step schedule keeps the (n − 1)-step one's indices and
adds one, in whichever gap scores best.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ternary_search", "greedy_timesteps"]


def ternary_search(score: Callable[[int], float], low: int, high: int) -> int:
    """The integer k in [low, high] of least ``score(k)``, for a score that falls then rises (each k scored once)."""
    if low > high:
        raise ValueError(f"ternary_search needs low <= high, got [{low}, {high}]")
    cache: dict[int, float] = {}

    def cost(k: int) -> float:
        if k not in cache:
            cache[k] = score(k)
        return cache[k]

    while high - low > 2:
        third = (high - low) // 3
        left, right = low + third, high - third
        if cost(left) < cost(right):
            high = right - 1  # the minimum is not right of `right`
        elif cost(left) > cost(right):
            low = left + 1
        else:
            low, high = left, right
    return min(range(low, high + 1), key=cost)


def greedy_timesteps(score: Callable[[list[int]], float], grid_size: int, max_steps: int) -> dict[int, list[int]]:
    """``{n: ts}`` for n = 2 … ``max_steps``: each n-step schedule is the (n − 1)-step one with one more index, the
    one of least ``score(ts)`` over every gap between two of its indices (ternary search within each gap)."""
    if not 2 <= max_steps <= grid_size - 1:
        raise ValueError(f"max_steps={max_steps} must be in [2, grid_size - 1 = {grid_size - 1}]")
    scores: dict[tuple[int, ...], float] = {}

    def cost(ts: list[int]) -> float:  # each schedule scored once
        if tuple(ts) not in scores:
            scores[tuple(ts)] = score(ts)
        return scores[tuple(ts)]

    schedule, schedules = [0, grid_size - 1], {}
    for n in range(2, max_steps + 1):
        candidates = []
        for a, b in zip(schedule, schedule[1:]):
            if b - a >= 2:
                k = ternary_search(lambda k: cost(sorted([*schedule, k])), a + 1, b - 1)
                candidates.append(sorted([*schedule, k]))
        schedule = min(candidates, key=cost)
        schedules[n] = schedule
    return schedules
