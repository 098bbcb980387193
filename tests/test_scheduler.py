"""Behaviour of ImprovedDDPMScheduler / ImprovedDDIMScheduler that needs no reference numbers: closed forms,
properties (hypothesis), the RNG contract, diffusers interop and bad input."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_canon.schedulers import (
    GaussianDiffusionSchedule,
    ImprovedDDIMScheduler,
    ImprovedDDPMScheduler,
    cosine_betas,
    linear_betas,
    space_timesteps,
)

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)  # CI must not flake: fixed examples


# -- schedules ---------------------------------------------------------------------------------------------------


def test_linear_betas_scale_with_T():
    for T in (1000, 250, 4000):
        betas = linear_betas(T)
        assert betas[0] == pytest.approx(1e-4 * 1000 / T, rel=1e-12)
        assert betas[-1] == pytest.approx(0.02 * 1000 / T, rel=1e-12)
        # the same continuous process: ∑β ≈ ∫β dt, independent of T
        assert betas.sum() == pytest.approx(0.5 * (1e-4 + 0.02) * 1000, rel=2e-3)


@given(T=st.integers(2, 4000))
@SETTINGS
def test_cosine_alpha_bar_closed_form(T):
    """ND Eq. 17: ᾱ_t = cos²(((t/T)+s)/(1+s)·π/2) / cos²(s/(1+s)·π/2), wherever β is not capped at 0.999."""
    ac = np.cumprod(1 - cosine_betas(T))
    t = np.arange(1, T + 1) / T
    f = lambda u: np.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    closed = f(t) / f(0.0)
    uncapped = np.cumprod(cosine_betas(T) < 0.999).astype(bool)
    np.testing.assert_allclose(ac[uncapped], closed[uncapped], rtol=1e-9, atol=1e-15)
    assert cosine_betas(T).max() <= 0.999


def test_squaredcos_alias_and_trained_betas():
    a = ImprovedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine")
    b = ImprovedDDPMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2")
    c = ImprovedDDPMScheduler(num_train_timesteps=50, trained_betas=cosine_betas(50).tolist())
    assert np.array_equal(a.train_schedule.betas, b.train_schedule.betas)
    assert np.array_equal(a.train_schedule.betas, c.train_schedule.betas)


# -- respacing ---------------------------------------------------------------------------------------------------


@given(T=st.integers(2, 600), data=st.data())
@SETTINGS
def test_respacing_preserves_marginals(T, data):
    """ᾱ'_i of the respaced process equals ᾱ_{S_i}: q(x_{S_i} | x_0) is unchanged (ND §4)."""
    n = data.draw(st.integers(1, T))
    kept = space_timesteps(T, str(n))
    assert len(kept) == n and kept[0] == 0 and kept == sorted(set(kept))
    assert kept[-1] == (T - 1 if n > 1 else 0)  # both ends kept; a single step is t = 0 (reference)
    full = GaussianDiffusionSchedule.from_betas(cosine_betas(T))
    respaced = full.respace(kept)
    # float64 round-off: ᾱ' is the cumulative product of 1 − β', β' = 1 − ᾱ_i/ᾱ_j re-derived as in the reference; for
    # the last, tiny ratios (~1e-8 on the cosine schedule) 1 − (1 − r) cancels to a relative error ~eps/r. Measured
    # over T = 2…600 with several n: at most 7.4e-9. A wrong respacing is off by orders of magnitude.
    np.testing.assert_allclose(respaced.alphas_cumprod, full.alphas_cumprod[kept], rtol=1e-7)


