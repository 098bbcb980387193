"""Timestep samplers: the loss-second-moment weights equal improved-diffusion's (tests/fixtures/README.md), the
importance weights are 1/(T p_t), and two torch.distributed processes stay in lockstep."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from diffusion_canon.schedulers import ImprovedDDPMScheduler
from diffusion_canon.training.timestep_samplers import (
    LossSecondMomentResampler,
    UniformSampler,
    create_named_schedule_sampler,
)

REF = load_file(Path(__file__).parent / "fixtures" / "improved_diffusion" / "reference.safetensors")


def test_loss_second_moment_weights_match_reference():
    sampler = LossSecondMomentResampler(20, history_per_term=10, uniform_prob=0.001)
    ts, losses = REF["resampler/ts"], REF["resampler/losses"]
    checked = []
    for step in range(ts.shape[0]):
        sampler.update_with_local_losses(ts[step], losses[step])
        key = f"resampler/weights_after_{step}"
        if key in REF:
            np.testing.assert_allclose(sampler.weights(), REF[key].numpy(), rtol=1e-12, atol=0)
            checked.append(sampler.warmed_up())
    assert checked == [False, False, True, True]  # uniform before warm-up, √E[L²] after


def test_importance_weights_and_uniform():
    sampler = LossSecondMomentResampler(ImprovedDDPMScheduler(num_train_timesteps=30), uniform_prob=0.01)
    for t in range(30):
        sampler.update_with_all_losses([t] * 10, [float(t + 1)] * 10)
    p = sampler.weights() / sampler.weights().sum()
    np.testing.assert_allclose(p, 0.99 * np.arange(1, 31) / np.arange(1, 31).sum() + 0.01 / 30, rtol=1e-12)
    t, w = sampler.sample(4096, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.shape == w.shape == (4096,)
    torch.testing.assert_close(w, torch.from_numpy(1 / (30 * p[t.numpy()])).float())
    # importance sampling is unbiased: E[w · L_t] ≈ mean_t L_t
    assert (w * (t + 1).float()).mean().item() == pytest.approx(15.5, rel=0.05)
    t, w = UniformSampler(30).sample(64, generator=torch.Generator().manual_seed(0))
    assert torch.all(w == 1) and t.min() >= 0 and t.max() < 30


def test_state_dict_round_trip_and_bad_input():
    a = LossSecondMomentResampler(5, history_per_term=2)
    a.update_with_all_losses([0, 1, 2, 3, 4] * 3, list(range(15)))
    b = LossSecondMomentResampler(5, history_per_term=2)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.weights(), b.weights())
    assert b.loss_history[0].tolist() == [5.0, 10.0]  # oldest dropped
    with pytest.raises(ValueError, match="outside"):
        a.update_with_all_losses([5], [1.0])
    with pytest.raises(ValueError, match="allowed"):
        create_named_schedule_sampler("fancy", 10)
    assert isinstance(create_named_schedule_sampler("loss-second-moment", 10), LossSecondMomentResampler)


def _worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    sampler = LossSecondMomentResampler(8, history_per_term=3)
    g = torch.Generator().manual_seed(rank)
    for _ in range(20):
        size = 3 + rank  # unequal batch sizes on the two ranks
        t = torch.randint(0, 8, (size,), generator=g)
        sampler.update_with_local_losses(t, torch.rand(size, generator=g) + t)
    np.save(f"{out}/{rank}.npy", sampler.weights())
    dist.destroy_process_group()


@pytest.mark.slow  # two spawned interpreters: ~30 s on a busy 2-core box
def test_two_processes_stay_identical(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    w0, w1 = np.load(tmp_path / "0.npy"), np.load(tmp_path / "1.npy")
    np.testing.assert_array_equal(w0, w1)
    single = LossSecondMomentResampler(8, history_per_term=3)  # the same batches, concatenated in rank order
    gens = [torch.Generator().manual_seed(r) for r in range(2)]
    for _ in range(20):
        ts, ls = [], []
        for rank, g in enumerate(gens):
            t = torch.randint(0, 8, (3 + rank,), generator=g)
            ts += t.tolist()
            ls += (torch.rand(3 + rank, generator=g) + t).tolist()
        single.update_with_all_losses(ts, ls)
    np.testing.assert_allclose(w0, single.weights(), rtol=1e-7)
    assert single.warmed_up()
