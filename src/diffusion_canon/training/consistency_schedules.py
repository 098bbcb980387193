"""The schedules that drive consistency-model and progressive-distillation training (Song et al. 2023, §5 and
App. C; openai/consistency_models' ``create_ema_and_scales_fn``): at training step k, the number of grid points N(k)
the loss discretises the ODE into, and the target network's EMA rate μ(k).

* ``"fixed"`` N: N(k) = start_scales; ``"progressive"``: N(k) = ⌈√(k/K·((s₁ + 1)² − s₀²) + s₀²) − 1⌉ + 1 (at least 2),
  growing from s₀ to s₁ over K steps;
* ``"fixed"`` μ: μ(k) = start_ema; ``"adaptive"`` (with progressive N): μ(k) = exp(s₀·log μ₀ / (N(k) − 1));
* ``"progdist"``: N halves every ``distill_steps_per_iter`` steps from ``start_scales`` down to 2, then 1 for good
  after twice as long; μ = 1 (the student starts as the teacher's copy each round);
* ``"ict"`` (Song & Dhariwal 2023, §3.4): N(k) = min(s₀·2^⌊k/K′⌋, s₁) + 1 with K′ = ⌊K / (log₂⌊s₁/s₀⌋ + 1)⌋, and
  μ = 0 (iCT drops the target EMA: θ⁻ = θ, without gradient)."""

from __future__ import annotations

import math

import numpy as np

EMA_MODES = ("fixed", "adaptive")
SCALE_MODES = ("fixed", "progressive", "progdist", "ict")


def consistency_schedule(step: int, target_ema_mode: str, start_ema: float, scale_mode: str, start_scales: int,
                         end_scales: int, total_steps: int, distill_steps_per_iter: int) -> tuple[float, int]:
    """(μ(k), N(k)) at training step ``step`` (see the module docstring); ``ValueError`` for a combination the
    reference does not define (adaptive μ needs progressive N; progdist keeps μ fixed)."""
    if (target_ema_mode, scale_mode) not in {("fixed", "fixed"), ("fixed", "progressive"),
                                             ("adaptive", "progressive"), ("fixed", "progdist"), ("fixed", "ict")}:
        raise ValueError(f"target_ema_mode={target_ema_mode!r} with scale_mode={scale_mode!r} is not a schedule; "
                         "allowed: fixed/fixed, fixed/progressive, adaptive/progressive, fixed/progdist, fixed/ict")
    if scale_mode == "fixed":
        return float(start_ema), int(start_scales)
    if scale_mode == "ict":
        stage_length = total_steps // (math.floor(math.log2(end_scales // start_scales)) + 1)
        return 0.0, min(start_scales * 2 ** (step // max(stage_length, 1)), end_scales) + 1
    if scale_mode == "progressive":
        grown = math.ceil(math.sqrt(step / total_steps * ((end_scales + 1) ** 2 - start_scales**2) + start_scales**2)
                          - 1)
        grown = max(grown, 1)
        # numpy's exp/log, as the reference's: libm's differ from them in the last bit
        rate = -np.log(start_ema) * start_scales if target_ema_mode == "adaptive" else None
        ema = np.exp(-rate / grown) if rate is not None else start_ema
        return float(ema), grown + 1
    scales = max(start_scales // 2 ** (step // distill_steps_per_iter), 2)
    if scales == 2:  # the last rounds: 2 steps, then 1
        sub_stage = max(step - distill_steps_per_iter * (math.log2(start_scales) - 1), 0) // (distill_steps_per_iter * 2)
        scales = int(max(2 // 2**sub_stage, 1))
    return 1.0, int(scales)
