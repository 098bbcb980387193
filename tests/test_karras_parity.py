"""The EDM (Karras) denoiser and its samplers against numbers recorded from openai/consistency_models' own
``KarrasDenoiser`` / ``karras_sample`` (tests/fixtures/README.md, consistency_models/): the σ grid, the
preconditioning, ``denoise`` and every sampler, run through the pipelines' one sampling loop with one
``torch.Generator`` seeded as the reference's global RNG was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffusion_canon.pipelines.sampling import denoise
from diffusion_canon.schedulers.scheduling_karras import (
    ConsistencyScheduler, KarrasEulerScheduler, KarrasHeunScheduler, ProgressiveDistillationScheduler, karras_sigmas,
)
from parity import assert_parity

FIXTURES = Path(__file__).parent / "fixtures" / "consistency_models"
CASES = json.loads((FIXTURES / "cases.json").read_text())
TENSORS = load_file(FIXTURES / "reference.safetensors")
SCHEDULERS = {"heun": KarrasHeunScheduler, "euler": KarrasEulerScheduler, "onestep": ConsistencyScheduler,
              "multistep": ConsistencyScheduler, "progdist": ProgressiveDistillationScheduler}
SAMPLING = [name for name, case in CASES["sampling"].items()
            if case["karras_sample_kwargs"]["sampler"] in SCHEDULERS and case["generator"] == "dummy"]
# In float32 spacings of the largest reference value (tests/parity.py). On the AVX2 / AVX-512 kernel paths (1 and 2
# threads) every case is bit-identical; on torch's no-vector path randn, pow and tanh/sin/log round differently:
# measured 0.17 ulps on the σ grid, 7.75 on x_T and 21 on the samples (heun with churn); the bounds are twice those
# (the grid's rounded up to one ulp).
GRID_ULPS = 1
NOISE_ULPS = 16
SAMPLING_ULPS = 42


def model_F(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The recording's synthetic network (cases.json "synthetic_networks")."""
    t = t.reshape(-1, 1, 1, 1)
    return 0.9 * torch.tanh(0.8 * x + t / 1000) + 0.1 * torch.sin(3 * x - t / 500)


class Loop:
    """What :func:`denoise` reads from a pipeline."""

    interrupt = False

    @staticmethod
    def progress_bar(iterable):
        return iterable


def scheduler_for(case: dict, **config):
    kwargs = case["karras_sample_kwargs"]
    cls = SCHEDULERS[kwargs["sampler"]]
    boundary = case["diffusion"] == "boundary"
    sigma_range = dict(sigma_min=kwargs["sigma_min"], sigma_max=float(kwargs["sigma_max"]))
    if kwargs["sampler"] == "multistep":
        sigma_range = dict(sigma_min=0.002, sigma_max=80.0)  # the reference passes its own range and the denoiser's ρ
    rho = kwargs["rho"] if kwargs["sampler"] != "multistep" else 7.0
    scheduler = cls(boundary_condition=boundary, clip_denoised=kwargs["clip_denoised"], rho=rho, **sigma_range,
                    **config)
    if kwargs["sampler"] == "heun":
        s_tmax = float(kwargs["s_tmax"]) if kwargs["s_tmax"] != "inf" else float("inf")
        scheduler.set_timesteps(case["steps"], s_churn=kwargs["s_churn"], s_tmin=kwargs["s_tmin"], s_tmax=s_tmax,
                                s_noise=kwargs["s_noise"])
    elif kwargs["sampler"] in ("euler", "progdist"):
        scheduler.set_timesteps(case["steps"])
    elif kwargs["sampler"] == "onestep":
        scheduler.set_timesteps(timesteps=[0], grid_size=case["steps"])
    else:
        scheduler.set_timesteps(timesteps=kwargs["ts"], grid_size=case["steps"])
    return scheduler


@pytest.mark.parametrize("name", SAMPLING)
def test_sampler_matches_karras_sample(name):
    case = CASES["sampling"][name]
    scheduler = scheduler_for(case)
    generator = torch.Generator().manual_seed(case["seed"])
    x_T = torch.randn(case["shape"], generator=generator) * scheduler.init_noise_sigma
    assert_parity(x_T, TENSORS[f"sampling/{name}/x_T"], NOISE_ULPS, "x_T")  # the same first draw
    seen = []

    def network(x, t):
        seen.append(float(t[0]))
        return model_F(x, t)

    final = denoise(Loop(), scheduler, network, x_T, generator=generator).clamp(-1, 1)
    assert len(seen) == case["network_evaluations"]
    torch.testing.assert_close(torch.tensor(seen), torch.tensor(case["network_t"]), rtol=0, atol=1e-3)
    assert_parity(final, TENSORS[f"sampling/{name}/final"], SAMPLING_ULPS, name)


@pytest.mark.parametrize("index", range(len(CASES["sigmas_karras"])))
def test_karras_grid(index):
    spec = CASES["sigmas_karras"][index]
    sigmas = karras_sigmas(spec["n"], spec["sigma_min"], spec["sigma_max"], spec["rho"])
    assert_parity(sigmas, TENSORS[spec["key"]], GRID_ULPS, spec["key"])


@pytest.mark.parametrize("boundary", [False, True])
def test_preconditioning_and_denoise(boundary):
    kind = "boundary" if boundary else "edm"
    scheduler = KarrasHeunScheduler(boundary_condition=boundary, clip_denoised=False)
    sigma = TENSORS["scalings/sigma"]
    for name, value in zip(("c_skip", "c_out", "c_in"), scheduler.scalings(sigma)):
        assert_parity(value, TENSORS[f"scalings/{kind}/{name}"], 4, name)
    x_t, sigmas = TENSORS["denoise/x_t"], TENSORS["denoise/sigmas"]
    model_input = torch.stack([scheduler.scale_model_input(x_t[i:i + 1], s)[0] for i, s in enumerate(sigmas)])
    t = scheduler.model_timestep(sigmas)
    assert_parity(model_input, TENSORS[f"denoise/{kind}/model_input_x"], 4, "c_in x")
    assert_parity(t, TENSORS[f"denoise/{kind}/model_input_t"], 4, "t")
    output = model_F(model_input, t)
    denoised = torch.stack([scheduler.denoised(output[i:i + 1], x_t[i:i + 1], s)[0] for i, s in enumerate(sigmas)])
    assert_parity(denoised, TENSORS[f"denoise/{kind}/denoised"], 4, "denoised")
