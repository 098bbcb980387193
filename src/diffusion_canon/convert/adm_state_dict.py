"""Reference (guided-/improved-diffusion) state dicts → ours, with every key and shape accounted for.

The mapping is derived from the structure of *our* model, walked in the reference's module order, so one function
serves every config. Each rule names a reference tensor, its expected shape, and the parameter(s) of ours it becomes:

* 1-D convolutions of the reference attention (``qkv``, ``proj_out``, ``qkv_proj``, ``c_proj``) become linear layers
  (the trailing kernel dimension of size 1 is dropped);
* the fused ``qkv`` is split into ``to_q``/``to_k``/``to_v``. Two layouts exist: the legacy one (improved-diffusion,
  and guided-diffusion without ``--use_new_attention_order``) stores rows as ``[head, (q|k|v), channel]``; the new one
  as ``[(q|k|v), head, channel]``. Attention pooling always uses the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from ..models.adm_classifier import ADMClassifierModel, AttentionPool2d
from ..models.adm_unet import ADMUNet2DModel


@dataclass
class Rule:
    reference_key: str
    reference_shape: tuple[int, ...]
    our_keys: tuple[str, ...]
    convert: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _same(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (tensor,)


def _conv1d_to_linear(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (tensor.squeeze(-1) if tensor.ndim == 3 else tensor,)


def _split_qkv(heads: int, legacy: bool) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    def split(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows = tensor.reshape(tensor.shape[0], -1)  # [3C, C] weight or [3C, 1] bias
        channels = rows.shape[0] // 3
        head_dim = channels // heads
        if legacy:
            rows = rows.reshape(heads, 3, head_dim, -1).transpose(0, 1)
        parts = rows.reshape(3, channels, -1)
        return tuple(part.reshape((channels,) + tuple(tensor.shape[1:2] if tensor.ndim > 1 else ())) for part in parts)

    return split


def _plain_rules(
    our_prefix: str, reference_prefix: str, module: nn.Module, renames: dict[str, str] | None = None
) -> Iterator[Rule]:
    """One rule per parameter of ``module``; ``renames`` maps our sub-module names to the reference's."""
    for name, parameter in module.state_dict().items():
        head, _, leaf = name.rpartition(".")
        reference_head = (renames or {}).get(head, head)
        reference_name = f"{reference_head}.{leaf}" if reference_head else leaf
        yield Rule(f"{reference_prefix}.{reference_name}", tuple(parameter.shape), (f"{our_prefix}.{name}",), _same)


def _attention_rules(our_prefix: str, reference_prefix: str, attention: Attention, legacy: bool) -> Iterator[Rule]:
    channels = attention.to_q.in_features
    for leaf in ("weight", "bias"):
        yield Rule(f"{reference_prefix}.norm.{leaf}", (channels,), (f"{our_prefix}.group_norm.{leaf}",), _same)
    split = _split_qkv(attention.heads, legacy)
    for leaf, shape in (("weight", (3 * channels, channels, 1)), ("bias", (3 * channels,))):
        yield Rule(f"{reference_prefix}.qkv.{leaf}", shape, tuple(f"{our_prefix}.to_{p}.{leaf}" for p in "qkv"), split)
    out = f"{our_prefix}.to_out.0"
    yield Rule(f"{reference_prefix}.proj_out.weight", (channels, channels, 1), (f"{out}.weight",), _conv1d_to_linear)
    yield Rule(f"{reference_prefix}.proj_out.bias", (channels,), (f"{out}.bias",), _same)


def _module_rules(our_prefix: str, reference_prefix: str, module: nn.Module, legacy: bool) -> Iterator[Rule]:
    if isinstance(module, ResnetBlock2D):
        yield from _plain_rules(our_prefix, reference_prefix, module, _RESNET)
    elif isinstance(module, Attention):
        yield from _attention_rules(our_prefix, reference_prefix, module, legacy)
    elif isinstance(module, Downsample2D):
        yield from _plain_rules(our_prefix, reference_prefix, module, {"conv": "op"})
    elif isinstance(module, Upsample2D):
        yield from _plain_rules(our_prefix, reference_prefix, module)
    else:
        yield from _plain_rules(our_prefix, reference_prefix, module)


