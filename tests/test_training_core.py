"""The shared training core on a toy regression: exact resume, checkpoint rotation, clipping, AdamW parity for
parameters without a gradient, dtypes, Hub upload."""

from __future__ import annotations

import os
import random
from unittest import mock

import pytest
import torch
from torch.utils.data import Dataset

from diffusion_canon.training import (
    TrainingRun,
    list_checkpoints,
    parse_training_args,
    push_to_hub,
    resolve_checkpoint,
    training_parser,
    write_model_card,
)
from diffusion_canon.training.gradients import ContiguousGradients
from script_helpers import fresh_accelerate_state, reset_accelerate_state  # noqa: F401 (fixture)


class NoisyLine(Dataset):
    """y = x . w*, with a `random`-module jitter in __getitem__ (like a random crop), so data loading consumes the
    Python RNG that a resumed run must restore."""

    def __init__(self, n: int = 10) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] * (1 + 0.01 * random.random()), self.y[i]


class Crash(RuntimeError):
    pass


def toy_main(argv: list[str], crash_at: int | None = None, width: int = 1,
             reorder: bool = False) -> dict[str, torch.Tensor]:
    """A minimal training script over the core; returns the final weights (and EMA weights when --use_ema).
    ``width`` and ``reorder`` (trainable parameters listed in reverse) stand for a changed model layout."""
    args = parse_training_args(training_parser("toy", learning_rate=0.05), argv)
    run = TrainingRun(args, "toy")
    model = torch.nn.Linear(3, width)
    dataloader = run.dataloader(NoisyLine())
    run.trainable(list(model.parameters())[::-1] if reorder else model.parameters())
    model = run.prepare(model)

    def validation():
        torch.randn(5)  # validation draws from the RNG; it must not shift the training noise
        if run.global_step == crash_at:
            raise Crash
        return []

    run.validation = validation
    for x, y in run.batches(dataloader):
        with run.accumulate(model):
            noise = torch.randn_like(y)  # like diffusion noise: global torch RNG
            run.backward(((model(x) - y - 0.1 * noise) ** 2).mean())
    run.final_validation()
    run.end()
    return {k: v.detach().clone() for k, v in run.unwrap(model).state_dict().items()}


def toy_args(output_dir, *extra: str) -> list[str]:
    return ["--output_dir", str(output_dir), "--seed", "3", "--train_batch_size", "3", "--gradient_accumulation_steps",
            "2", "--max_train_steps", "7", "--lr_scheduler", "linear", "--checkpointing_steps", "3",
            "--validation_steps", "1", "--max_grad_norm", "0.5", *extra]


@pytest.mark.parametrize("ema", [[], ["--use_ema", "--ema_decay", "0.5"]], ids=["plain", "ema"])
def test_resume_mid_epoch_is_exact(tmp_path, ema):
    # 10 samples, batch 3 -> 4 batches per epoch; accumulation 2 -> 2 updates per epoch; step 3 is mid-epoch 2.
    reference = toy_main(toy_args(tmp_path / "straight", *ema))
    with pytest.raises(Crash):
        toy_main(toy_args(tmp_path / "crashed", *ema), crash_at=5)
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path / "crashed"))] == ["checkpoint-3"]
    resumed = toy_main(toy_args(tmp_path / "crashed", *ema, "--resume_from_checkpoint", "latest"))
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name
    # and resuming from an explicit path (outside output_dir) gives the same weights
    again = toy_main(toy_args(tmp_path / "elsewhere", *ema, "--resume_from_checkpoint",
                              str(tmp_path / "crashed" / "checkpoint-3")))
    assert all(torch.equal(reference[k], again[k]) for k in reference)


def test_resuming_a_finished_run_trains_no_further_step(tmp_path):
    # constant LR: under the default linear decay an extra step at lr = 0 would go unnoticed
    flags = ("--max_train_steps", "6", "--lr_scheduler", "constant")
    finished = toy_main(toy_args(tmp_path / "run", *flags))
    assert os.path.basename(list_checkpoints(str(tmp_path / "run"))[-1]) == "checkpoint-6"
    again = toy_main(toy_args(tmp_path / "run", *flags, "--resume_from_checkpoint", "latest"))
    assert all(torch.equal(finished[k], again[k]) for k in finished)


def test_toy_run_is_sensitive_to_seed_and_ema(tmp_path):
    """The exactness test above can fail: another seed, or EMA, ends at other weights."""
    reference = toy_main(toy_args(tmp_path / "a"))
    assert not torch.equal(reference["weight"], toy_main(toy_args(tmp_path / "b", "--seed", "4"))["weight"])
    ema = toy_main(toy_args(tmp_path / "c", "--use_ema", "--ema_decay", "0.5"))
    assert not torch.equal(reference["weight"], ema["weight"])


