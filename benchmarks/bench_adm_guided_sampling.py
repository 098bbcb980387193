"""Benchmark P1: ADMPipeline vs guided-diffusion's classifier_sample loop, same weights, same seed, at parity.

Builds a guided-diffusion model + classifier from flags (random weights), converts both with our converter, then
times the reference ``p_sample_loop(cond_fn=...)`` (as scripts/classifier_sample.py) and ``ADMPipeline`` alternately,
``--rounds`` times each, and prints the median ratio and the max |Δ| of the final images in [0, 1].

    python benchmarks/bench_adm_guided_sampling.py --reference /path/to/guided-diffusion [--device cuda --fp16]

Skipped (exit 0) when the reference checkout is absent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

MODEL_FLAGS = (
    "--image_size 64 --num_channels 64 --num_res_blocks 2 --attention_resolutions 32,16,8 --class_cond True "
    "--learn_sigma True --num_head_channels 32 --resblock_updown True --use_new_attention_order True "
    "--use_scale_shift_norm True --diffusion_steps 1000 --noise_schedule cosine"
)
CLASSIFIER_FLAGS = "--image_size 64 --classifier_width 64 --classifier_depth 2 --classifier_attention_resolutions 32,16,8"


def reference_models(flags: str, classifier_flags: str):
    import guided_diffusion.script_util as su

    parser = argparse.ArgumentParser()
    su.add_dict_to_argparser(parser, {**su.model_and_diffusion_defaults(), **su.classifier_defaults()})
    args = vars(parser.parse_args(f"{flags} {classifier_flags}".split()))
    model, diffusion = su.create_model_and_diffusion(**{k: args[k] for k in su.model_and_diffusion_defaults()})
    classifier = su.create_classifier(**{k: args[k] for k in su.classifier_defaults()})
    generator = torch.Generator().manual_seed(0)
    for module in (model, classifier):  # non-zero weights everywhere (the reference zero-initialises output layers)
        for parameter in module.parameters():
            parameter.data = 0.05 * torch.randn(parameter.shape, generator=generator)
    return model.eval(), classifier.eval(), diffusion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="/tmp/adm-guided-diffusion", help="a guided-diffusion checkout")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--respacing", default="10")
    parser.add_argument("--classifier_scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not (Path(args.reference) / "guided_diffusion" / "unet.py").is_file():
        print(f"skipped: no guided-diffusion checkout at {args.reference}")
        return 0
    sys.path.insert(0, args.reference)
    from diffusion_canon.convert import convert_adm_checkpoint
    from diffusion_canon.pipelines import ADMPipeline

    model, classifier, diffusion = reference_models(f"{MODEL_FLAGS} --timestep_respacing {args.respacing}", CLASSIFIER_FLAGS)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(model.state_dict(), f"{tmp}/model.pt")
        torch.save(classifier.state_dict(), f"{tmp}/classifier.pt")
        convert_adm_checkpoint(
            f"{tmp}/model.pt", f"{tmp}/pipe", repo="guided-diffusion", model_flags_string=MODEL_FLAGS,
            classifier=f"{tmp}/classifier.pt", classifier_flags_string=CLASSIFIER_FLAGS,
        )  # fmt: skip
        pipe = ADMPipeline.from_pretrained(f"{tmp}/pipe").to(args.device)
    pipe.set_progress_bar_config(disable=True)
    model.to(args.device)
    classifier.to(args.device)
    labels = torch.arange(args.batch_size, device=args.device) % 1000
    shape = (args.batch_size, 3, 64, 64)

    def cond_fn(x, t, y=None):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_probs = F.log_softmax(classifier(x_in, t), dim=-1)
            selected = log_probs[range(len(log_probs)), y.view(-1)]
            return torch.autograd.grad(selected.sum(), x_in)[0] * args.classifier_scale

    def run_reference():
        torch.manual_seed(0)
        sample = diffusion.p_sample_loop(
            model, shape, model_kwargs={"y": labels}, cond_fn=cond_fn, device=args.device, clip_denoised=True
        )
        return ((sample + 1) / 2).clamp(0, 1)

    def run_ours():
        generator = torch.Generator(args.device).manual_seed(0)
        return pipe(
            class_labels=labels.tolist(), timestep_respacing=args.respacing, classifier_scale=args.classifier_scale,
            generator=generator, output_type="pt",
        ).images  # fmt: skip

    def timed(fn):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, out

    run_reference(), run_ours()  # warm-up
    times = {"reference": [], "ours": []}
    for _ in range(args.rounds):
        seconds, reference = timed(run_reference)
        times["reference"].append(seconds)
        seconds, ours = timed(run_ours)
        times["ours"].append(seconds)
    delta = (reference - ours).abs().max().item()
    ref, own = statistics.median(times["reference"]), statistics.median(times["ours"])
    print(f"device={args.device} threads={torch.get_num_threads()} batch={args.batch_size} steps={args.respacing}")
    print(f"reference classifier_sample loop: {ref:.3f} s   ADMPipeline: {own:.3f} s   (medians of {args.rounds}, alternating)")
    print(f"speed-up ours/reference: {ref / own:.2f}x   max |delta| of images in [0, 1]: {delta:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