def _encoder_rules(model: ADMUNet2DModel | ADMClassifierModel, legacy: bool) -> Iterator[Rule]:
    yield from _plain_rules("time_embedding", "time_embed", model.time_embedding, {"linear_1": "0", "linear_2": "2"})
    yield from _plain_rules("conv_in", "input_blocks.0.0", model.conv_in)
    for index, block in enumerate(model.down_blocks):
        yield from _block_rules(f"down_blocks.{index}", f"input_blocks.{index + 1}", block, legacy)
    for position, name in enumerate(("resnet_1", "attention", "resnet_2")):
        module = getattr(model.mid_block, name)
        yield from _module_rules(f"mid_block.{name}", f"middle_block.{position}", module, legacy)


def _block_rules(our_prefix: str, reference_prefix: str, block: nn.Module, legacy: bool) -> Iterator[Rule]:
    """An ``ADMBlock``: its present parts are the reference ``TimestepEmbedSequential``'s entries 0, 1, 2 in order."""
    parts = [name for name in ("resnet", "attention", "resample") if getattr(block, name) is not None]
    for position, name in enumerate(parts):
        yield from _module_rules(f"{our_prefix}.{name}", f"{reference_prefix}.{position}", getattr(block, name), legacy)


def unet_rules(model: ADMUNet2DModel, legacy_qkv: bool) -> list[Rule]:
    """Every reference ``UNetModel`` / ``SuperResModel`` tensor and where it goes in ``model``."""
    rules = list(_encoder_rules(model, legacy_qkv))
    if model.class_embedding is not None:
        rules += _plain_rules("class_embedding", "label_emb", model.class_embedding)
    for index, block in enumerate(model.up_blocks):
        rules += _block_rules(f"up_blocks.{index}", f"output_blocks.{index}", block, legacy_qkv)
    rules += _plain_rules("conv_norm_out", "out.0", model.conv_norm_out)
    rules += _plain_rules("conv_out", "out.2", model.conv_out)
    return rules


def classifier_rules(model: ADMClassifierModel, legacy_qkv: bool = True) -> list[Rule]:
    """Every reference ``EncoderUNetModel`` tensor and where it goes in ``model`` (its attention blocks use the legacy
    layout: ``create_classifier`` never sets ``use_new_attention_order``)."""
    rules = list(_encoder_rules(model, legacy_qkv))
    pool = model.config.pool
    if pool.startswith("spatial"):
        renames = {"0": "0", "1": "1", "3": "3"} if pool == "spatial_v2" else {"0": "0", "3": "2"}
        return rules + list(_plain_rules("head", "out", model.head, renames))
    rules += _plain_rules("norm_out", "out.0", model.norm_out)
    if pool == "adaptive":
        for leaf, parameter in model.head.state_dict().items():
            shape = tuple(parameter.shape) + ((1, 1) if leaf == "weight" else ())  # the reference's 1x1 convolution
            rules.append(Rule(f"out.3.{leaf}", shape, (f"head.{leaf}",), lambda t, s=parameter.shape: (t.reshape(s),)))
        return rules
    head: AttentionPool2d = model.head
    channels = head.qkv_proj.in_features
    position = tuple(head.positional_embedding.shape)
    rules.append(Rule("out.2.positional_embedding", position, ("head.positional_embedding",), _same))
    for name in ("qkv_proj", "c_proj"):
        layer = getattr(head, name)
        shape = (layer.out_features, channels, 1)
        rules.append(Rule(f"out.2.{name}.weight", shape, (f"head.{name}.weight",), _conv1d_to_linear))
        rules.append(Rule(f"out.2.{name}.bias", (layer.out_features,), (f"head.{name}.bias",), _same))
    return rules


def reference_layout(rules: list[Rule]) -> dict[str, tuple[int, ...]]:
    """The reference state dict's keys and shapes that ``rules`` expect."""
    return {rule.reference_key: rule.reference_shape for rule in rules}


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def convert_state_dict(
    reference: dict[str, torch.Tensor], rules: list[Rule], what: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Apply ``rules`` to a reference state dict.

    Raises ``ValueError`` naming every missing key, unexpected key and shape mismatch (checkpoint vs. expected from
    the flags) when the checkpoint does not match the config.
    """
    expected = reference_layout(rules)
    missing = sorted(set(expected) - set(reference))
    unexpected = sorted(set(reference) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(reference[key].shape)} vs flags {shape}"
        for key, shape in expected.items()
        if key in reference and tuple(reference[key].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if problems:
        raise ValueError(f"the {what} does not match the flags — " + "; ".join(problems))
    converted: dict[str, torch.Tensor] = {}
    for rule in rules:
        for key, tensor in zip(rule.our_keys, rule.convert(reference[rule.reference_key])):
            converted[key] = tensor.contiguous()
    return converted
