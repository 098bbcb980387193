"""``diffusion-canon make-base``: train the tiny Stable-Diffusion-format glyph model the fine-tuning demos start from.

Three stages on the glyph world's ``train`` split and (``--held_out_style_images``) renders of the held-out style
``outline`` in the training fonts. The held-out font is never seen, so DreamBooth has a genuinely new subject. The
held-out style's renders are captioned with one of its two words alone (``--held_out_style_word hollow``, the shipped
base) or with none: a style the base can draw under a word the fine-tuning demos never use, while the one they use
("outlined") it never read: the situation textual inversion is for (Gal et al. 2022 find words for what a model can
already draw; with no word at all, no text reaches the style and inversion finds nothing, benchmarks/RESULTS.md F2).
Without them even the VAE cannot reproduce an outline. With ``--held_out_style_stages vae`` only the VAE sees them: a latent
space that holds outlines, under a UNet that never drew one:

1. the glyph BPE tokenizer (``build_glyph_tokenizer``), CLIP format;
2. an ``AutoencoderKL`` (4x downsampling, 4 latent channels): L1 reconstruction + beta KL(q(z|x) || N(0, I)); the
   latent scaling factor is then set to 1 / std(z) as in Stable Diffusion;
3. a ``UNet2DConditionModel`` trained from scratch with the epsilon-prediction loss on the VAE latents, conditioned on
   a ``CLIPTextModel``; 10% of captions are dropped to "" so classifier-free guidance works. The text encoder is
   either trained together with the UNet from scratch, or (``--text_encoder_path``) a given one, kept frozen: the
   shipped base uses the hard-negative glyph CLIP of ``pipelines/unclip-glyphs``, whose embeddings tell characters
   and colours apart, where one learnt only through the denoising loss mostly does not (benchmarks/RESULTS.md, T1).

Saved as a ``StableDiffusionPipeline`` folder (fp16 safetensors by default) with a DDIM scheduler, RECIPE.md (the
exact command) and a model card. Runs on a CPU in minutes at the default sizes.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from transformers import CLIPTextConfig, CLIPTextModel

from ..pipelines.hub import cast_for_storage
from ..training.model_card import write_model_card

logger = logging.getLogger(__name__)

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def tiny_vae(resolution: int) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=16, sample_size=resolution,
    )


def tiny_unet(latent_size: int, context_dim: int) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=context_dim, attention_head_dim=8, norm_num_groups=16,
    )


def tiny_text_encoder(tokenizer) -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=64,
    ))


def pretrained_text_encoder(path: str, tokenizer) -> CLIPTextModel:
    """The frozen float32 ``CLIPTextModel`` in folder ``path`` (``--text_encoder_path``), refused with a ValueError
    unless it is a safetensors CLIP text model that reads the glyph tokenizer's ids at its caption length."""
    if not os.path.isfile(os.path.join(path, "config.json")) or not any(
            name.endswith(".safetensors") for name in os.listdir(path)):
        raise ValueError(f"--text_encoder_path {path!r} must be a folder with a CLIPTextModel's config.json and "
                         "safetensors weights (such as pipelines/unclip-glyphs/text_encoder)")
    text_encoder = CLIPTextModel.from_pretrained(path, use_safetensors=True, dtype=torch.float32)
    config = text_encoder.config
    if config.vocab_size != len(tokenizer) or config.max_position_embeddings < tokenizer.model_max_length:
        raise ValueError(
            f"--text_encoder_path {path!r} reads {config.vocab_size} tokens and {config.max_position_embeddings} "
            f"positions; the glyph tokenizer needs {len(tokenizer)} tokens and {tokenizer.model_max_length} positions")
    return text_encoder.requires_grad_(False).eval()


def glyph_tensors(resolution: int, num_images: int, seed: int, held_out_style_images: int = 0,
                  held_out_style_word: str = "") -> tuple[torch.Tensor, list[str]]:
    """(N, 3, R, R) images in [-1, 1] and their captions: ``num_images`` from the ``train`` split (held-out fonts and
    styles excluded), then ``held_out_style_images`` of the held-out styles in the training fonts, their captions
    naming the style by ``held_out_style_word`` alone, or (``""``) not at all
    (:func:`~diffusion_canon.data.glyphs.recaption`'s ``name_style``). Those come from seed ``seed + 2`` of the
    ``held_out`` split: seeds 0 and 1 are the fine-tuning demos' training and reference images."""
    from ..data.glyphs import HELD_OUT_STYLES, TRAINING_FONTS, glyph_specs, recaption, render_glyph

    specs = glyph_specs(num_images=num_images, seed=seed, split="train")
    if held_out_style_images:
        held_out = glyph_specs(num_images=held_out_style_images, seed=seed + 2, split="held_out",
                               styles=HELD_OUT_STYLES, fonts=TRAINING_FONTS)
        specs += [recaption(spec, [seed, index], name_style=held_out_style_word or False)
                  for index, spec in enumerate(held_out)]
    pixels = np.stack([render_glyph(spec, resolution)[resolution] for spec in specs])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0, [spec.caption for spec in specs]


