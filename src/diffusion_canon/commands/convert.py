"""``diffusion-canon convert guided-diffusion | improved-diffusion | consistency-models ...``: checkpoint → pipeline
folder."""

from __future__ import annotations

import argparse

from ..convert.adm_presets import PRESETS
from ..convert.consistency_presets import PRESETS as CONSISTENCY_PRESETS


def _convert(args: argparse.Namespace) -> int:
    from ..convert.adm import convert_adm_checkpoint

    folder = convert_adm_checkpoint(
        args.checkpoint,
        args.output,
        repo=args.repo,
        model_flags_string=args.model_flags,
        preset=args.preset,
        classifier=getattr(args, "classifier", None),
        classifier_flags_string=getattr(args, "classifier_flags", None),
        class_names=args.class_names,
        dtype=args.dtype,
    )
    print(f"wrote {folder}")
    return 0


def _convert_consistency(args: argparse.Namespace) -> int:
    from ..convert.consistency_models import convert_consistency_checkpoint

    folder = convert_consistency_checkpoint(args.checkpoint, args.output, args.flags, args.preset, dtype=args.dtype,
                                            reference_fp16_attention=not args.fp32_attention)
    print(f"wrote {folder}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``convert`` with one sub-command per source repository."""
    parser = subparsers.add_parser("convert", description="Convert a published checkpoint into a diffusers pipeline folder.")
    repos = parser.add_subparsers(title="source", metavar="SOURCE", required=True)
    for repo, flags_option, flags_help in (
        ("guided-diffusion", "--model-flags", 'MODEL_FLAGS exactly as in the guided-diffusion README, e.g. "--image_size 256 ..."'),
        ("improved-diffusion", "--flags", "MODEL_FLAGS and DIFFUSION_FLAGS exactly as in the improved-diffusion README"),
    ):
        presets = sorted(name for name, preset in PRESETS.items() if preset.repo == repo)
        sub = repos.add_parser(repo, help=f"an openai/{repo} checkpoint")
        sub.add_argument("--checkpoint", required=True, help="the reference .pt state dict (read with weights_only)")
        which = sub.add_mutually_exclusive_group(required=True)
        which.add_argument(flags_option, dest="model_flags", help=flags_help)
        which.add_argument("--preset", choices=presets, help="a published checkpoint's flags, by file stem")
        if repo == "guided-diffusion":
            sub.add_argument("--classifier", help="the noisy-image classifier .pt for classifier guidance")
            sub.add_argument("--classifier-flags", help="CLASSIFIER_FLAGS (default: the preset's)")
        sub.add_argument("--class-names", help="class names: JSON list, JSON {index: name}, or one per line")
        sub.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
        sub.add_argument("--output", required=True, help="the pipeline folder to write")
        sub.set_defaults(func=_convert, repo=repo)
    sub = repos.add_parser("consistency-models", help="an openai/consistency_models checkpoint (EDM, CD or CT)")
    sub.add_argument("--checkpoint", required=True, help="the reference .pt state dict (read with weights_only)")
    which = sub.add_mutually_exclusive_group(required=True)
    which.add_argument("--flags", help="the reference's image_sample.py flags, --training_mode included, "
                       'e.g. "--training_mode consistency_distillation --sampler onestep --class_cond True ..."')
    which.add_argument("--preset", choices=sorted(CONSISTENCY_PRESETS), help="a published checkpoint's flags, by file stem")
    sub.add_argument("--fp32-attention", action="store_true",
                     help="compute attention in float32 (default: float16 q/k/v as the reference does)")
    sub.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    sub.add_argument("--output", required=True, help="the pipeline folder to write")
    sub.set_defaults(func=_convert_consistency)
    return parser
