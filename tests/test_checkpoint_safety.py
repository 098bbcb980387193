"""Resuming loads nothing that could run code and says what it cannot restore; the final save and checkpoint removal
leave the old or the new state at every kill point (deterministic kills at each write, in forked children)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from diffusion_canon.training import list_checkpoints
from diffusion_canon.training.atomic_folder import remove_folder, staged_folder
from script_helpers import reset_accelerate_state
from test_training_core import Crash, toy_args, toy_main


class Payload:
    """A pickle that, when loaded with weights_only=False, creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A toy run's checkpoint-3 (optimizer, LR schedule, EMA, progress, RNG state), accelerate's own format."""
    with pytest.raises(Crash):  # a 4-step run killed after its step-3 checkpoint
        toy_main(toy_args(tmp_path / "run", "--max_train_steps", "4", "--use_ema"), crash_at=3)
    reset_accelerate_state()
    assert (tmp_path / "run" / "checkpoint-3").is_dir()
    return tmp_path / "run" / "checkpoint-3"


def resume(checkpoint: Path, *extra: str) -> dict[str, torch.Tensor]:
    return toy_main(toy_args(checkpoint.parent, "--max_train_steps", "4", "--use_ema", "--resume_from_checkpoint",
                             str(checkpoint), *extra))


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl",
                                  "optimizer.bin", "scheduler.bin"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_crafted_pickle_is_refused_and_never_runs(checkpoint, tmp_path, name, writer):
    marker = tmp_path / "payload-ran"
    if writer == "torch.save":
        torch.save({"state": Payload(marker)}, checkpoint / name)
    else:  # a raw pickle, which torch.load(weights_only=False) would unpickle the legacy way
        (checkpoint / name).write_bytes(pickle.dumps({"state": Payload(marker)}))
    with pytest.raises(ValueError, match=rf"{name} holds objects other than tensors.*could run code"):
        resume(checkpoint)
    assert not marker.exists()
    # the same payload would have run under accelerate's own loading: the test can fail
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def test_an_untouched_checkpoint_of_this_format_still_resumes_exactly(checkpoint, tmp_path):
    resumed = resume(checkpoint)
    reset_accelerate_state()
    straight = toy_main(toy_args(tmp_path / "straight", "--max_train_steps", "4", "--use_ema"))
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key


@pytest.mark.parametrize("damage, problem", [("delete", "is missing"), ("garble", "is unreadable")])
def test_a_lost_rng_state_is_an_error_unless_inexact_resume_is_allowed(checkpoint, caplog, damage, problem):
    rng = checkpoint / "random_states_0.pkl"
    rng.unlink() if damage == "delete" else rng.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=rf"random_states_0.pkl {problem}.*--allow_inexact_resume"):
        resume(checkpoint)
    reset_accelerate_state()
    with caplog.at_level(logging.WARNING):
        resume(checkpoint, "--allow_inexact_resume")
    assert f"random_states_0.pkl {problem}" in caplog.text and "resuming with fresh RNG states (not exact)" in caplog.text


@pytest.mark.parametrize("name, damage", [
    ("model.safetensors", "truncate"), ("optimizer.bin", "garbage"), ("scheduler.bin", "truncate"),
    ("custom_checkpoint_0.pkl", "garbage"), ("optimizer.bin", "delete"), ("model.safetensors", "delete"),
    ("custom_checkpoint_1.pkl", "delete"),
])
def test_damaged_or_missing_state_names_the_file(checkpoint, name, damage):
    path = checkpoint / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00 not a checkpoint " * 20)  # bytes no pickle opcode starts with
    else:
        path.unlink()
    expected = "is missing" if damage == "delete" else "is unreadable"
    with pytest.raises(ValueError, match=rf"--resume_from_checkpoint .*checkpoint-3: {name} {expected}"):
        resume(checkpoint)


# -- kills: a child process is killed at its k-th write; the folder must hold the old or the new state ---------------

WRITES = ("open", "os.rename", "os.replace", "os.link", "os.unlink", "os.rmdir", "exchange", "save_file")


def run_killed_at(k: int | None, work) -> int:
    """Fork; in the child count every write-like call and die at the k-th (``os._exit``: no cleanup, like SIGKILL).
    A ``save_file`` killed writes half of its bytes first (a truncated file). Returns the child's write count
    (k=None: no kill) or -1 when it was killed."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        import builtins

        from diffusion_canon.training import atomic_folder
        import safetensors.torch as st

        count = [0]

        def tick():
            count[0] += 1
            if count[0] == k:
                os._exit(137)

        def wrap(owner, name, truncating=False):
            real = getattr(owner, name)

            def hooked(*args, **kwargs):
                if name == "open" and not any(c in (args[1] if len(args) > 1 else kwargs.get("mode", "r"))
                                              for c in "wax+"):
                    return real(*args, **kwargs)
                if truncating and count[0] + 1 == k:
                    real(*args, **kwargs)
                    path = args[1] if len(args) > 1 else kwargs["filename"]
                    data = Path(path).read_bytes()
                    Path(path).write_bytes(data[: len(data) // 2])
                tick()
                return real(*args, **kwargs)
            setattr(owner, name, hooked)

        wrap(builtins, "open")
        for name in ("rename", "replace", "link", "unlink", "rmdir"):
            wrap(os, name)
        wrap(atomic_folder, "exchange")
        wrap(st, "save_file", truncating=True)
        try:
            work()
        except BaseException:
            os._exit(1)
        os.write(write, str(count[0]).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    out = os.read(read, 64).decode()
    os.close(read)
    code = os.waitstatus_to_exitcode(status)
    if code == 137:
        return -1
    assert code == 0, f"child failed with {code}"
    return int(out)


def pipeline_with(marker: float):
    """A tiny ADM pipeline whose weights all equal ``marker`` (built in the parent: a forked child must not start
    torch's thread pool, so children only write)."""
    from diffusers import DDPMScheduler

    from diffusion_canon.pipelines import ADMPipeline
    from test_adm_models import tiny_unet

    unet = tiny_unet()
    with torch.no_grad():
        for p in unet.parameters():
            p.fill_(marker)
    return ADMPipeline(unet=unet, scheduler=DDPMScheduler())


def save_pipeline(folder: Path, pipe, marker: float) -> None:
    from diffusion_canon.pipelines import save_pipeline_folder

    save_pipeline_folder(pipe, folder)
    (folder / "README.md").write_text(f"card {marker}")


def pipeline_marker(folder: Path) -> float:
    from diffusion_canon.pipelines import ADMPipeline

    pipe = ADMPipeline.from_pretrained(folder)
    (value,) = {p.flatten()[0].item() for p in pipe.unet.parameters()}
    assert (folder / "README.md").read_text() == f"card {value}"
    return value


def test_the_final_save_leaves_the_old_or_the_new_pipeline_at_every_kill(tmp_path):
    output = tmp_path / "out"
    old, new = pipeline_with(1.0), pipeline_with(2.0)
    save_pipeline(output, old, 1.0)  # the previous run's pipeline, and a checkpoint beside it
    (output / "checkpoint-5").mkdir()
    (output / "checkpoint-5" / "optimizer.bin").write_bytes(b"state")

    def final_save():
        with staged_folder(output) as staging:
            save_pipeline(staging, new, 2.0)

    pristine = tmp_path / "pristine"
    shutil.copytree(output, pristine)
    total = run_killed_at(None, final_save)
    assert total > 10 and pipeline_marker(output) == 2.0
    seen = set()
    for k in range(1, total + 1):
        shutil.rmtree(output)
        shutil.copytree(pristine, output)
        assert run_killed_at(k, final_save) == -1
        from diffusion_canon.training.atomic_folder import recover

        recover(output)  # what the next run does first
        seen.add(pipeline_marker(output))
        assert (output / "checkpoint-5" / "optimizer.bin").read_bytes() == b"state"
        assert not [p for p in output.parent.iterdir() if p.name.startswith(".")]
    assert seen == {1.0, 2.0}  # kills before the swap keep the old pipeline, after it the new one


def test_checkpoint_removal_never_leaves_a_partial_folder_under_a_valid_name(tmp_path):
    def make():
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        for step in (1, 2):
            folder = tmp_path / "run" / f"checkpoint-{step}"
            (folder / "sub").mkdir(parents=True)
            for name in ("model.safetensors", "optimizer.bin", "sub/x.bin"):
                (folder / name).write_bytes(b"x")

    make()
    total = run_killed_at(None, lambda: remove_folder(tmp_path / "run" / "checkpoint-1"))
    assert total >= 3
    for k in range(1, total + 1):
        make()
        assert run_killed_at(k, lambda: remove_folder(tmp_path / "run" / "checkpoint-1")) == -1
        for folder in list_checkpoints(str(tmp_path / "run")):
            assert sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*")) == [
                "model.safetensors", "optimizer.bin", "sub", "sub/x.bin"], (k, folder)


def test_a_crafted_rng_state_is_refused_even_when_inexact_resume_is_allowed(checkpoint, tmp_path):
    """--allow_inexact_resume skips an unreadable RNG state (accelerate then skips it too), never one that would run
    code: accelerate would unpickle that one with weights_only=False."""
    marker = tmp_path / "payload-ran"
    (checkpoint / "random_states_0.pkl").write_bytes(pickle.dumps({"state": Payload(marker)}) + b"\x00truncated")
    with pytest.raises(ValueError, match="random_states_0.pkl holds objects other than tensors"):
        resume(checkpoint, "--allow_inexact_resume")
    assert not marker.exists()