def ink_weights(images: torch.Tensor, ink_weight: float) -> torch.Tensor:
    """Per-pixel weights (N, 1, H, W) ``1 + ink_weight * a``, with ``a`` in [0, 1] how far a pixel is from its image's
    paper (the median border colour) relative to the farthest one: 1 on the paper, ``1 + ink_weight`` on the ink."""
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    distance = (images - border.median(dim=2).values[:, :, None, None]).norm(dim=1, keepdim=True)
    return 1 + ink_weight * distance / distance.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def train_vae(vae: AutoencoderKL, images: torch.Tensor, args: argparse.Namespace) -> None:
    """min_phi E [w |x - D(z)|_1] / E[w] + beta KL(q(z|x) || N(0, I)), z ~ q(z|x), with the ink-weighted L1 of
    :func:`ink_weights` (``--vae_ink_weight``; 0 is plain L1). The ink is a tenth of a glyph image's pixels: under
    plain L1 the VAE reconstructs the paper and lets the ink drift to dark: after 1200 steps the ink colour of held-out
    glyphs reads back right for 0.45 of them, weighted by 3 (and a cosine learning rate) for 0.995
    (benchmarks/RESULTS.md, T1)."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.learning_rate, weight_decay=0.0)
    lr_schedule = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=0, num_training_steps=args.vae_steps)
    generator = torch.Generator().manual_seed(args.seed)
    weights = ink_weights(images, args.vae_ink_weight)
    for step in range(args.vae_steps):
        index = torch.randint(0, len(images), (args.batch_size,), generator=generator)
        batch, weight = images[index], weights[index]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        l1 = (weight * (reconstruction - batch).abs()).mean() / weight.mean()
        loss = l1 + args.kl_weight * posterior.kl().mean() / batch[0].numel()
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == args.vae_steps - 1:
            logger.info("vae step %d loss %.4f", step, loss.item())


@torch.no_grad()
def encode_all(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Posterior parameters (N, 8, h, w) of every image (mean and log-variance, as ``latent_dist.parameters``)."""
    return torch.cat([vae.encode(images[i : i + batch_size]).latent_dist.parameters
                      for i in range(0, len(images), batch_size)])