def test_checkpoints_total_limit_and_atomic_names(tmp_path):
    toy_main(toy_args(tmp_path, "--checkpointing_steps", "1", "--checkpoints_total_limit", "2"))
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path))] == ["checkpoint-6", "checkpoint-7"]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.parametrize("change", [{"width": 2}, {"reorder": True}], ids=["resized", "reordered"])
def test_resume_from_another_model_layout_is_a_clear_error(tmp_path, change):
    toy_main(toy_args(tmp_path, "--max_train_steps", "3"))
    reset_accelerate_state()
    with pytest.raises(ValueError, match="resume_from_checkpoint .*checkpoint-3.*different model"):
        toy_main(toy_args(tmp_path, "--resume_from_checkpoint", "latest"), **change)


def test_resume_path_must_exist(tmp_path):
    with pytest.raises(ValueError, match="resume_from_checkpoint.*does not exist"):
        toy_main(toy_args(tmp_path, "--resume_from_checkpoint", str(tmp_path / "nope")))
    # "latest" with nothing saved yet starts fresh (same command launches and relaunches a job)
    assert resolve_checkpoint("latest", str(tmp_path)) is None


def test_gradient_clipping_applies_to_generator_params(tmp_path):
    """The optimizer sees gradients of norm <= --max_grad_norm even when trainable() got a one-shot generator
    (diffusers' LoRA example clips an exhausted generator: a silent no-op)."""
    args = parse_training_args(training_parser("clip"), toy_args(tmp_path, "--max_grad_norm", "1e-3",
                                                                  "--gradient_accumulation_steps", "1"))
    run = TrainingRun(args, "clip")
    model = torch.nn.Linear(3, 1)
    run.trainable(p for p in model.parameters())
    dataloader = run.dataloader(NoisyLine())
    model = run.prepare(model)
    norms = []
    run.optimizer.optimizer.register_step_pre_hook(
        lambda opt, *_: norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in run.params])))
    )
    x, y = next(iter(dataloader))
    with run.accumulate(model):
        run.backward(((model(x) - y) ** 2).mean() * 1e3)
    assert len(norms) == 1 and norms[0] <= 1e-3 * (1 + 1e-5)


def test_contiguous_gradients_are_the_per_tensor_gradients():
    """Backward into the buffer's views gives the per-tensor gradients (accumulating in place), clip_ follows
    clip_grad_norm_ (a parameter without a gradient counts for nothing in either), the optimizer sees ``None`` for a
    parameter that got no gradient since the last zero_, zero_ zeros every gradient, and a gradient replaced behind
    the buffer's back is an error."""
    torch.manual_seed(0)

    def make():  # the last layer is never used
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2), torch.nn.Linear(2, 2))

    reference, model = make(), make()
    model.load_state_dict(reference.state_dict())
    gradients = ContiguousGradients(list(model.parameters()))
    x = torch.randn(5, 3)
    for _ in range(2):
        reference[:3](x).square().sum().backward()
        model[:3](x).square().sum().backward()
    assert reference[3].weight.grad is None and not model[3].weight.grad.any()
    for p, q in zip(reference[:3].parameters(), model[:3].parameters()):
        torch.testing.assert_close(q.grad, p.grad)
    expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.1)
    assert expected > 0.1  # so clipping scales
    torch.testing.assert_close(gradients.clip_(0.1), expected)
    for p, q in zip(reference[:3].parameters(), model[:3].parameters()):
        torch.testing.assert_close(q.grad, p.grad)
    with gradients.received_only():
        assert [q.grad is None for q in model.parameters()] == [p.grad is None for p in reference.parameters()]
    gradients.check()  # the views are back
    gradients.zero_()
    assert all(not q.grad.any() for q in model.parameters())
    with gradients.received_only():  # nothing received since zero_
        assert all(q.grad is None for q in model.parameters())
    (0.0 * model(x).sum()).backward()  # an all-zero gradient is still a gradient (torch AdamW decays such a weight)
    with gradients.received_only():
        assert all(q.grad is not None for q in model.parameters())
    gradients.check()
    model.zero_grad()  # set_to_none: the buffer no longer sees these gradients
    with pytest.raises(RuntimeError, match=r"parameter 0 \(4, 3\) was replaced"):
        gradients.check()


