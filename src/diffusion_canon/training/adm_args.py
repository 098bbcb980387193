"""Flags shared by the ADM-family training scripts (``train_adm.py``, ``train_classifier.py``,
``train_super_resolution.py``, ``train_unclip_decoder.py``): the ADM network shape (the U-Net, the super-resolution
U-Net, the unCLIP decoder and the noisy classifier share their encoder), the training diffusion q(x_t | x_0) and the
denoising objective. One vocabulary, with the reference's (improved-/guided-diffusion's) meanings where it has the flag:

* ``--attention_resolutions 16,8``: feature-map *sides* whose levels get self-attention; the model's downsample factor
  is ``--resolution // side`` (guided-diffusion's ``create_model``; for a super-resolution stage ``--resolution`` is
  the high-resolution output side, the reference's ``--large_size`` in ``sr_create_model``).
* ``--num_head_channels -1``: no fixed head width, ``--num_heads`` heads per attention block.

A script's defaults may differ (each keeps its own small defaults), the names and meanings do not. Cross-flag checks
(:func:`check_network_args`) fail as argparse errors naming the flag, its value and what is allowed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from ..schedulers import ImprovedDDPMScheduler
from ..schedulers.gaussian_diffusion import VARIANCE_TYPES
from .arguments import COUNT, real
from .losses import LOSS_TYPES
from .timestep_samplers import SCHEDULE_SAMPLERS


def sides(text: str) -> list[int]:
    """An argparse ``type``: comma-separated positive integers (feature-map sides); ``''`` is the empty list."""
    values = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            value = int(item)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: expected comma-separated feature-map sides (positive integers), e.g. 16,8, "
                "or '' for no attention")
        values.append(value)
    return values


def multipliers(text: str) -> list[float]:
    """An argparse ``type``: comma-separated positive finite numbers, at least one (one per resolution level)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected one positive width multiplier per resolution level, comma-separated, "
            "e.g. 1,2,2 (0.5 allowed)")
    return values


