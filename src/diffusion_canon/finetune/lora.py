"""LoRA (Hu et al. 2021): W' = W + (alpha / r) B A on chosen Linear and Conv2d layers (by default the attention
projections), via peft; saved in the diffusers LoRA format (``pytorch_lora_weights.safetensors`` with rank / alpha /
target modules in the safetensors metadata), loadable with ``pipe.load_lora_weights(folder)``; optionally also in the
kohya / A1111 key format."""

from __future__ import annotations

import os

import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
KOHYA_WEIGHT_NAME = "lora_kohya.safetensors"
ADAPTABLE = (torch.nn.Linear, torch.nn.Conv2d)  # the layer types a LoRA adapter may sit on here


def check_lora_layers(model: torch.nn.Module, targets: tuple[str, ...]) -> None:
    """Raise a ``ValueError`` naming ``--lora_layers`` unless every target names a Linear or Conv2d layer of ``model``
    (the scripts call this right after loading the base, before any run directory or class images are made)."""
    adaptable = [name for name, module in model.named_modules() if isinstance(module, ADAPTABLE)]
    # peft matches a target as a whole name or a dotted suffix, and only complains when no target matches at all
    unmatched = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in adaptable)]
    if unmatched:
        # the shortest suffix that names a layer kind: "conv1", but "net.2" rather than "2"
        examples = sorted({".".join(n.split(".")[-2:]) if n.split(".")[-1].isdigit() else n.split(".")[-1]
                           for n in adaptable})
        raise ValueError(f"--lora_layers: no Linear or Conv2d layer of the {type(model).__name__} is named "
                         f"{', '.join(map(repr, unmatched))}; its layer names end in e.g. {', '.join(examples)}")


def add_lora(model: torch.nn.Module, rank: int, alpha: float | None, targets: tuple[str, ...]) -> None:
    """Freeze ``model`` and add a LoRA adapter: A ~ N(0, 1/r) ("gaussian"), B = 0, so training starts at W.

    Goes through peft itself (``inject_adapter_in_model``, which also sets ``model.peft_config``) rather than the
    ``add_adapter`` wrappers of diffusers and transformers: those gate on peft versions of their own (transformers 5.24
    demands a peft newer than any released), while peft's API is the one both wrap."""
    if rank < 1:
        raise ValueError(f"--rank must be >= 1, got {rank}")
    check_lora_layers(model, targets)
    model.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=list(targets))
    inject_adapter_in_model(config, model)


def save_lora(output_dir: str, unet: torch.nn.Module, text_encoder: torch.nn.Module | None = None,
              export_kohya: bool = False) -> None:
    """Write ``output_dir/pytorch_lora_weights.safetensors`` (diffusers format + adapter metadata) and, with
    ``export_kohya``, ``lora_kohya.safetensors`` for A1111 / ComfyUI."""
    unet_layers = get_peft_model_state_dict(unet)
    text_layers = get_peft_model_state_dict(text_encoder) if text_encoder is not None else None
    StableDiffusionPipeline.save_lora_weights(
        output_dir,
        unet_lora_layers=convert_state_dict_to_diffusers(unet_layers),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(text_layers) if text_layers else None,
        unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
        text_encoder_lora_adapter_metadata=(
            text_encoder.peft_config["default"].to_dict() if text_encoder is not None else None
        ),
    )
    if export_kohya:
        kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in unet_layers.items()})
        if text_layers:
            kohya.update(convert_state_dict_to_kohya({f"text_encoder.{k}": v for k, v in text_layers.items()}))
        config = unet.peft_config["default"]
        # the converter writes alpha = rank; the adapter's own alpha is what scales B A
        kohya = {k: torch.tensor(float(config.lora_alpha)) if k.endswith(".alpha") else v for k, v in kohya.items()}
        save_file({k: v.contiguous() for k, v in kohya.items()}, os.path.join(output_dir, KOHYA_WEIGHT_NAME),
                  metadata={"ss_network_dim": str(config.r), "ss_network_alpha": str(config.lora_alpha)})
