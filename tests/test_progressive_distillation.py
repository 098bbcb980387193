"""Progressive distillation (Salimans & Ho 2022): the VP route of the loss is Algorithm 2 written in its own
variables (z_t = α_t x + σ_t ε, two DDIM steps, x̃ = (z_t'' − (σ_t''/σ_t) z_t)/(α_t'' − (σ_t''/σ_t) α_t), truncated-SNR
weight), the student's sampler is DDIM on its N + 1 timesteps, and training/train_progressive_distillation.py halves
the steps each round, writes a folder per round that samples with exactly its N, and resumes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

from diffusion_canon.pipelines import ADMPipeline, EDMPipeline, save_pipeline_folder
from diffusion_canon.pipelines.sampling import denoise
from diffusion_canon.schedulers import ImprovedDDPMScheduler, KarrasDiffusionScheduler, ProgressiveDistillationScheduler
from diffusion_canon.training.karras_losses import progressive_distillation_loss
from script_helpers import load_script, reset_accelerate_state
from test_edm_pipeline import tiny_unet
from test_karras_parity import Loop

train_pd = load_script("train_progressive_distillation")

# a VP schedule of 9 training timesteps: with N = 4 student steps every level and half-level is a training timestep
# (8, 7, …, 0), so σ_t is read from the table, with no interpolation
ALPHAS_CUMPROD = torch.linspace(0.98, 0.02, 9, dtype=torch.float64).tolist()
N = 4


def v_network(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A synthetic v-predicting network of (z_t, training timestep)."""
    t = t.reshape(-1, 1, 1, 1)
    return 0.7 * torch.tanh(0.9 * z - t / 7) + 0.2 * torch.sin(2 * z + t / 3)


def student_network(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, 1, 1, 1)
    return 0.6 * torch.tanh(1.1 * z + t / 5) - 0.1 * torch.cos(z - t / 4)


def vp(prediction_type: str, cls=KarrasDiffusionScheduler) -> KarrasDiffusionScheduler:
    sigma = lambda a: ((1 - a) / a) ** 0.5  # noqa: E731
    return cls(sigma_min=sigma(ALPHAS_CUMPROD[0]), sigma_max=sigma(ALPHAS_CUMPROD[-1]), clip_denoised=False,
               vp_alphas_cumprod=ALPHAS_CUMPROD, vp_prediction_type=prediction_type, spacing="timesteps")


def alpha_sigma(timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.tensor(ALPHAS_CUMPROD, dtype=torch.float64)[timestep].float().reshape(-1, 1, 1, 1)
    return a.sqrt(), (1 - a).sqrt()


def x_hat(network, prediction_type: str, z: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """The network's x̂ in VP variables: x̂ = α z − σ v (v-prediction) or the output itself (x₀-prediction)."""
    alpha, sigma = alpha_sigma(timestep)
    out = network(z, timestep.float())
    return alpha * z - sigma * out if prediction_type == "v_prediction" else out


@pytest.mark.parametrize("student_prediction", ["v_prediction", "sample"])
def test_vp_loss_is_algorithm_2(student_prediction):
    x = torch.tanh(1.5 * torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3)))
    generator = torch.Generator().manual_seed(7)
    terms = progressive_distillation_loss(student_network, vp(student_prediction), v_network, vp("v_prediction"), x, N,
                                          weight_schedule="truncated-snr", generator=generator)

    # Algorithm 2 with the same draws: ε, then i (level n = i here counts down from t = 1)
    replay = torch.Generator().manual_seed(7)
    eps = torch.randn(x.shape, generator=replay)
    i = torch.randint(0, N, (x.shape[0],), generator=replay)
    assert torch.equal(i, terms["indices"])
    t, t1, t2 = (8 - 2 * i), (8 - 2 * i - 1), (8 - 2 * i - 2)  # t, t − 0.5/N, t − 1/N as training timesteps
    (a, s), (a1, s1), (a2, s2) = alpha_sigma(t), alpha_sigma(t1), alpha_sigma(t2)
    z = a * x + s * eps
    teacher = x_hat(v_network, "v_prediction", z, t)
    z1 = a1 * teacher + s1 / s * (z - a * teacher)
    teacher1 = x_hat(v_network, "v_prediction", z1, t1)
    z2 = a2 * teacher1 + s2 / s1 * (z1 - a1 * teacher1)
    target = (z2 - s2 / s * z) / (a2 - s2 / s * a)
    student = x_hat(student_network, student_prediction, z, t)
    weight = torch.clamp(a**2 / s**2, min=1.0).flatten()
    expected = weight * ((target - student) ** 2).mean(dim=(1, 2, 3))
    # float32 throughout, and the two compute z in different orders (z = α x + σ ε against x_σ/√(1 + σ²) with
    # x_σ = x + (σ/α) ε): the measured difference is under 2e-6 relative; the bound is 1e-5
    torch.testing.assert_close(terms["loss"], expected, rtol=1e-5, atol=1e-7)