class Branches(torch.nn.Module):
    """A trunk used in every call; a branch used in every third call; a head whose gradient is exactly zero but
    defined; and a layer never used. The branch gets no gradient in some updates, the unused layer in none."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk, self.branch, self.zeroed, self.unused = (torch.nn.Linear(3, 1) for _ in range(4))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        y = self.trunk(x) + 0.0 * self.zeroed(x)
        return y + self.branch(x) if self.calls % 3 == 0 else y


@pytest.mark.parametrize("accumulation, max_grad_norm", [(1, 0.0), (2, 0.0), (2, 0.05)],
                         ids=["no-accumulation", "accumulation", "accumulation-clipped"])
def test_parameters_without_gradient_follow_adamw(tmp_path, accumulation, max_grad_norm):
    """The training core steps like torch AdamW with zero_grad(set_to_none=True): a parameter that got no gradient
    in an update is skipped (no weight decay, no moment decay, no step count), one whose gradient is all zeros is
    stepped. Weights and optimizer state are bit-equal without clipping. With clipping they agree to float32 rounding
    only: the buffer's norm is one reduction over all gradients, clip_grad_norm_'s the norm of the per-tensor norms
    (another summation order), so the clipping factors differ in the last bits."""
    args = parse_training_args(training_parser("adamw", learning_rate=0.05), toy_args(
        tmp_path, "--gradient_accumulation_steps", str(accumulation), "--max_grad_norm", str(max_grad_norm),
        "--lr_scheduler", "constant", "--adam_weight_decay", "0.1", "--checkpointing_steps", "0"))
    run = TrainingRun(args, "adamw")
    torch.manual_seed(0)
    model = Branches()
    reference = Branches()
    reference.load_state_dict(model.state_dict())
    dataloader = run.dataloader(NoisyLine())
    run.trainable(model.parameters())
    model = run.prepare(model)
    assert run.gradients is not None  # the buffer path is the one under test
    optimizer = torch.optim.AdamW(reference.parameters(), lr=0.05, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=0.1, eps=args.adam_epsilon, fused=True)
    norms = []
    for x, y in run.batches(dataloader):
        with run.accumulate(model):
            run.backward(((model(x) - y) ** 2).mean())
        (((reference(x) - y) ** 2).mean() / accumulation).backward()
        if run.accelerator.sync_gradients:
            if max_grad_norm:
                norms.append(torch.nn.utils.clip_grad_norm_(reference.parameters(), max_grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert run.global_step == 7 and reference.calls == model.calls == 7 * accumulation
    if max_grad_norm:
        assert max(norms) > max_grad_norm  # clipping scaled some updates
    state = run.optimizer.optimizer.state

    def agree(got, expected, what, exact):
        if exact:
            assert torch.equal(got, expected), what
        else:
            torch.testing.assert_close(got, expected, msg=what)

    for (name, p), q in zip(run.unwrap(model).named_parameters(), reference.parameters()):
        agree(p, q, name, exact=not max_grad_norm)
        got, expected = state.get(p, {}), optimizer.state.get(q, {})
        assert got.keys() == expected.keys(), name
        for key in expected:
            agree(got[key], expected[key], f"{name} {key}", exact=key == "step" or not max_grad_norm)
    steps = {name: int(state.get(p, {}).get("step", 0)) for name, p in run.unwrap(model).named_parameters()}
    # the branch is skipped in some updates, the unused layer in all, the zero-gradient head in none
    assert 0 < steps["branch.weight"] < steps["zeroed.weight"] == steps["trunk.weight"] == 7
    assert steps["unused.weight"] == 0


def test_accumulated_update_is_the_mean_gradient_of_its_micro_batches(tmp_path):
    """With --gradient_accumulation_steps 2 the optimizer sees, at each update, the mean gradient of exactly the two
    micro-batches since the previous update, at the weights of that moment (computed here independently)."""
    args = parse_training_args(training_parser("acc"), toy_args(
        tmp_path, "--max_grad_norm", "0", "--max_train_steps", "2", "--checkpointing_steps", "0"))
    run = TrainingRun(args, "acc")
    model = torch.nn.Linear(3, 1)
    run.trainable(model.parameters())
    dataloader = run.dataloader(NoisyLine())
    model = run.prepare(model)
    updates, batches = [], []
    run.optimizer.optimizer.register_step_pre_hook(lambda opt, *_: updates.append(
        ([p.detach().clone() for p in run.params], [p.grad.clone() for p in run.params])))
    for x, y in run.batches(dataloader):
        batches.append((x, y))
        with run.accumulate(model):
            run.backward(((model(x) - y) ** 2).mean())
    assert len(updates) == 2 and len(batches) == 4
    for k, (weights, grads) in enumerate(updates):
        weight, bias = (w.requires_grad_() for w in weights)
        loss = sum(((x @ weight.T + bias - y) ** 2).mean() for x, y in batches[2 * k : 2 * k + 2]) / 2
        for got, expected in zip(grads, torch.autograd.grad(loss, [weight, bias])):
            torch.testing.assert_close(got, expected)


def test_trainable_params_fp32_under_bf16(tmp_path):
    args = parse_training_args(training_parser("dtype"), toy_args(tmp_path, "--mixed_precision", "bf16"))
    run = TrainingRun(args, "dtype")
    assert run.weight_dtype == torch.bfloat16
    frozen, trained = torch.nn.Linear(3, 3).to(torch.bfloat16), torch.nn.Linear(3, 1).to(torch.bfloat16)
    frozen.requires_grad_(False)
    params = run.trainable([*frozen.parameters(), *trained.parameters()])
    assert len(params) == 2 and all(p.dtype == torch.float32 for p in trained.parameters())
    assert all(p.dtype == torch.bfloat16 for p in frozen.parameters())


@pytest.mark.parametrize("flag, value, message", [
    ("--train_batch_size", "0", "argument --train_batch_size: must be >= 1, got 0"),
    ("--checkpoints_total_limit", "0", "argument --checkpoints_total_limit: must be >= 1, got 0"),
    ("--ema_decay", "1.0", "argument --ema_decay: must be >= 0 and < 1, got 1.0"),
    ("--lr_warmup_steps", "-1", "argument --lr_warmup_steps: must be >= 0, got -1"),
    ("--checkpointing_steps", "-5", "argument --checkpointing_steps: must be >= 0, got -5"),
    ("--max_grad_norm", "-1", "argument --max_grad_norm: must be >= 0, got -1.0"),
    ("--learning_rate", "nan", "argument --learning_rate: must be finite, got nan"),
    ("--guidance_scale", "inf", "argument --guidance_scale: must be finite, got inf"),
    ("--max_train_steps", "2.5", "argument --max_train_steps: '2.5' is not an integer"),
])
def test_bad_flags_fail_before_training_naming_the_flag(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as stop:
        parse_training_args(training_parser("x"), ["--output_dir", str(tmp_path), flag, value])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_push_to_hub_builds_the_right_calls(tmp_path):
    api = mock.Mock()
    api.create_repo.return_value.repo_id = "me/my-run"
    (tmp_path / "my-run").mkdir()
    assert push_to_hub(str(tmp_path / "my-run") + "/", None, api=api) == "me/my-run"
    api.create_repo.assert_called_once_with(repo_id="my-run", exist_ok=True)
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["repo_id"] == "me/my-run" and kwargs["folder_path"] == str(tmp_path / "my-run") + "/"
    assert "checkpoint-*" in kwargs["ignore_patterns"]


def test_end_pushes_only_with_flag(tmp_path):
    with mock.patch("diffusion_canon.training.hub.HfApi") as hf_api:
        hf_api.return_value.create_repo.return_value.repo_id = "me/x"
        toy_main(toy_args(tmp_path / "x", "--max_train_steps", "1", "--push_to_hub", "--hub_model_id", "me/x",
                          "--hub_token", "t0k"))
        hf_api.assert_called_once_with(token="t0k")
        hf_api.return_value.upload_folder.assert_called_once()
    reset_accelerate_state()
    with mock.patch("diffusion_canon.training.hub.HfApi") as hf_api:
        toy_main(toy_args(tmp_path / "y", "--max_train_steps", "1"))
        hf_api.assert_not_called()


def test_model_card_has_trigger_words_images_and_snippet(tmp_path):
    from PIL import Image

    card = write_model_card(str(tmp_path), "dreambooth", base_model="org/base", tags=["dreambooth"],
                            images=[Image.new("RGB", (8, 8))], instance_prompts=["a sks font letter A"],
                            validation_prompt="a sks font letter B", prior_preservation=True,
                            train_text_encoder=False, rank=4, steps=10, use_lora=True)
    text = (tmp_path / "README.md").read_text()
    assert text == str(card) and "- `a sks font letter A`" in text and "![](image_0.png)" in text
    assert 'pipe.load_lora_weights("' + str(tmp_path) + '")' in text and (tmp_path / "image_0.png").is_file()
    assert "base_model: org/base" in text and "diffusion-canon" in text
