"""P3/P4 of the fine-tuning issue: our DreamBooth + prior preservation vs diffusers'
examples/dreambooth/train_dreambooth.py on the same tiny SD base (the tiny-sd-glyphs architecture, random weights), and the wall time of our fine-tuning tests.

    python benchmarks/bench_finetune.py [--diffusers_examples /tmp/diffusers/examples] [--rounds 2] [--tests]

The anchor is read from ``--diffusers_examples`` (a checkout of huggingface/diffusers ``examples/``; skipped when
absent). It imports torchvision only for ``transforms``; when torchvision cannot be imported, a PIL stub of the five
transforms it uses is put in front of it (written to a temp dir, never into this repository).

Step time: each implementation runs ``--steps_short`` and ``--steps_long`` optimizer steps in separate processes;
(t_long - t_short) / (steps_long - steps_short) removes start-up and saving. t is the child's CPU time (user + system,
from ``os.wait4``; with OMP_NUM_THREADS=1 it tracks compute and, unlike wall time, hardly moves when other jobs share
the cores); wall time is printed too. The implementations alternate (ours, theirs, theirs, ours, ...) and the ratio
is reported, not lone CPU times. Peak RSS is the child's ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FINETUNE_TESTS = ["tests/test_training_core.py", "tests/test_dreambooth.py", "tests/test_lora.py",
                  "tests/test_textual_inversion.py", "tests/test_make_base.py", "tests/test_finetune_launch.py"]

TORCHVISION_STUB = '''
import enum, random
import numpy as np, torch
from PIL import Image
class InterpolationMode(enum.Enum):
    BILINEAR = Image.BILINEAR
class Compose:
    def __init__(self, ts): self.ts = ts
    def __call__(self, x):
        for t in self.ts: x = t(x)
        return x
class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR): self.size, self.mode = size, interpolation.value
    def __call__(self, im):
        w, h = im.size; s = self.size / min(w, h)
        return im.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), self.mode)
class CenterCrop:
    def __init__(self, size): self.size = size
    def __call__(self, im):
        w, h = im.size; l, t = (w - self.size) // 2, (h - self.size) // 2
        return im.crop((l, t, l + self.size, t + self.size))
class RandomCrop(CenterCrop):
    def __call__(self, im):
        w, h = im.size; l, t = random.randint(0, w - self.size), random.randint(0, h - self.size)
        return im.crop((l, t, l + self.size, t + self.size))
class ToTensor:
    def __call__(self, im): return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
class Normalize:
    def __init__(self, mean, std): self.mean, self.std = mean[0], std[0]
    def __call__(self, x): return (x - self.mean) / self.std
'''

# transformers/diffusers must see torchvision as absent; only then does the example get the stub
RUN_WITH_STUB = '''
import runpy, sys
import transformers, diffusers
from transformers import CLIPTextModel, CLIPTokenizer
from diffusers import AutoencoderKL, UNet2DConditionModel, DDPMScheduler, DiffusionPipeline
from diffusers.loaders import peft
sys.path.insert(0, sys.argv[1])
import torchvision, torchvision.transforms
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def make_fixture(folder: Path) -> dict[str, str]:
    """A random base with the tiny-sd-glyphs architecture, 4 instance images and 8 class images (pre-made, so
    neither implementation samples)."""
    from diffusion_canon.finetune.base import SDComponents, build_word_tokenizer, save_sd_base
    from diffusion_canon.finetune.base import tiny_sd_components
    from diffusion_canon.finetune.make_base import tiny_text_encoder, tiny_unet, tiny_vae
    from diffusion_canon.finetune.testing import write_images

    tokenizer = build_word_tokenizer(str(folder / "vocab"), ["a", "sks", "font", "letter"], model_max_length=32)
    scheduler = tiny_sd_components(tokenizer).noise_scheduler
    components = SDComponents(tokenizer, tiny_text_encoder(tokenizer), tiny_vae(32), tiny_unet(8, 64), scheduler)
    save_sd_base(components, str(folder / "base"))
    write_images(folder / "instance", 4, seed=1)
    write_images(folder / "class", 8, seed=2)
    return {"base": str(folder / "base"), "instance": str(folder / "instance"), "class": str(folder / "class")}


def dreambooth_argv(paths: dict[str, str], output_dir: str, steps: int, batch_size: int) -> list[str]:
    return ["--pretrained_model_name_or_path", paths["base"], "--instance_data_dir", paths["instance"],
            "--instance_prompt", "a sks font letter", "--with_prior_preservation", "--class_data_dir",
            paths["class"], "--class_prompt", "a letter", "--num_class_images", "8", "--resolution", "32",
            "--center_crop", "--train_batch_size", str(batch_size), "--max_train_steps", str(steps),
            "--checkpointing_steps", "100000", "--seed", "0", "--output_dir", output_dir]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, peak RSS in MiB) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=False)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:3]} failed: {process.stderr.read().decode()[-3000:]}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def anchor_command(examples: Path, work: Path) -> list[str] | None:
    script = examples / "dreambooth" / "train_dreambooth.py"
    if not script.is_file():
        return None
    try:
        import torchvision  # noqa: F401
        return [sys.executable, str(script)]
    except Exception:  # missing, or a CUDA build next to a CPU torch
        stub = work / "stub" / "torchvision"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text("")
        (stub / "transforms.py").write_text(TORCHVISION_STUB)
        (work / "run_with_stub.py").write_text(RUN_WITH_STUB)
        return [sys.executable, str(work / "run_with_stub.py"), str(work / "stub"), str(script)]


def bench_dreambooth(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    anchor = anchor_command(Path(args.diffusers_examples), work)
    if anchor is None:
        print(f"P3 skipped: no {args.diffusers_examples}/dreambooth/train_dreambooth.py (fetch huggingface/diffusers)")
        return
    paths = make_fixture(work)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    ours = [sys.executable, str(ROOT / "training" / "train_dreambooth.py")]
    variants = {"ours": ours, "ours --cache_latents": ours, "diffusers example": anchor}
    extra = {"ours --cache_latents": ["--cache_latents"]}
    results: dict[str, dict[str, list[float]]] = {name: {"step": [], "wall": [], "rss": []} for name in variants}
    order = list(variants)
    for round_index in range(args.rounds):
        for name in order if round_index % 2 == 0 else order[::-1]:
            cpu, wall = {}, {}
            for steps in (args.steps_short, args.steps_long):
                out = str(work / f"out-{len(results[name]['rss'])}-{steps}")
                argv = dreambooth_argv(paths, out, steps, args.batch_size) + extra.get(name, [])
                cpu[steps], wall[steps], rss = timed(variants[name] + argv, env)
                results[name]["rss"].append(rss)
            span = args.steps_long - args.steps_short
            results[name]["step"].append((cpu[args.steps_long] - cpu[args.steps_short]) / span)
            results[name]["wall"].append((wall[args.steps_long] - wall[args.steps_short]) / span)
            print(f"round {round_index} {name}: {results[name]['step'][-1]:.3f} CPU s/step, "
                  f"{results[name]['wall'][-1]:.3f} wall s/step", flush=True)
    anchor_step = statistics.median(results["diffusers example"]["step"])
    anchor_rss = max(results["diffusers example"]["rss"])
    print(f"\nP3: DreamBooth + prior preservation, batch {args.batch_size}+{args.batch_size}, 32 px, tiny-sd-glyphs "
          f"architecture, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, {args.rounds} alternating rounds\n")
    print("| implementation | CPU time per step (median) | ratio | wall per step (median) | peak RSS | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in variants:
        step, rss = statistics.median(results[name]["step"]), max(results[name]["rss"])
        wall = statistics.median(results[name]["wall"])
        print(f"| {name} | {step:.3f} s | {step / anchor_step:.2f}x | {wall:.3f} s | {rss:.0f} MiB | "
              f"{rss / anchor_rss:.2f}x |")


def bench_tests() -> None:
    """P4: wall time of our fine-tuning tests (default suite), to compare with the ~600 s of diffusers' 13 tests."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider",
                    *FINETUNE_TESTS], cwd=ROOT, env=env, check=True)
    print(f"\nP4: our fine-tuning tests (not slow): {time.perf_counter() - start:.0f} s wall")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diffusers_examples", default="/tmp/diffusers/examples")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps_short", type=int, default=2)
    parser.add_argument("--steps_long", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--tests", action="store_true", help="Also time the fine-tuning tests (P4).")
    args = parser.parse_args()
    bench_dreambooth(args)
    if args.tests:
        bench_tests()


if __name__ == "__main__":
    main()
