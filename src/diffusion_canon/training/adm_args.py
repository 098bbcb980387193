"""Flags shared by ``training/train_adm.py`` and ``training/train_classifier.py``: the ADM network shape (the U-Net
and the noisy classifier share their encoder) and the training diffusion q(x_t | x_0)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..schedulers import ImprovedDDPMScheduler
from .timestep_samplers import SCHEDULE_SAMPLERS


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def add_adm_network_args(parser: argparse.ArgumentParser, model_channels: int, num_res_blocks: int,
                         dropout: float) -> None:
    """Reference-style network flags (guided-diffusion's names where they exist)."""
    group = parser.add_argument_group("network")
    group.add_argument("--model_channels", type=int, default=model_channels, help="Base width (multiple of 32).")
    group.add_argument("--num_res_blocks", type=int, default=num_res_blocks)
    group.add_argument("--channel_mult", type=_floats, default=[1, 2, 2],
                       help="Per-level width multipliers, e.g. 1,2,2.")
    group.add_argument("--attention_resolutions", type=_ints, default=[16, 8],
                       help="Feature-map sides that get self-attention, e.g. 16,8 (the reference flag).")
    group.add_argument("--num_head_channels", type=int, default=32)
    group.add_argument("--dropout", type=float, default=dropout)
    group.add_argument("--use_scale_shift_norm", action=argparse.BooleanOptionalAction, default=True)
    group.add_argument("--resblock_updown", action=argparse.BooleanOptionalAction, default=True)
    group.add_argument("--save_fp16", action="store_true", help="Store the final weights in float16.")


def add_diffusion_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("diffusion")
    group.add_argument("--num_train_timesteps", type=int, default=1000)
    group.add_argument("--beta_schedule", default="cosine", choices=("linear", "cosine"))
    group.add_argument("--prediction_type", default="epsilon", choices=("epsilon", "sample", "v_prediction"),
                       help="What the network predicts: epsilon (the ADM paper), x0, or v (tiny, briefly trained "
                            "models on a cosine schedule: v avoids epsilon's error amplification near t = T).")
    group.add_argument("--schedule_sampler", default="uniform", choices=tuple(SCHEDULE_SAMPLERS),
                       help="Timestep sampling; loss-second-moment = importance sampling (ND §3.3).")


def attention_factors(resolutions: Sequence[int], image_size: int, levels: int) -> list[int]:
    """Reference-style attention resolutions (feature-map sides) → the models' downsample factors."""
    allowed = [image_size // 2**level for level in range(levels)]
    if any(r not in allowed for r in resolutions):
        raise ValueError(f"--attention_resolutions {list(resolutions)}: each must be a feature-map side of this "
                         f"network, one of {allowed} (--resolution {image_size}, {levels} levels)")
    return [image_size // r for r in resolutions]


def network_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor arguments the U-Net and the classifier share, from :func:`add_adm_network_args` flags."""
    return dict(
        sample_size=args.resolution, in_channels=3, model_channels=args.model_channels,
        num_res_blocks=args.num_res_blocks, channel_mult=args.channel_mult, dropout=args.dropout,
        attention_downsample_factors=attention_factors(args.attention_resolutions, args.resolution,
                                                       len(args.channel_mult)),
        num_head_channels=args.num_head_channels, use_scale_shift_norm=args.use_scale_shift_norm,
        resblock_updown=args.resblock_updown,
    )


def diffusion_scheduler(args: argparse.Namespace, variance_type: str = "fixed_small") -> ImprovedDDPMScheduler:
    """The training diffusion the flags describe."""
    return ImprovedDDPMScheduler(num_train_timesteps=args.num_train_timesteps, beta_schedule=args.beta_schedule,
                                 variance_type=variance_type, prediction_type=args.prediction_type)