def train_unet(unet, text_encoder, tokenizer, latent_params: torch.Tensor, captions: list[str],
               scheduler: DDPMScheduler, scaling_factor: float, args: argparse.Namespace) -> None:
    """min E || eps - eps_theta(z_t, t, c(y)) ||^2 with y dropped to "" with probability ``caption_dropout``; the text
    encoder trains with the UNet unless it is frozen, in which case every caption is encoded once, up front."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    params = [p for p in [*unet.parameters(), *text_encoder.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=1e-2)
    lr_schedule = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=100, num_training_steps=args.unet_steps)
    generator = torch.Generator().manual_seed(args.seed + 1)
    token_ids = tokenizer(captions + [""], padding="max_length", truncation=True,
                          max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    frozen = not any(p.requires_grad for p in text_encoder.parameters())
    if frozen:
        with torch.no_grad():
            contexts = torch.cat([text_encoder(ids)[0] for ids in token_ids.split(256)])
    empty = len(captions)
    for step in range(args.unet_steps):
        index = torch.randint(0, len(captions), (args.batch_size,), generator=generator)
        latents = DiagonalGaussianDistribution(latent_params[index]).sample(generator) * scaling_factor
        index = torch.where(torch.rand(args.batch_size, generator=generator) < args.caption_dropout, empty, index)
        context = contexts[index] if frozen else text_encoder(token_ids[index])[0]
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch_size,), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        loss = F.mse_loss(unet(noisy, timesteps, context).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == args.unet_steps - 1:
            logger.info("unet step %d loss %.4f lr %.2e", step, loss.item(), lr_schedule.get_last_lr()[0])


def run(args: argparse.Namespace) -> int:
    from ..data.glyphs import HELD_OUT_STYLES, STYLE_WORDS
    from ..data.tokenizer import build_glyph_tokenizer

    if args.resolution % 4:
        raise ValueError(f"--resolution must be a multiple of 4 (the VAE downsamples 4x), got {args.resolution}")
    if args.held_out_style_images < 0:
        raise ValueError(f"--held_out_style_images must be >= 0 (0: none), got {args.held_out_style_images}")
    style_words = [w for style in HELD_OUT_STYLES for w in STYLE_WORDS[style] if w]
    if args.held_out_style_word not in ("", *style_words):
        raise ValueError(f"--held_out_style_word must be one of {style_words} or '' (captions without it), "
                         f"got {args.held_out_style_word!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    start = time.time()
    tokenizer = build_glyph_tokenizer()
    text_encoder = (pretrained_text_encoder(args.text_encoder_path, tokenizer) if args.text_encoder_path
                    else tiny_text_encoder(tokenizer))  # checked before hours of training, not after
    images, captions = glyph_tensors(args.resolution, args.num_images, args.seed, args.held_out_style_images,
                                     args.held_out_style_word)

    vae = tiny_vae(args.resolution)
    train_vae(vae, images, args)
    vae.eval()
    if args.held_out_style_stages == "vae":  # glyph_tensors puts the held-out style's renders last
        images, captions = images[: args.num_images], captions[: args.num_images]
    latent_params = encode_all(vae, images)
    scaling_factor = float(1.0 / latent_params[:, :4].std())
    vae.register_to_config(scaling_factor=scaling_factor)
    logger.info("vae done in %.0f s; latent scaling factor %.4f", time.time() - start, scaling_factor)

    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              num_train_timesteps=1000, clip_sample=False)
    unet = tiny_unet(args.resolution // 4, text_encoder.config.hidden_size)
    train_unet(unet, text_encoder, tokenizer, latent_params, captions, scheduler, scaling_factor, args)

    from diffusers import StableDiffusionPipeline  # here, not at import: it loads transformers' image processors

    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=DDIMScheduler.from_config(scheduler.config, steps_offset=1, set_alpha_to_one=False),
        safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    cast_for_storage(pipeline, DTYPES[args.dtype]).save_pretrained(args.output_dir, safe_serialization=True)
    minutes = (time.time() - start) / 60
    write_recipe(args, minutes)
    samples = sample_grid(args.output_dir, args.resolution, args.num_inference_steps)
    write_model_card(args.output_dir, "tiny_sd_base", base_model=None, tags=["text-to-image", "glyphs"],
                     images=samples, resolution=args.resolution, vae_steps=args.vae_steps,
                     unet_steps=args.unet_steps, num_images=args.num_images, minutes=round(minutes, 1),
                     text_encoder_path=args.text_encoder_path, held_out_style_images=args.held_out_style_images,
                     held_out_style_word=args.held_out_style_word, held_out_style_stages=args.held_out_style_stages)
    logger.info("saved %s in %.1f min", args.output_dir, minutes)
    return 0


def sample_grid(folder: str, resolution: int, num_inference_steps: int) -> list:
    """Four samples from the saved (reloaded) pipeline, for the model card."""
    from diffusers import StableDiffusionPipeline

    from ..image_grid import image_grid

    pipeline = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    prompts = ["a letter A", "a red bold serif letter Q", "the digit 7 in blue", "a letter K"]
    images = pipeline(prompts, num_inference_steps=num_inference_steps, height=resolution, width=resolution,
                      generator=torch.Generator().manual_seed(0)).images
    return [image_grid(images, columns=4)]


def write_recipe(args: argparse.Namespace, minutes: float) -> None:
    flags = " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in sorted(vars(args).items()) if k != "func")
    threads = os.environ.get("OMP_NUM_THREADS", "")
    named = (f"name the style only as \"{args.held_out_style_word}\"" if args.held_out_style_word
             else "never name the style")
    held_out = (f", and {args.held_out_style_images} renders of the held-out styles in the training fonts whose "
                f"captions {named}" if args.held_out_style_images else "")
    if args.held_out_style_images and args.held_out_style_stages == "vae":
        held_out += " (in the VAE's data only)"
    with open(os.path.join(args.output_dir, "RECIPE.md"), "w") as f:
        f.write(
            "# Recipe\n\nThis folder was produced by\n\n"
            f"```\nOMP_NUM_THREADS={threads} diffusion-canon make-base {flags}\n```\n\n"
            f"with diffusion-canon's `finetune/make_base.py` (torch {torch.__version__}, Python "
            f"{sys.version.split()[0]}); it took {minutes:.1f} min on a shared 2-core CPU. Training data: "
            f"`load_glyphs(split=\"train\")` ({args.num_images} images), which never shows the held-out fonts and "
            f"styles (`HELD_OUT_FONTS`, `HELD_OUT_STYLES`){held_out}.\n"
        )
