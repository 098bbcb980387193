"""How close our float32 numbers must be to numbers recorded from the reference code on another machine.

Two correct float32 computations of the same formula differ by rounding wherever their kernels differ: torch picks
vectorised exp/log/tanh and reduction orders by CPU (AVX-512, AVX2 or none), so the same code on another CPU moves
values by an ulp or two, and a sampling loop can carry such a difference on. The bound used here is therefore
relative to the size of the values compared: at most ``ulps`` float32 spacings of the largest reference value in the
tensor (a norm-wise bound, which also covers elements near zero that come out of a cancellation).

Each family's ``ulps`` is twice the largest spread measured between torch's CPU kernel paths
(``ATEN_CPU_CAPABILITY=default|avx2|avx512``) and thread counts (1, 2) on the recorded inputs, by
``python tests/measure_parity_spread.py``; the figures are in README.md (Results). On the CPU kernel path the
fixtures were recorded with, most families are bit-identical.

With ``PARITY_SPREAD_LOG=FILE`` set, every comparison appends its observed spread (in these ulps) to FILE: that is how
the measurement script reads the spreads off the tests themselves.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch


def spacing_of_largest(expected: torch.Tensor) -> float:
    """The float32 spacing (one ulp) at the largest magnitude in ``expected``."""
    largest = expected.detach().abs().max().double().item()
    return float(np.spacing(np.float32(largest)))


def ulps_apart(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual − expected| in float32 spacings of the largest |expected|."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    delta = (actual.detach().double() - expected.detach().double()).abs().max().item()
    return delta / spacing_of_largest(expected) if delta else 0.0


def assert_parity(actual: torch.Tensor, expected: torch.Tensor, ulps: float, what: str = "") -> None:
    """Assert ``actual`` is within ``ulps`` spacings of the largest reference value (see the module docstring)."""
    observed = ulps_apart(actual, expected)
    log = os.environ.get("PARITY_SPREAD_LOG")
    if log:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(log, "a") as f:
            f.write(json.dumps({"test": test, "what": what, "ulps": observed}) + "\n")
    assert observed <= ulps, f"{what}: {observed:.3g} ulps of max |ref| = {expected.abs().max().item():.4g} (allowed {ulps})"
