"""N(k) and μ(k) against openai/consistency_models' ``create_ema_and_scales_fn`` at the recorded steps
(tests/fixtures/README.md, consistency_models/): integers equal, μ equal as float64 (the same operations)."""

from __future__ import annotations

import pytest

from diffusion_canon.training.consistency_schedules import consistency_schedule
from test_karras_parity import CASES, TENSORS

SCHEDULES = CASES["ema_and_scales"]


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_the_reference(name):
    kwargs = SCHEDULES[name]["kwargs"]
    steps, emas, scales = (TENSORS[f"ema_and_scales/{name}/{key}"].tolist() for key in ("steps", "target_ema", "scales"))
    assert [consistency_schedule(int(step), **kwargs) for step in steps] == list(zip(emas, map(int, scales)))


def test_undefined_combination_is_named():
    with pytest.raises(ValueError, match="adaptive"):
        consistency_schedule(0, "adaptive", 0.95, "fixed", 40, 40, 1000, 100)
