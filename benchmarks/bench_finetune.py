"""P3/P4 of the fine-tuning issue: our DreamBooth + prior preservation vs diffusers'
examples/dreambooth/train_dreambooth.py on the same tiny SD base (the tiny-sd-glyphs architecture, random weights),
and the wall time of our fine-tuning tests.

    python benchmarks/bench_finetune.py [--diffusers_examples /tmp/diffusers/examples] [--rounds 4] [--tests]
        [--no_gradient_buffer]

The anchor is read from ``--diffusers_examples`` (a checkout of huggingface/diffusers ``examples/``; skipped when
absent). It imports torchvision only for ``transforms``; when torchvision cannot be imported, a PIL stub of the five
transforms it uses is put in front of it (written to a temp dir, never into this repository).

Step time: each implementation runs ``--steps`` optimizer steps in its own process, started through a runner that
registers a global ``torch.optim`` step hook; the hook stamps the process CPU time (user + system, all threads) after
every optimizer step, so a step's time is everything between two updates (data, forward, backward, clipping,
optimizer) and start-up, saving and the first ``--warmup`` steps are left out. With OMP_NUM_THREADS=1 CPU time
tracks compute and, unlike wall time, hardly moves when other jobs share the cores. The implementations alternate
(ours, theirs, theirs, ours, ...); reported are the ratio of medians over all steps and the per-round ratios (each
round runs every implementation back to back, so load drifting between rounds cancels), not lone times. Peak RSS is
the child's ``ru_maxrss`` (``os.wait4``). ``--no_gradient_buffer`` adds a variant of ours without the training
core's gradient buffer (``training/gradients.py``): per-tensor ``clip_grad_norm_`` and ``zero_grad(set_to_none=True)``,
the core's fallback path, to measure what the buffer saves.
"""

from __future__ import annotations

import argparse
import json
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

# Runs a training script with a global optimizer-step hook that records the CPU clock after every update. With a
# stub folder, transformers/diffusers are imported first (they must see torchvision as absent), then the stub.
RUNNER = '''
import json, os, runpy, sys, time
from torch.optim.optimizer import register_optimizer_step_post_hook
stamps_file, stub, script, *argv = sys.argv[1:]
if os.environ.get("BENCH_NO_GRADIENT_BUFFER"):  # the training core falls back to per-tensor clipping and zeroing
    from diffusion_canon.training.gradients import ContiguousGradients
    ContiguousGradients.fits = staticmethod(lambda params: False)
if stub:
    import transformers, diffusers
    from transformers import CLIPTextModel, CLIPTokenizer
    from diffusers import AutoencoderKL, UNet2DConditionModel, DDPMScheduler, DiffusionPipeline
    from diffusers.loaders import peft
    sys.path.insert(0, stub)
    import torchvision, torchvision.transforms
stamps = []
register_optimizer_step_post_hook(lambda optimizer, args, kwargs: stamps.append(time.process_time()))
sys.argv = [script, *argv]
runpy.run_path(script, run_name="__main__")
with open(stamps_file, "w") as f:
    json.dump(stamps, f)
'''


def make_fixture(folder: Path) -> dict[str, str]:
    """A random base with the tiny-sd-glyphs architecture, 4 instance images and 8 class images (pre-made, so
    neither implementation samples)."""
    from diffusion_canon.finetune.sd_base import SDComponents, build_word_tokenizer, save_sd_base
    from diffusion_canon.finetune.sd_base import tiny_sd_components
    from diffusion_canon.finetune.make_base import tiny_text_encoder, tiny_unet, tiny_vae
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' image-folder helper
    from finetune_helpers import write_images

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