def head_channels(text: str) -> int | None:
    """An argparse ``type``: channels per attention head (a positive integer), or -1 (``None``): ``--num_heads``
    heads whatever the width, as the reference's ``--num_head_channels -1``."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value == -1:
        return None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a positive number of channels per head, or -1 for --num_heads heads")
    return value


head_channels.__name__ = "int"  # the numeric-flag checks of the scripts' parsers cover it


def add_adm_network_args(parser: argparse.ArgumentParser, model_channels: int, num_res_blocks: int,
                         dropout: float, attention_resolutions: Sequence[int] = (16, 8),
                         num_head_channels: int | None = 32) -> None:
    """Reference-style network flags (guided-diffusion's names where they exist); the defaults are the script's."""
    group = parser.add_argument_group("network (ADM names and meanings)")
    group.add_argument("--model_channels", type=COUNT, default=model_channels,
                       help="Base width, the reference's --num_channels (multiple of 32).")
    group.add_argument("--num_res_blocks", type=COUNT, default=num_res_blocks)
    group.add_argument("--channel_mult", type=multipliers, default=[1, 2, 2],
                       help="Per-level width multipliers, e.g. 1,2,2; one level per entry, each but the last halving "
                            "the feature map.")
    group.add_argument("--attention_resolutions", type=sides, default=list(attention_resolutions),
                       help="Feature-map sides whose levels get self-attention, comma-separated, e.g. 16,8 ('' for "
                            "none): the reference flag, downsample factor = --resolution // side (for a "
                            "super-resolution stage, sides of the high-resolution --resolution maps). Default: "
                            f"{','.join(map(str, attention_resolutions)) or 'none'}.")
    group.add_argument("--num_heads", type=COUNT, default=1, help="Heads per attention block when --num_head_channels "
                                                                  "is -1.")
    group.add_argument("--num_head_channels", type=head_channels, default=num_head_channels,
                       help="Channels per attention head (heads = width // this), or -1 for --num_heads heads. "
                            f"Default: {num_head_channels or -1}.")
    group.add_argument("--dropout", type=real(minimum=0, below=1), default=dropout)
    group.add_argument("--use_scale_shift_norm", action=argparse.BooleanOptionalAction, default=True)
    group.add_argument("--resblock_updown", action=argparse.BooleanOptionalAction, default=True)
    group.add_argument("--save_fp16", action="store_true", help="Store the final weights in float16.")


def add_diffusion_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("diffusion")
    group.add_argument("--num_train_timesteps", type=COUNT, default=1000, help="T, the reference's --diffusion_steps.")
    group.add_argument("--beta_schedule", default="cosine", choices=("linear", "cosine"),
                       help="The reference's --noise_schedule.")
    group.add_argument("--prediction_type", default="epsilon", choices=("epsilon", "sample", "v_prediction"),
                       help="What the network predicts: epsilon (the ADM paper), x0, or v (tiny, briefly trained "
                            "models on a cosine schedule: v avoids epsilon's error amplification near t = T).")
    group.add_argument("--schedule_sampler", default="uniform", choices=tuple(SCHEDULE_SAMPLERS),
                       help="Timestep sampling; loss-second-moment = importance sampling (ND §3.3).")


def add_objective_args(parser: argparse.ArgumentParser, variance_type: str | None = "learned_range") -> None:
    """``--loss_type`` and, unless ``variance_type`` is ``None`` (a script whose Σ is fixed by design), ``--variance_type``
    with that default (the reference's ``--learn_sigma True`` is ``learned_range``)."""
    group = parser.add_argument_group("objective")
    if variance_type is not None:
        group.add_argument("--variance_type", default=variance_type, choices=VARIANCE_TYPES,
                           help="learned_range = learned Σ (ND eq. 15; the reference's --learn_sigma True, 2C "
                                "outputs); fixed_small / fixed_large = Ho et al.")
    group.add_argument("--loss_type", default="rescaled_mse", choices=LOSS_TYPES,
                       help="rescaled_mse with a learned Σ = the hybrid loss L_simple + λ·L_vlb, λ = 0.001 (ND eq. 16); "
                            "mse = L_simple (+ unscaled L_vlb).")


def feature_map_sides(image_size: int, levels: int) -> list[int]:
    """The feature-map side of each level: ``image_size`` halved at each level but the first."""
    return [image_size // 2**level for level in range(levels)]


def attention_factors(resolutions: Sequence[int], image_size: int, levels: int) -> list[int]:
    """Reference-style attention resolutions (feature-map sides) → the models' downsample factors, ascending."""
    allowed = feature_map_sides(image_size, levels)
    if any(r not in allowed for r in resolutions):
        raise ValueError(f"--attention_resolutions {list(resolutions)}: each must be a feature-map side of this "
                         f"network, one of {allowed} (--resolution {image_size}, {levels} levels)")
    return sorted({image_size // r for r in resolutions})


def _listed(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def check_network_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                       size_flag: str = "--resolution") -> None:
    """Check the :func:`add_adm_network_args` flags against each other and ``args.resolution`` (named ``size_flag``
    in messages); a bad value exits through ``parser.error`` naming the flag, the value and what is allowed."""
    size, mults = args.resolution, args.channel_mult
    levels = len(mults)
    if size < 1:
        parser.error(f"argument {size_flag}: invalid value {size}: expected a positive image side")
    if size % 2 ** (levels - 1):
        most = 1  # levels allowed: one more than the times size can be halved exactly
        while size % 2**most == 0:
            most += 1
        parser.error(f"argument --channel_mult: invalid value {_listed(mults)!r}: its {levels} levels halve "
                     f"{size_flag} {size} {levels - 1} times, which needs {size_flag} divisible by {2 ** (levels - 1)}; "
                     f"allowed at {size_flag} {size}: at most {most} multipliers")
    allowed = feature_map_sides(size, levels)
    bad = [r for r in args.attention_resolutions if r not in allowed]
    if bad:
        value = _listed(args.attention_resolutions)
        default = " (the default)" if args.attention_resolutions == parser.get_default("attention_resolutions") else ""
        parser.error(f"argument --attention_resolutions: invalid value {value!r}{default}: {_listed(bad)} "
                     f"{'is not a feature-map side' if len(bad) == 1 else 'are not feature-map sides'} of this network; "
                     f"allowed: any of {_listed(allowed)} (the sides of the {size_flag} {size} feature maps at the "
                     f"{levels} levels of --channel_mult {_listed(mults)}; downsample factor = {size} // side), "
                     "comma-separated, or '' for no attention")
    if args.num_head_channels is not None:
        widths = [int(m * args.model_channels) for m in mults]
        attended = sorted({widths[allowed.index(r)] for r in args.attention_resolutions} | {widths[-1]})
        if any(w % args.num_head_channels for w in attended):
            parser.error(f"argument --num_head_channels: invalid value {args.num_head_channels}: the attention widths "
                         f"{_listed(attended)} (--model_channels × --channel_mult at the attended levels and the middle "
                         f"block) must be multiples of it; allowed: a divisor of {math.gcd(*attended)}, or -1 for "
                         "--num_heads heads")


def network_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor arguments the ADM-family models share, from :func:`add_adm_network_args` flags."""
    return dict(
        sample_size=args.resolution, in_channels=3, model_channels=args.model_channels,
        num_res_blocks=args.num_res_blocks, channel_mult=args.channel_mult, dropout=args.dropout,
        attention_downsample_factors=attention_factors(args.attention_resolutions, args.resolution,
                                                       len(args.channel_mult)),
        num_heads=args.num_heads, num_head_channels=args.num_head_channels,
        use_scale_shift_norm=args.use_scale_shift_norm, resblock_updown=args.resblock_updown,
    )


def diffusion_scheduler(args: argparse.Namespace, variance_type: str = "fixed_small") -> ImprovedDDPMScheduler:
    """The training diffusion the flags describe."""
    return ImprovedDDPMScheduler(num_train_timesteps=args.num_train_timesteps, beta_schedule=args.beta_schedule,
                                 variance_type=variance_type, prediction_type=args.prediction_type)
