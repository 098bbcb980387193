"""The package stands alone: a wheel built from this checkout, installed apart from it and used from another folder,
converts a checkpoint (model card written from the packaged template), loads pipeline folders, and runs a training
script under ``accelerate launch``. Nothing in src/ may reach into the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from script_helpers import CHECKOUT, PIPELINES
from test_adm_models import reference_cases, regenerate
from test_train_adm import TINY


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel, installed (without its dependencies, which this environment has) into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(root / "dist"), str(CHECKOUT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = (root / "dist").glob("diffusion_canon-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "diffusion_canon/model_cards/adm.md" in names
    assert not any(name.startswith(("tests/", "training/", "pipelines/")) for name in names)
    target = root / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return target


def run_apart(installed: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    """``argv`` from ``cwd`` (outside the checkout) with the installed wheel first on the path."""
    env = dict(os.environ, PYTHONPATH=str(installed))
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_wheel_converts_and_loads_from_another_folder(installed, tmp_path):
    case = reference_cases()["sample_ddpm_guided"]
    torch.save(regenerate(case["keys"], case["seed"]), tmp_path / "model.pt")
    where = run_apart(installed, tmp_path, sys.executable, "-c", "import diffusion_canon; print(diffusion_canon.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(installed)), where.stdout  # the wheel, not the checkout's src/

    convert = run_apart(installed, tmp_path, sys.executable, "-m", "diffusion_canon.cli", "convert", "guided-diffusion",
                        "--checkpoint", "model.pt", "--model-flags", case["flags"], "--output", "converted")
    assert convert.returncode == 0, convert.stderr
    assert "# ADM" in (tmp_path / "converted" / "README.md").read_text()

    load = ("import torch; from diffusers import DiffusionPipeline\n"
            "pipe = DiffusionPipeline.from_pretrained('converted', trust_remote_code=True)\n"
            "out = pipe(class_labels=[1], timestep_respacing='2', output_type='pt').images\n"
            "assert torch.isfinite(out).all()\n"
            f"shipped = DiffusionPipeline.from_pretrained({str(PIPELINES / 'adm-glyphs-32')!r}, trust_remote_code=True)\n"
            "print(type(pipe).__name__, type(shipped).__name__, type(shipped).__module__)")
    loaded = run_apart(installed, tmp_path, sys.executable, "-c", load)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["ADMPipeline", "ADMPipeline", "diffusion_canon.pipelines.pipeline_adm"]


def test_demo_outside_a_checkout_asks_for_the_pipelines_folder(installed, tmp_path):
    demo = run_apart(installed, tmp_path, sys.executable, "-m", "diffusion_canon.cli", "demo", "--output", "out")
    assert demo.returncode != 0
    assert "pass the folder of pipeline folders (diffusion-canon demo --pipelines DIR)" in demo.stderr
    assert "Traceback" not in demo.stderr


def test_training_script_under_accelerate_launch_with_the_wheel(installed, tmp_path):
    launch = run_apart(installed, tmp_path, sys.executable, "-m", "accelerate.commands.launch", "--cpu",
                       "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       str(CHECKOUT / "training" / "train_adm.py"), "--output_dir", "adm", *TINY,
                       "--max_train_steps", "1")
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert (tmp_path / "adm" / "model_index.json").is_file()
    assert "# ADM U-Net trained with diffusion-canon" in (tmp_path / "adm" / "README.md").read_text()