def timed_steps(command: list[str], env: dict[str, str], stamps_file: Path, warmup: int) -> tuple[list[float], float]:
    """(CPU seconds of each optimizer step after ``warmup``, peak RSS in MiB) of one child process."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=False)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:4]} failed: {process.stderr.read().decode()[-3000:]}")
    stamps = json.loads(stamps_file.read_text())[warmup:]
    return [b - a for a, b in zip(stamps, stamps[1:])], usage.ru_maxrss / 1024


def anchor_script(examples: Path, work: Path) -> tuple[str, str] | None:
    """(script, torchvision stub folder or "") of the diffusers example, or None when the checkout is absent."""
    script = examples / "dreambooth" / "train_dreambooth.py"
    if not script.is_file():
        return None
    try:
        import torchvision  # noqa: F401
        return str(script), ""
    except Exception:  # missing, or a CUDA build next to a CPU torch
        stub = work / "stub" / "torchvision"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text("")
        (stub / "transforms.py").write_text(TORCHVISION_STUB)
        return str(script), str(stub.parent)


def bench_dreambooth(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    anchor = anchor_script(Path(args.diffusers_examples), work)
    if anchor is None:
        print(f"P3 skipped: no {args.diffusers_examples}/dreambooth/train_dreambooth.py (fetch huggingface/diffusers)")
        return
    paths = make_fixture(work)
    (work / "runner.py").write_text(RUNNER)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    ours = (str(ROOT / "training" / "train_dreambooth.py"), "")
    # "ours" caches the VAE posteriors by itself (--center_crop: fixed pixels); the fixture's images are already
    # 32 px, so without --center_crop the random crop is the whole image and ours encodes them every step instead
    variants = {"ours": ours, "ours, VAE every step": ours, "diffusers example": anchor}
    if args.no_gradient_buffer:
        variants = {"ours": ours, "ours, no gradient buffer": ours, **variants}
    drop = {"ours, VAE every step": {"--center_crop"}}
    extra_env = {"ours, no gradient buffer": {"BENCH_NO_GRADIENT_BUFFER": "1"}}
    steps: dict[str, list[float]] = {name: [] for name in variants}
    round_medians: dict[str, list[float]] = {name: [] for name in variants}
    rss: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for round_index in range(args.rounds):
        for name in order if round_index % 2 == 0 else order[::-1]:
            script, stub = variants[name]
            run_name = f"{round_index}-{order.index(name)}"
            stamps_file = work / f"stamps-{run_name}.json"
            argv = dreambooth_argv(paths, str(work / f"out-{run_name}"), args.steps, args.batch_size)
            argv = [a for a in argv if a not in drop.get(name, ())]
            times, peak = timed_steps([sys.executable, str(work / "runner.py"), str(stamps_file), stub, script, *argv],
                                      {**env, **extra_env.get(name, {})}, stamps_file, args.warmup)
            steps[name] += times
            round_medians[name].append(statistics.median(times))
            rss[name].append(peak)
            print(f"round {round_index} {name}: median {statistics.median(times):.4f} CPU s/step", flush=True)
    anchor_step, anchor_rss = statistics.median(steps["diffusers example"]), max(rss["diffusers example"])
    print(f"\nP3: DreamBooth + prior preservation, batch {args.batch_size}+{args.batch_size}, 32 px, tiny-sd-glyphs "
          f"architecture, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, {args.rounds} alternating rounds of "
          f"{args.steps} steps (first {args.warmup} left out)\n")
    print("| implementation | CPU s/step: median (quartiles) | ratio | per-round ratios (median) | peak RSS | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in variants:
        q1, median, q3 = statistics.quantiles(steps[name], n=4)
        ratios = [a / b for a, b in zip(round_medians[name], round_medians["diffusers example"])]
        peak = max(rss[name])
        print(f"| {name} | {median:.4f} s ({q1:.4f}-{q3:.4f}) | {median / anchor_step:.2f}x | "
              f"{' / '.join(f'{r:.2f}' for r in ratios)} ({statistics.median(ratios):.2f}x) | {peak:.0f} MiB | "
              f"{peak / anchor_rss:.2f}x |")


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
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40, help="Optimizer steps per run.")
    parser.add_argument("--warmup", type=int, default=5, help="Steps left out at the start of each run.")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--tests", action="store_true", help="Also time the fine-tuning tests (P4).")
    parser.add_argument("--no_gradient_buffer", action="store_true",
                        help="Also run ours without the gradient buffer (per-tensor clipping and zeroing).")
    args = parser.parse_args()
    bench_dreambooth(args)
    if args.tests:
        bench_tests()


if __name__ == "__main__":
    main()