def test_student_sampler_is_ddim_on_its_timesteps():
    scheduler = vp("v_prediction", ProgressiveDistillationScheduler)
    scheduler.set_timesteps(N)
    generator = torch.Generator().manual_seed(5)
    x_T = torch.randn(2, 3, 8, 8, generator=generator) * scheduler.init_noise_sigma
    final = denoise(Loop(), scheduler, v_network, x_T, generator=generator)

    timesteps = [8, 6, 4, 2, 0]  # DDIM (η = 0) in VP variables, z_T = α_T x_T
    z = alpha_sigma(torch.tensor([8]))[0] * x_T
    for t, t_next in zip(timesteps, timesteps[1:]):
        (a, s), (a_next, s_next) = alpha_sigma(torch.tensor([t])), alpha_sigma(torch.tensor([t_next]))
        x0 = x_hat(v_network, "v_prediction", z, torch.tensor([t] * 2))
        z = a_next * x0 + s_next / s * (z - a * x0)
    # the sampler ends at x(σ_min) = z_0/α_0
    torch.testing.assert_close(final, z / alpha_sigma(torch.tensor([0]))[0], rtol=1e-5, atol=1e-6)


def test_timestep_spacing_reads_the_training_table():
    scheduler = vp("v_prediction")
    table = torch.tensor([((1 - a) / a) ** 0.5 for a in ALPHAS_CUMPROD], dtype=torch.float32)
    levels = scheduler.level(torch.arange(9) / 8)
    torch.testing.assert_close(levels, table.flip(0), rtol=2e-6, atol=0)
    with pytest.raises(ValueError, match="spacing"):
        KarrasDiffusionScheduler(spacing="timesteps")
    with pytest.raises(ValueError, match="spacing"):
        KarrasDiffusionScheduler(spacing="linear")


# ------------------------------------------------------------------------------------------------ the script
DATA = ["--resolution", "8", "--num_images", "8", "--characters", "ABC", "--train_batch_size", "4",
        "--learning_rate", "1e-3", "--seed", "0", "--num_validation_images", "0", "--checkpointing_steps", "0"]


