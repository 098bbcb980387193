"""The published guided-diffusion and improved-diffusion checkpoints: the flags each was trained with, by name.

The preset name is the checkpoint's file stem, so ``--preset 256x256_diffusion`` goes with ``256x256_diffusion.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    repo: str  # "guided-diffusion" | "improved-diffusion"
    model_flags: str
    url: str
    description: str
    classifier_flags: str | None = None  # the classifier published for the same resolution (guided-diffusion)
    classifier_url: str | None = None
    classifier_scale: float | None = None  # the guidance scale the README samples with
    super_resolution: bool = False


_GD = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
_ID = "https://openaipublic.blob.core.windows.net/diffusion/march-2021/"
_GD_COMMON = "--diffusion_steps 1000 --learn_sigma True --resblock_updown True --use_scale_shift_norm True"
_GD_256 = f"--attention_resolutions 32,16,8 {_GD_COMMON} --image_size 256 --noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --use_fp16 True"
_GD_LSUN = f"{_GD_256} --class_cond False"
_CLF = "--classifier_attention_resolutions 32,16,8 --classifier_depth 2 --classifier_width 128 --classifier_pool attention --classifier_resblock_updown True --classifier_use_scale_shift_norm True"
_ID_LSUN = "--image_size 256 --num_channels 128 --num_res_blocks 2 --num_heads 1 --learn_sigma True --use_scale_shift_norm False --attention_resolutions 16 --diffusion_steps 1000 --noise_schedule linear --rescale_learned_sigmas False --rescale_timesteps False"

PRESETS: dict[str, Preset] = {
    "64x64_diffusion": Preset(
        "guided-diffusion",
        f"--attention_resolutions 32,16,8 --class_cond True {_GD_COMMON} --dropout 0.1 --image_size 64 --noise_schedule cosine --num_channels 192 --num_head_channels 64 --num_res_blocks 3 --use_new_attention_order True --use_fp16 True",
        _GD + "64x64_diffusion.pt",
        "ADM-G ImageNet 64x64, class-conditional",
        classifier_flags=f"--image_size 64 {_CLF.replace('--classifier_depth 2', '--classifier_depth 4')}",
        classifier_url=_GD + "64x64_classifier.pt",
        classifier_scale=1.0,
    ),
    "128x128_diffusion": Preset(
        "guided-diffusion",
        f"--attention_resolutions 32,16,8 --class_cond True {_GD_COMMON} --image_size 128 --noise_schedule linear --num_channels 256 --num_heads 4 --num_res_blocks 2 --use_fp16 True",
        _GD + "128x128_diffusion.pt",
        "ADM-G ImageNet 128x128, class-conditional",
        classifier_flags=f"--image_size 128 {_CLF}",
        classifier_url=_GD + "128x128_classifier.pt",
        classifier_scale=0.5,
    ),
    "256x256_diffusion": Preset(
        "guided-diffusion",
        f"{_GD_256} --class_cond True",
        _GD + "256x256_diffusion.pt",
        "ADM-G ImageNet 256x256, class-conditional",
        classifier_flags=f"--image_size 256 {_CLF}",
        classifier_url=_GD + "256x256_classifier.pt",
        classifier_scale=1.0,
    ),
    "256x256_diffusion_uncond": Preset(
        "guided-diffusion",
        f"{_GD_256} --class_cond False",
        _GD + "256x256_diffusion_uncond.pt",
        "ADM-G ImageNet 256x256, unconditional (guided by the 256x256 classifier)",
        classifier_flags=f"--image_size 256 {_CLF}",
        classifier_url=_GD + "256x256_classifier.pt",
        classifier_scale=10.0,
    ),
    "512x512_diffusion": Preset(
        "guided-diffusion",
        f"--attention_resolutions 32,16,8 --class_cond True {_GD_COMMON} --image_size 512 --noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --use_fp16 False",
        _GD + "512x512_diffusion.pt",
        "ADM-G ImageNet 512x512, class-conditional",
        classifier_flags=f"--image_size 512 {_CLF}",
        classifier_url=_GD + "512x512_classifier.pt",
        classifier_scale=4.0,
    ),
    "64_256_upsampler": Preset(
        "guided-diffusion",
        f"--attention_resolutions 32,16,8 --class_cond True {_GD_COMMON} --large_size 256 --small_size 64 --noise_schedule linear --num_channels 192 --num_heads 4 --num_res_blocks 2 --use_fp16 True",
        _GD + "64_256_upsampler.pt",
        "ADM-U ImageNet 64 -> 256 upsampler, class-conditional",
        super_resolution=True,
    ),
    "128_512_upsampler": Preset(
        "guided-diffusion",
        f"--attention_resolutions 32,16 --class_cond True {_GD_COMMON} --large_size 512 --small_size 128 --noise_schedule linear --num_channels 192 --num_head_channels 64 --num_res_blocks 2 --use_fp16 True",
        _GD + "128_512_upsampler.pt",
        "ADM-U ImageNet 128 -> 512 upsampler, class-conditional",
        super_resolution=True,
    ),
    **{
        f"lsun_{name}": Preset(
            "guided-diffusion",
            f"{_GD_LSUN} --dropout {0.0 if name == 'horse_nodropout' else 0.1}",
            _GD + f"lsun_{name}.pt",
            f"ADM LSUN {name.replace('_nodropout', ' (no dropout)')} 256x256, unconditional",
        )
        for name in ("bedroom", "cat", "horse", "horse_nodropout")
    },
    "imagenet64_uncond_100M_1500K": Preset(
        "improved-diffusion",
        "--image_size 64 --num_channels 128 --num_res_blocks 3 --learn_sigma True --diffusion_steps 4000 --noise_schedule cosine",
        _ID + "imagenet64_uncond_100M_1500K.pt",
        "Improved DDPM ImageNet 64x64, unconditional, L_hybrid, cosine schedule",
    ),
    "cifar10_uncond_50M_500K": Preset(
        "improved-diffusion",
        "--image_size 32 --num_channels 128 --num_res_blocks 3 --learn_sigma True --dropout 0.3 --diffusion_steps 4000 --noise_schedule cosine",
        _ID + "cifar10_uncond_50M_500K.pt",
        "Improved DDPM CIFAR-10, unconditional, L_hybrid, cosine schedule",
    ),
    "imagenet64_cond_270M_250K": Preset(
        "improved-diffusion",
        "--image_size 64 --num_channels 192 --num_res_blocks 3 --learn_sigma True --class_cond True --diffusion_steps 4000 --noise_schedule cosine --rescale_learned_sigmas False --rescale_timesteps False",
        _ID + "imagenet64_cond_270M_250K.pt",
        "Improved DDPM ImageNet 64x64, class-conditional",
    ),
    "upsample_cond_500K": Preset(
        "improved-diffusion",
        "--num_channels 192 --num_res_blocks 2 --learn_sigma True --class_cond True --diffusion_steps 4000 --noise_schedule linear --rescale_learned_sigmas False --rescale_timesteps False",
        _ID + "upsample_cond_500K.pt",
        "Improved DDPM ImageNet 64 -> 256 upsampler, class-conditional",
        super_resolution=True,
    ),
    "lsun_uncond_100M_1200K_bs128": Preset(
        "improved-diffusion", _ID_LSUN, _ID + "lsun_uncond_100M_1200K_bs128.pt", "Improved DDPM LSUN bedroom (lr 1e-4)"
    ),
    "lsun_uncond_100M_2400K_bs64": Preset(
        "improved-diffusion", _ID_LSUN, _ID + "lsun_uncond_100M_2400K_bs64.pt", "Improved DDPM LSUN bedroom (lr 2e-5)"
    ),
    "imagenet64_uncond_vlb_100M_1500K": Preset(
        "improved-diffusion",
        "--image_size 64 --num_channels 128 --num_res_blocks 3 --learn_sigma True --diffusion_steps 4000 --noise_schedule cosine --use_kl True",
        _ID + "imagenet64_uncond_vlb_100M_1500K.pt",
        "Improved DDPM ImageNet 64x64, unconditional, L_vlb, cosine schedule",
    ),
    "cifar10_uncond_vlb_50M_500K": Preset(
        "improved-diffusion",
        "--image_size 32 --num_channels 128 --num_res_blocks 3 --learn_sigma True --dropout 0.3 --diffusion_steps 4000 --noise_schedule cosine --use_kl True",
        _ID + "cifar10_uncond_vlb_50M_500K.pt",
        "Improved DDPM CIFAR-10, unconditional, L_vlb, cosine schedule",
    ),
}


def get_preset(name: str, repo: str | None = None) -> Preset:
    """The preset called ``name`` (optionally checking it belongs to ``repo``); ``ValueError`` lists the known ones."""
    names = sorted(key for key, preset in PRESETS.items() if repo is None or preset.repo == repo)
    if name not in names:
        raise ValueError(f"unknown preset {name!r}{f' for {repo}' if repo else ''}; known presets: {', '.join(names)}")
    return PRESETS[name]