@given(T=st.integers(3, 500), data=st.data())
@SETTINGS
def test_section_counts(T, data):
    k = data.draw(st.integers(1, min(T, 4)))
    sizes = [T // k + (1 if i < T % k else 0) for i in range(k)]
    counts = [data.draw(st.integers(1, s)) for s in sizes]
    kept = space_timesteps(T, ",".join(map(str, counts)))
    starts = np.cumsum([0] + sizes)
    for i, count in enumerate(counts):
        assert sum(starts[i] <= t < starts[i + 1] for t in kept) == count


def test_ddim_spacing_uses_the_smallest_exact_stride():
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(1000, "ddim30") == list(range(0, 1000, 34))  # 1000 % 30 != 0: stride 34, last step 986
    assert space_timesteps(10, "ddim10") == list(range(10))


@pytest.mark.parametrize(
    "spacing, match",
    [("abc", "respacing string"), ("0", ">= 1"), ("", "respacing string"), ("10,x", "respacing string"),
     ("60,10", "cannot take 60"), ("ddim", "positive step count"), ("ddim7x", "positive step count"),
     ("ddim0", "positive step count"), ("ddim90", "no integer stride"), ("101", "cannot take 101")],
)
def test_bad_respacing_strings(spacing, match):
    with pytest.raises(ValueError, match=match):
        space_timesteps(100, spacing)


def test_set_timesteps_variants():
    s = ImprovedDDPMScheduler(num_train_timesteps=100)
    assert s.timesteps.tolist() == list(range(99, -1, -1))
    s.set_timesteps(10)
    assert s.timesteps.tolist() == [99, 88, 77, 66, 55, 44, 33, 22, 11, 0]
    s.set_timesteps(timesteps=[5, 50, 0])
    assert s.timesteps.tolist() == [50, 5, 0]
    np.testing.assert_allclose(s.schedule.alphas_cumprod, s.train_schedule.alphas_cumprod[[0, 5, 50]], rtol=1e-12)
    s.set_timesteps(timestep_respacing="")
    assert len(s.timesteps) == 100
    for kwargs, match in [
        (dict(num_inference_steps=101), "num_inference_steps"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(num_inference_steps=5, timestep_respacing="5"), "only one"),
        (dict(timesteps=[1, 1]), "distinct"),
        (dict(timesteps=[100]), r"\[0, 99\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            s.set_timesteps(**kwargs)


def test_timestep_not_in_schedule_and_model_timestep():
    s = ImprovedDDPMScheduler(num_train_timesteps=100, rescale_timesteps=True)
    s.set_timesteps(timestep_respacing="10")
    x = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match="not in the current schedule"):
        s.step(torch.zeros_like(x), 50, x)
    with pytest.raises(ValueError, match="not in the current schedule"):
        s.index_for_timestep(torch.tensor([99, 98]))
    assert s.index_for_timestep(torch.tensor(99)) == 9
    assert s.index_for_timestep(torch.tensor([0, 99])).tolist() == [0, 9]
    assert s.model_timestep(torch.tensor(88)).item() == pytest.approx(880.0)
    assert s.model_timestep(torch.tensor(88)).dtype == torch.float32
    assert ImprovedDDPMScheduler(num_train_timesteps=100).model_timestep(torch.tensor(88)).item() == 88
    assert s.previous_timestep(99) == 88 and s.previous_timestep(0) == -1


# -- variances ---------------------------------------------------------------------------------------------------


def test_learned_range_endpoints_equal_fixed_variances():
    """ND Eq. 15 at v = +1 is log β_t (fixed_large except at t = 0), at v = −1 the clipped log β̃_t (fixed_small)."""
    schedule = GaussianDiffusionSchedule.from_betas(cosine_betas(40))
    index = torch.arange(40)
    like = torch.zeros(40, 2, 3, 3)
    _, hi = schedule.model_variance("learned_range", index, like, torch.ones_like(like))
    _, lo = schedule.model_variance("learned_range", index, like, -torch.ones_like(like))
    _, small = schedule.model_variance("fixed_small", index, like)
    _, large = schedule.model_variance("fixed_large", index, like)
    torch.testing.assert_close(lo, small, rtol=0, atol=1e-6)
    torch.testing.assert_close(hi[1:], large[1:], rtol=0, atol=1e-6)
    assert torch.allclose(hi[0], torch.log(torch.tensor(schedule.betas[0], dtype=torch.float32)))


def test_learned_variance_is_finite_and_exp_of_output():
    s = ImprovedDDPMScheduler(num_train_timesteps=20, beta_schedule="cosine", variance_type="learned")
    x = torch.randn(2, 3, 4, 4)
    out = torch.cat([torch.randn_like(x), torch.full_like(x, -3.0)], dim=1)
    for t in s.timesteps:
        dist = s.p_mean_variance(out, x, t)
        assert torch.allclose(dist.variance, torch.exp(torch.tensor(-3.0)))
        x = s.step(out, t, x, generator=torch.Generator().manual_seed(0)).prev_sample
        assert torch.isfinite(x).all()


def test_wrong_channel_count():
    x = torch.zeros(2, 3, 4, 4)
    for variance_type, channels in [("learned_range", 3), ("fixed_small", 6)]:
        s = ImprovedDDPMScheduler(num_train_timesteps=30, variance_type=variance_type)
        with pytest.raises(ValueError, match="model_output has shape"):
            s.step(torch.zeros(2, channels, 4, 4), 29, x)


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(beta_schedule="quadratic"), "beta_schedule"), (dict(variance_type="fixed_small_log"), "variance_type"),
     (dict(prediction_type="x0"), "prediction_type"), (dict(num_train_timesteps=0), "num_train_timesteps"),
     (dict(trained_betas=[0.1] * 3), "trained_betas"), (dict(trained_betas=[0.0] * 10), r"trained_betas must lie"), (dict(num_train_timesteps=20), "num_train_timesteps > 20")],
)
def test_unknown_names(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ImprovedDDPMScheduler(num_train_timesteps=kwargs.pop("num_train_timesteps", 10), **kwargs)


# -- stepping ----------------------------------------------------------------------------------------------------


def test_ddpm_rng_contract_and_last_step_is_noiseless():
    """A non-final step draws exactly one randn(sample.shape) from the generator: prev = μ + σ z."""
    s = ImprovedDDPMScheduler(num_train_timesteps=50, variance_type="fixed_large")
    s.set_timesteps(timestep_respacing="5")
    x = torch.randn(2, 3, 4, 4)
    eps = torch.randn_like(x)
    for t in s.timesteps:
        gen = torch.Generator().manual_seed(3)
        out = s.step(eps, t, x, generator=gen).prev_sample
        dist = s.p_mean_variance(eps, x, t)
        if t == 0:
            torch.testing.assert_close(out, dist.mean)
            assert torch.equal(gen.get_state(), torch.Generator().manual_seed(3).get_state())
        else:
            z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
            torch.testing.assert_close(out, dist.mean + dist.variance.sqrt() * z)
            assert torch.equal(torch.randn(1, generator=gen), _second_draw(3, x.shape))


def _second_draw(seed, shape):
    g = torch.Generator().manual_seed(seed)
    torch.randn(shape, generator=g)
    return torch.randn(1, generator=g)


def test_ddim_eta0_deterministic_and_eta1_draws():
    s = ImprovedDDIMScheduler(num_train_timesteps=100)
    s.set_timesteps(timestep_respacing="ddim10")
    x, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    gen = torch.Generator().manual_seed(0)
    a = s.step(eps, 90, x, generator=gen).prev_sample
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())
    b = s.step(eps, 90, x).prev_sample
    assert torch.equal(a, b)
    c = s.step(eps, 90, x, generator=torch.Generator().manual_seed(0), eta=1.0).prev_sample
    assert not torch.equal(a, c)
    # η = 0 is exact DDIM (Song Eq. 12) with x̂_0 = clip((x − √(1−ᾱ) ε)/√ᾱ) and ε re-derived from it
    ac, ac_prev = s.train_schedule.alphas_cumprod[90], s.train_schedule.alphas_cumprod[80]
    x0 = ((x.double() - math.sqrt(1 - ac) * eps.double()) / math.sqrt(ac)).clamp(-1, 1)
    eps_hat = (x.double() - math.sqrt(ac) * x0) / math.sqrt(1 - ac)
    expected = math.sqrt(ac_prev) * x0 + math.sqrt(1 - ac_prev) * eps_hat
    torch.testing.assert_close(a.double(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="eta"):
        s.step(eps, 90, x, eta=-1.0)


def test_ddpm_guidance_shifts_mean_by_variance_times_gradient():
    s = ImprovedDDPMScheduler(num_train_timesteps=30, variance_type="learned_range")
    x = torch.randn(2, 3, 4, 4)
    out = torch.cat([torch.randn_like(x), torch.rand_like(x) * 2 - 1], 1)
    g = torch.randn_like(x)
    plain = s.step(out, 0, x).prev_sample
    guided = s.step(out, 0, x, guidance_gradient=g).prev_sample
    torch.testing.assert_close(guided - plain, s.p_mean_variance(out, x, 0).variance * g)


def test_batched_timesteps_step():
    s = ImprovedDDPMScheduler(num_train_timesteps=30)
    x, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    both = s.step(eps, torch.tensor([0, 0]), x).prev_sample
    torch.testing.assert_close(both, s.step(eps, 0, x).prev_sample)


def test_v_prediction_equals_epsilon_prediction():
    x0, eps = torch.randn(2, 3, 4, 4).clamp(-1, 1), torch.randn(2, 3, 4, 4)
    s_eps = ImprovedDDPMScheduler(num_train_timesteps=40, beta_schedule="cosine")
    s_v = ImprovedDDPMScheduler(num_train_timesteps=40, beta_schedule="cosine", prediction_type="v_prediction")
    t = torch.tensor([3, 30])
    xt = s_eps.add_noise(x0, eps, t)
    v = s_v.get_velocity(x0, eps, t)
    a = s_eps.p_mean_variance(eps, xt, t)
    b = s_v.p_mean_variance(v, xt, t)
    torch.testing.assert_close(a.pred_original_sample, b.pred_original_sample, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.mean, b.mean, atol=1e-5, rtol=1e-5)


def test_dynamic_thresholding():
    s = ImprovedDDPMScheduler(num_train_timesteps=30, thresholding=True, sample_max_value=2.0,
                              dynamic_thresholding_ratio=1.0)
    x0 = torch.tensor([[[[0.5, -1.5], [3.0, 0.1]]]])
    # s = clamp(max |x0| = 3, 1, 2) = 2 → clip to ±2 then divide by 2
    torch.testing.assert_close(s.process_original_sample(x0), torch.tensor([[[[0.25, -0.75], [1.0, 0.05]]]]))


def test_add_noise_ignores_inference_schedule():
    s = ImprovedDDPMScheduler(num_train_timesteps=100)
    x0, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    before = s.add_noise(x0, eps, torch.tensor([7, 63]))
    s.set_timesteps(timestep_respacing="ddim10")
    torch.testing.assert_close(s.add_noise(x0, eps, torch.tensor([7, 63])), before)
    ac = torch.tensor(s.train_schedule.alphas_cumprod[[7, 63]], dtype=torch.float32).view(-1, 1, 1, 1)
    torch.testing.assert_close(before, ac.sqrt() * x0 + (1 - ac).sqrt() * eps)
    with pytest.raises(ValueError, match="timesteps"):
        s.add_noise(x0, eps, torch.tensor([0, 100]))


# -- diffusers interop -------------------------------------------------------------------------------------------


def public_config(scheduler) -> dict:
    return {k: v for k, v in scheduler.config.items() if not k.startswith("_")}


@pytest.mark.parametrize("cls", [ImprovedDDPMScheduler, ImprovedDDIMScheduler])
def test_save_pretrained_round_trip(cls, tmp_path):
    s = cls(num_train_timesteps=64, beta_schedule="cosine", variance_type="learned_range", rescale_timesteps=True,
            trained_betas=None, thresholding=True)
    s.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    assert public_config(loaded) == public_config(s)
    assert np.array_equal(loaded.train_schedule.betas, s.train_schedule.betas)
    assert DDPMScheduler in s.compatibles and DDIMScheduler in s.compatibles
    other = ImprovedDDIMScheduler if cls is ImprovedDDPMScheduler else ImprovedDDPMScheduler
    assert public_config(other.from_config(s.config)) == public_config(s)


def test_from_diffusers_config():
    ours = ImprovedDDPMScheduler.from_config(DDPMScheduler(variance_type="learned_range").config)
    assert ours.config.variance_type == "learned_range" and ours.config.num_train_timesteps == 1000
    np.testing.assert_allclose(ours.train_schedule.betas, DDPMScheduler().betas.double().numpy(), rtol=1e-6)
    diff = DDPMScheduler.from_config(ImprovedDDPMScheduler(beta_schedule="squaredcos_cap_v2").config)
    np.testing.assert_allclose(diff.betas.numpy(), ImprovedDDPMScheduler(beta_schedule="cosine").betas.numpy(),
                               rtol=1e-5)