@pytest.fixture(scope="module")
def vp_teacher(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("teacher") / "adm"
    scheduler = ImprovedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine", prediction_type="v_prediction")
    save_pipeline_folder(ADMPipeline(tiny_unet(), scheduler), folder)  # 3 classes named a, b, c; 8×8
    return folder


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_rounds_write_students_that_sample_with_their_steps(tmp_path, vp_teacher):
    out = tmp_path / "pd"
    train_pd.main([*DATA, "--teacher_model_path", str(vp_teacher), "--teacher_steps", "4", "--steps_per_round", "1",
                   "--prediction_type", "sample", "--output_dir", str(out)])
    assert sorted(p.name for p in out.glob("steps-*")) == ["steps-1", "steps-2"]
    for n in (2, 1):
        pipe = DiffusionPipeline.from_pretrained(out / f"steps-{n}", trust_remote_code=True)
        assert type(pipe).__name__ == "EDMPipeline" and pipe.config.distilled_steps == n
        assert pipe.scheduler.config.spacing == "timesteps" and pipe.scheduler.config.vp_prediction_type == "sample"
        pipe.set_progress_bar_config(disable=True)
        assert pipe(class_labels=[0, 2], output_type="np").images.shape == (2, 8, 8, 3)
        assert pipe.num_timesteps == n
        with pytest.raises(ValueError, match=f"distilled for {n} steps"):
            pipe(class_labels=[0], num_inference_steps=2 * n)
        pipe(class_labels=[0], sampler="euler", num_inference_steps=3)  # a student is still a denoiser
        assert f"{n}-step student" in (out / f"steps-{n}" / "README.md").read_text()
    # the first student's weights moved from the teacher's, and the second from the first's
    teacher, first, second = weights(vp_teacher), weights(out / "steps-2"), weights(out / "steps-1")
    assert any(not torch.equal(teacher[k], first[k]) for k in teacher)
    assert any(not torch.equal(first[k], second[k]) for k in first)


def resume_args(out: Path, teacher: Path, *extra: str) -> list[str]:
    return [*DATA, "--teacher_model_path", str(teacher), "--output_dir", str(out), "--teacher_steps", "8",
            "--steps_per_round", "2", "--checkpointing_steps", "3", "--grid", "karras", *extra]


def killed_after(calls: int):
    """The script's loss, raising on call ``calls + 1``: a kill during that training step."""
    seen = []

    def loss(*args, **kwargs):
        if len(seen) == calls:
            raise KeyboardInterrupt
        seen.append(1)
        return progressive_distillation_loss(*args, **kwargs)

    return loss


def test_resume_is_exact_across_a_round(tmp_path, vp_teacher, monkeypatch):
    straight, resumed, forgetful = tmp_path / "straight", tmp_path / "resumed", tmp_path / "forgetful"
    train_pd.main(resume_args(straight, vp_teacher))
    for out in (resumed, forgetful):  # killed in step 4, after the checkpoint in the middle of the second round
        reset_accelerate_state()
        monkeypatch.setattr(train_pd, "progressive_distillation_loss", killed_after(3))
        with pytest.raises(KeyboardInterrupt):
            train_pd.main(resume_args(out, vp_teacher))
        monkeypatch.undo()
        assert sorted(p.name for p in out.iterdir() if p.name.startswith(("checkpoint-", "steps-"))) == \
            ["checkpoint-3", "steps-4"]
    reset_accelerate_state()
    train_pd.main(resume_args(resumed, vp_teacher, "--resume_from_checkpoint", "latest"))
    for n in (4, 2, 1):
        reference, after = weights(straight / f"steps-{n}"), weights(resumed / f"steps-{n}")
        assert all(torch.equal(reference[k], after[k]) for k in reference), n

    # without the round's teacher in the checkpoint (the step-2 student) the resumed run ends elsewhere: the test
    # above can fail
    reset_accelerate_state()
    monkeypatch.setattr(train_pd.RoundTeacher, "load_state_dict", lambda self, state, strict=True: None)
    train_pd.main(resume_args(forgetful, vp_teacher, "--resume_from_checkpoint", "latest"))
    reference, lost = weights(straight / "steps-1"), weights(forgetful / "steps-1")
    assert not all(torch.equal(reference[k], lost[k]) for k in reference)


@pytest.mark.parametrize(("extra", "message"), [
    (["--teacher_steps", "6"], "power of 2"),
    (["--teacher_steps", "1"], "power of 2"),
    (["--max_train_steps", "3"], "disagrees"),
    (["--use_ema"], "use_ema"),
    (["--weight_schedule", "ict"], "weight_schedule"),
])
def test_bad_flags_fail_before_training(tmp_path, capsys, vp_teacher, extra, message):
    with pytest.raises(SystemExit):
        train_pd.main([*DATA, "--teacher_model_path", str(vp_teacher), "--output_dir", str(tmp_path / "x"),
                       "--teacher_steps", "4", "--steps_per_round", "1", *extra])
    assert message in capsys.readouterr().err


def test_a_consistency_model_is_no_teacher(tmp_path):
    from diffusion_canon.schedulers import ConsistencyScheduler

    folder = tmp_path / "cm"
    save_pipeline_folder(EDMPipeline(tiny_unet(), ConsistencyScheduler(boundary_condition=True)), folder)
    with pytest.raises(ValueError, match="consistency model"):
        train_pd.main([*DATA, "--teacher_model_path", str(folder), "--output_dir", str(tmp_path / "x"),
                       "--teacher_steps", "4", "--steps_per_round", "1"])


def test_a_teacher_of_other_classes_is_refused(tmp_path, vp_teacher):
    data = [*DATA]
    data[data.index("ABC")] = "ABCD"  # four classes against the teacher's three
    with pytest.raises(ValueError, match="3 classes, the data 4"):
        train_pd.main([*data, "--teacher_model_path", str(vp_teacher), "--output_dir", str(tmp_path / "x"),
                       "--teacher_steps", "4", "--steps_per_round", "1"])
