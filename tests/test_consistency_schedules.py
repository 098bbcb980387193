"""N(k) and μ(k) against openai/consistency_models' ``create_ema_and_scales_fn`` at the recorded steps
(tests/fixtures/README.md, consistency_models/): integers equal, μ within 2 float64 ulps. μ = exp(−s₀·log μ₀ / N) is
computed with the reference's own operations (numpy's exp and log), but numpy picks its exp/log kernels by CPU (SIMD or
libm), and those differ in the last bit: on an AMD EPYC without AVX-512, 1 ulp at μ ≈ 0.99908 (adaptive_progressive,
step index 8). Each kernel rounds within 1 ulp of the exact value, so two of them differ by at most 2 ulps of μ (the
log's error reaches μ scaled by |s₀·log μ₀ / N| < 0.11, well under an ulp)."""

from __future__ import annotations

import numpy as np
import pytest

from diffusion_canon.training.consistency_schedules import consistency_schedule
from test_karras_parity import CASES, TENSORS

SCHEDULES = CASES["ema_and_scales"]


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_the_reference(name):
    kwargs = SCHEDULES[name]["kwargs"]
    steps, emas, scales = (TENSORS[f"ema_and_scales/{name}/{key}"].tolist() for key in ("steps", "target_ema", "scales"))
    ours = [consistency_schedule(int(step), **kwargs) for step in steps]
    assert [n for _, n in ours] == list(map(int, scales))
    ulps = np.abs(np.array([mu for mu, _ in ours]) - emas) / np.spacing(np.abs(emas))
    assert ulps.max(initial=0) <= 2, ulps


def test_undefined_combination_is_named():
    with pytest.raises(ValueError, match="adaptive"):
        consistency_schedule(0, "adaptive", 0.95, "fixed", 40, 40, 1000, 100)
