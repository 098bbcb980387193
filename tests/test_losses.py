"""Properties of the diffusion losses that need no reference: KL identities, the discretized decoder is a
probability distribution over the 256 bins, the hybrid loss's stop-gradient, bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_canon.schedulers import ImprovedDDPMScheduler
from diffusion_canon.training.losses import (
    discretized_gaussian_log_likelihood,
    nll_bits_per_dim,
    normal_kl,
    prior_bpd,
    training_losses,
)

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)  # CI must not flake: fixed examples
finite = st.floats(-3.0, 3.0, allow_nan=False)


@given(mean=finite, logvar=st.floats(-8.0, 2.0))
@SETTINGS
def test_kl_of_a_distribution_with_itself_is_zero(mean, logvar):
    m, lv = torch.tensor([mean], dtype=torch.float64), torch.tensor([logvar], dtype=torch.float64)
    assert normal_kl(m, lv, m, lv).item() == pytest.approx(0.0, abs=1e-12)


@given(m1=finite, m2=finite, lv1=st.floats(-6.0, 2.0), lv2=st.floats(-6.0, 2.0))
@SETTINGS
def test_kl_matches_torch_distributions(m1, m2, lv1, lv2):
    p = torch.distributions.Normal(torch.tensor(m1, dtype=torch.float64), math.exp(lv1 / 2))
    q = torch.distributions.Normal(torch.tensor(m2, dtype=torch.float64), math.exp(lv2 / 2))
    ours = normal_kl(torch.tensor(m1, dtype=torch.float64), lv1, m2, lv2)
    assert ours.item() == pytest.approx(torch.distributions.kl_divergence(p, q).item(), rel=1e-9, abs=1e-12)


@given(mean=st.floats(-1.2, 1.2), log_scale=st.floats(-6.0, 0.5))
@SETTINGS
def test_discretized_likelihood_sums_to_one_over_256_bins(mean, log_scale):
    x = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0
    log_p = discretized_gaussian_log_likelihood(
        x, means=torch.full_like(x, mean), log_scales=torch.full_like(x, log_scale)
    )
    # the bins telescope exactly apart from the 1e-12 floors of the log-clamps
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-9 * 256 + 1e-6)


def _batch(variance_type="learned_range", T=40, B=4):
    s = ImprovedDDPMScheduler(num_train_timesteps=T, beta_schedule="cosine", variance_type=variance_type)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 256, (B, 3, 4, 4), generator=g).float() / 127.5 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 5, 20, T - 1])[:B]
    channels = 6 if variance_type.startswith("learned") else 3
    out = torch.randn(B, channels, 4, 4, generator=g).requires_grad_()
    return s, out, x0, s.add_noise(x0, noise, t), noise, t


def test_hybrid_loss_stops_the_vlb_gradient_on_the_mean():
    s, out, x0, xt, noise, t = _batch()
    terms = training_losses(s, out, x0, xt, noise, t, loss_type="rescaled_mse")
    (grad_vb,) = torch.autograd.grad(terms["vb"].sum(), out, retain_graph=True)
    assert torch.all(grad_vb[:, :3] == 0) and grad_vb[:, 3:].abs().sum() > 0
    (grad_mse,) = torch.autograd.grad(terms["mse"].sum(), out)
    assert torch.all(grad_mse[:, 3:] == 0) and grad_mse[:, :3].abs().sum() > 0
    kl = training_losses(s, out, x0, xt, noise, t, loss_type="kl")
    (grad_kl,) = torch.autograd.grad(kl["loss"].sum(), out)
    assert grad_kl[1:, :3].abs().sum() > 0  # the pure VLB does train the mean


def test_loss_type_relations():
    s, out, x0, xt, noise, t = _batch()
    mse = training_losses(s, out, x0, xt, noise, t, "mse")
    rescaled = training_losses(s, out, x0, xt, noise, t, "rescaled_mse")
    kl = training_losses(s, out, x0, xt, noise, t, "kl")
    rkl = training_losses(s, out, x0, xt, noise, t, "rescaled_kl")
    torch.testing.assert_close(rescaled["vb"], mse["vb"] * 40 / 1000)
    torch.testing.assert_close(rkl["loss"], kl["loss"] * 40)
    torch.testing.assert_close(kl["vb"], mse["vb"])
    torch.testing.assert_close(mse["mse"], ((out[:, :3] - noise) ** 2).mean(dim=(1, 2, 3)))
    fixed = _batch("fixed_small")
    terms = training_losses(*fixed[:1], *fixed[1:], loss_type="mse")
    torch.testing.assert_close(terms["loss"], terms["mse"])
    assert not terms["vb"].requires_grad


def test_prior_bpd_closed_form():
    s = ImprovedDDPMScheduler(num_train_timesteps=100, beta_schedule="cosine")
    x0 = torch.linspace(-1, 1, 2 * 3 * 4 * 4).view(2, 3, 4, 4)
    ac = s.train_schedule.alphas_cumprod[-1]
    x = x0.double().numpy()
    # KL(N(√ᾱ x, 1 − ᾱ) ‖ N(0, 1)) = ½(ᾱ x² + (1 − ᾱ) − 1 − log(1 − ᾱ)), in bits, averaged over dims
    kl = 0.5 * (ac * x**2 + (1 - ac) - 1 - np.log(1 - ac)) / np.log(2)
    np.testing.assert_allclose(prior_bpd(s, x0).numpy(), kl.reshape(2, -1).mean(1), rtol=1e-4, atol=1e-9)


def test_nll_bits_per_dim_sums_its_terms_and_draws_one_noise_per_step():
    s = ImprovedDDPMScheduler(num_train_timesteps=30, beta_schedule="cosine", variance_type="learned_range")
    x0 = torch.zeros(2, 3, 4, 4)
    seen = []

    def model(x, t):
        seen.append(int(t[0]))
        return torch.cat([torch.zeros_like(x), torch.zeros_like(x)], 1)

    out = nll_bits_per_dim(model, s, x0, generator=torch.Generator().manual_seed(0))
    assert seen == list(range(29, -1, -1))
    assert out["vb"].shape == (2, 30)
    torch.testing.assert_close(out["total_bpd"], out["vb"].sum(1) + out["prior_bpd"])
    assert torch.isfinite(out["total_bpd"]).all() and (out["vb"][:, :-1] >= 0).all()


def test_bad_input():
    s, out, x0, xt, noise, t = _batch()
    with pytest.raises(ValueError, match="loss_type"):
        training_losses(s, out, x0, xt, noise, t, loss_type="l1")
    with pytest.raises(ValueError, match="model_output has shape"):
        training_losses(s, out[:, :3], x0, xt, noise, t)
    with pytest.raises(ValueError, match="timesteps"):
        training_losses(s, out, x0, xt, noise, t + 1)
