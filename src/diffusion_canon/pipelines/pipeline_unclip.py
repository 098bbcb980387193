"""unCLIP (Ramesh et al. 2022): text → CLIP image embedding (the diffusion prior) → image (the decoder), and image
variations (an input image's CLIP embedding → the decoder, no prior).

The decoder is an ADM U-Net conditioned on the image embedding z_i and optionally the caption's token encodings
(:class:`~diffusion_canon.models.unclip_decoder.UnCLIPDecoderUNet2DModel`), sampled with the improved-DDPM scheduler
(learned Σ). Classifier-free guidance drops both conditions for the unconditional pass,
ε̃ = ε(x_t, ∅, ∅) + w·(ε(x_t, z_i, y) − ε(x_t, ∅, ∅)); Σ is the conditional pass's. An optional super-resolution
pipeline (the cascade's ``SuperResolutionPipeline``) can upsample the decoder's images.

RNG contract: with one ``torch.Generator``, the prior draws first (its initial noise, then each step's, see
:mod:`.pipeline_unclip_prior`), then the decoder draws its initial noise ``(B, C, H, W)`` and each stochastic step's
noise of that shape, in sampling order, then the super-resolution stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
# the loader bases in this namespace let diffusers accept this module as the components' library (see hub.py)
from diffusers import DiffusionPipeline, ModelMixin, SchedulerMixin  # noqa: F401
from diffusers.utils import BaseOutput, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from ..clip.encoding import encode_images, encode_prompts
from ..clip.glyph_clip import CLIPImageProcessor
from ..models.unclip_decoder import UnCLIPDecoderUNet2DModel
from ..models.unclip_prior import UnCLIPPriorTransformer
from ..schedulers import ImprovedDDPMScheduler
from ..schedulers.improved_diffusion_base import ImprovedDiffusionScheduler
from .hub import FolderPipelineMixin
from ..checks import (
    check_callback, check_count, check_flag, check_generator, check_number, check_images, check_prompts,
    check_tensor,
)
from .pipeline_unclip_prior import UnCLIPPriorPipeline
from .sampling import (
    ConditionedModel, SamplingMixin, StepCallback, check_output_type, classifier_free_guidance, denoise, doubled_for,
    postprocess,
)


EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DiffusionPipeline
        >>> pipe = DiffusionPipeline.from_pretrained("pipelines/unclip-glyphs", trust_remote_code=True)
        >>> images = pipe("a red bold serif letter Q", num_images_per_prompt=2, generator=torch.manual_seed(0)).images
        >>> variations = pipe.variations(images[0], num_images_per_prompt=3, generator=torch.manual_seed(1)).images
        ```
"""


@dataclass
class UnCLIPPipelineOutput(BaseOutput):
    """``images``: PIL list, NHWC array or NCHW tensor in [0, 1] (or x_0 in [−1, 1] for "latent"), B rows;
    ``image_embeds`` ``(B, D)``: the CLIP image embeddings the decoder was conditioned on."""

    images: Any
    image_embeds: torch.Tensor


def decoder_model(
    decoder: UnCLIPDecoderUNet2DModel,
    image_embeds: torch.Tensor,
    tokens: torch.Tensor | None,
    keep_image: bool = True,
) -> ConditionedModel:
    """The decoder as a conditioned model ``(x_t, model_timestep, keep) -> output`` float32: rows whose ``keep`` is
    False drop both conditions (the null image embedding and the null text tokens, the unconditional pass of
    classifier-free guidance). ``keep_image=False`` conditions on the caption alone (the null embedding in every
    row)."""

    def model(x: torch.Tensor, model_timestep: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        embeds, text = doubled_for(keep, image_embeds, tokens)
        kept = torch.full((x.shape[0],), keep_image, dtype=torch.bool, device=x.device)
        if keep is not None:
            kept = kept & keep
        return decoder(x, model_timestep, embeds, text, keep_image=kept, keep_text=keep).sample.float()

    return model


class UnCLIPPipeline(SamplingMixin, FolderPipelineMixin, DiffusionPipeline):
    r"""unCLIP text-to-image (prior + decoder) and image variations (decoder only).

    Components:
        decoder: :class:`~diffusion_canon.models.unclip_decoder.UnCLIPDecoderUNet2DModel`.
        decoder_scheduler: :class:`~diffusion_canon.schedulers.ImprovedDDPMScheduler` the decoder was trained with.
        text_encoder: ``transformers.CLIPTextModelWithProjection`` (z_t and the token encodings).
        tokenizer: ``transformers.CLIPTokenizer``.
        prior, prior_scheduler: optional :class:`~diffusion_canon.models.unclip_prior.UnCLIPPriorTransformer` and its
            x0-predicting scheduler (needed for prompts).
        image_encoder, image_processor: optional ``CLIPVisionModelWithProjection`` and ``CLIPImageProcessor``
            (needed for image variations).
    All must share the CLIP embedding dimension D; :meth:`check_components` says which one does not.
    """

    model_cpu_offload_seq = "text_encoder->prior->image_encoder->decoder"
    _optional_components = ["prior", "prior_scheduler", "image_encoder", "image_processor"]

    def __init__(
        self,
        decoder: UnCLIPDecoderUNet2DModel,
        decoder_scheduler: ImprovedDiffusionScheduler,
        text_encoder: Any,
        tokenizer: Any,
        prior: UnCLIPPriorTransformer | None = None,
        prior_scheduler: ImprovedDiffusionScheduler | None = None,
        image_encoder: Any = None,
        image_processor: CLIPImageProcessor | None = None,
    ):
        super().__init__()
        self.register_modules(
            decoder=decoder, decoder_scheduler=decoder_scheduler, text_encoder=text_encoder, tokenizer=tokenizer,
            prior=prior, prior_scheduler=prior_scheduler, image_encoder=image_encoder, image_processor=image_processor,
        )
        self.check_components()

    # -- components ----------------------------------------------------------------------------------------------

    def check_components(self) -> None:
        """Every embedding dimension must agree: decoder ↔ CLIP text ↔ CLIP image ↔ prior; ``ValueError`` otherwise."""
        decoder = self.decoder.config
        dims = {"CLIP text encoder projection_dim": self.text_encoder.config.projection_dim}
        if self.image_encoder is not None:
            dims["CLIP image encoder projection_dim"] = self.image_encoder.config.projection_dim
        if self.prior is not None:
            dims["prior embedding_dim"] = self.prior.config.embedding_dim
        for name, dim in dims.items():
            if dim != decoder.embedding_dim:
                raise ValueError(f"decoder embedding_dim={decoder.embedding_dim} does not match the {name}={dim}")
        if decoder.text_hidden_size not in (0, self.text_encoder.config.hidden_size):
            raise ValueError(
                f"decoder text_hidden_size={decoder.text_hidden_size} does not match the CLIP text encoder's "
                f"hidden_size={self.text_encoder.config.hidden_size} (or 0 for no text conditioning)"
            )
        if decoder.num_text_tokens not in (0, self.tokenizer.model_max_length):
            raise ValueError(
                f"decoder num_text_tokens={decoder.num_text_tokens} does not match the tokenizer's "
                f"model_max_length={self.tokenizer.model_max_length}"
            )
        if (self.prior is None) != (self.prior_scheduler is None):
            raise ValueError("prior and prior_scheduler must be given together")
        if (self.image_encoder is None) != (self.image_processor is None):
            raise ValueError("image_encoder and image_processor must be given together")

    @property
    def prior_pipeline(self) -> UnCLIPPriorPipeline:
        """The prior as an :class:`UnCLIPPriorPipeline` sharing this pipeline's text encoder and tokenizer."""
        if self.prior is None:
            raise ValueError("this UnCLIPPipeline has no prior: prompts need one (image variations do not)")
        pipe = UnCLIPPriorPipeline(self.prior, self.text_encoder, self.tokenizer, self.prior_scheduler)
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipe

    @torch.no_grad()
    def encode_image(self, images: Any) -> torch.Tensor:
        """CLIP image embeddings ``(N, D)`` of images (PIL list, NHWC array or NCHW tensor in [0, 1])."""
        if self.image_encoder is None:
            raise ValueError("this UnCLIPPipeline has no image_encoder/image_processor: image variations need them")
        return encode_images(self.image_encoder, self.image_processor, images).float()

    def text_tokens(self, prompts: Sequence[str] | None, device: torch.device) -> torch.Tensor | None:
        """The decoder's text input: CLIP token encodings ``(N, L, H)``, or None (no text conditioning / no prompt)."""
        if prompts is None or not self.decoder.config.text_hidden_size:
            return None
        return encode_prompts(self.text_encoder, self.tokenizer, prompts, device=device)[1]

    # -- the decoder -------------------------------------------------------------------------------------------

    @staticmethod
    def check_sr_kwargs(super_resolution: Any, super_resolution_kwargs: Any) -> None:
        if super_resolution is not None and not callable(super_resolution):
            raise TypeError(f"super_resolution must be a pipeline, got {type(super_resolution).__name__}")
        if super_resolution_kwargs is not None and not isinstance(super_resolution_kwargs, dict):
            raise TypeError(f"super_resolution_kwargs must be a dict, got {type(super_resolution_kwargs).__name__}")

    @torch.no_grad()
    def decode(
        self,
        image_embeds: torch.Tensor | None,
        text_token_encodings: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        timestep_respacing: str | None = None,
        guidance_scale: float = 3.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> Any:
        """Sample images from CLIP image embeddings ``(B, D)`` (optionally with token encodings ``(B, L, H)``).

        ``image_embeds`` may be any vectors in CLIP's space: the prior's samples, an image's embedding, or a caption's
        text embedding z_t (DALL-E 2 §5.1's "no prior" baseline); ``None`` decodes from the caption alone (the null
        embedding, GLIDE-like; needs ``text_token_encodings``). Returns the images in ``output_type``."""
        check_output_type(output_type)
        check_number("guidance_scale", guidance_scale)
        if num_inference_steps is not None:
            check_number("num_inference_steps", num_inference_steps, minimum=1,
                         maximum=self.decoder_scheduler.config.num_train_timesteps, integer=True)
        check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs)
        for name, tensor in (("image_embeds", image_embeds), ("text_token_encodings", text_token_encodings),
                             ("latents", latents)):
            if tensor is not None:
                check_tensor(name, tensor)
        config = self.decoder.config
        keep_image = image_embeds is not None
        if not keep_image:
            if text_token_encodings is None:
                raise ValueError("image_embeds=None (caption only) needs text_token_encodings")
            image_embeds = torch.zeros(len(text_token_encodings), config.embedding_dim)
        if image_embeds.ndim != 2 or image_embeds.shape[1] != config.embedding_dim:
            raise ValueError(
                f"image_embeds must have shape (B, embedding_dim={config.embedding_dim}), "
                f"got {tuple(image_embeds.shape)}"
            )
        device = self._execution_device
        b = image_embeds.shape[0]
        check_generator(generator, b)
        shape = (b, config.in_channels, config.sample_size, config.sample_size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
        latents = latents.to(device=device, dtype=torch.float32)
        image_embeds = image_embeds.to(device)
        tokens = None if text_token_encodings is None else text_token_encodings.to(device)

        self.begin_sampling(guidance_scale)
        self.decoder_scheduler.set_timesteps(num_inference_steps=num_inference_steps,
                                             timestep_respacing=timestep_respacing, device=device)
        model = classifier_free_guidance(decoder_model(self.decoder, image_embeds, tokens, keep_image), self,
                                         channels=config.in_channels)
        latents = denoise(self, self.decoder_scheduler, model, latents, generator=generator,
                          callback_on_step_end=callback_on_step_end,
                          callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                          causes="latents, image_embeds and guidance_scale")
        self.maybe_free_model_hooks()
        return postprocess(latents, output_type)

    def upsample(self, images: torch.Tensor, super_resolution: DiffusionPipeline | None, generator: Any,
                 output_type: str, kwargs: dict[str, Any] | None) -> Any:
        """``images`` ``(B, C, H, W)`` in [−1, 1] (the decoder's x_0) → the final output, through the optional SR
        stage."""
        if super_resolution is None:
            return postprocess(images, output_type)
        result = super_resolution(low_res=((images + 1) / 2).clamp(0, 1), generator=generator,
                                  output_type=output_type, **(kwargs or {}))
        return result.images

    # -- entry points ----------------------------------------------------------------------------------------

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | Sequence[str] | None = None,
        num_images_per_prompt: int = 1,
        prior_num_inference_steps: int | None = 25,
        prior_guidance_scale: float = 4.0,
        num_candidates: int = 1,
        num_inference_steps: int | None = 25,
        timestep_respacing: str | None = None,
        guidance_scale: float = 3.0,
        condition_on_text: bool = True,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        super_resolution: DiffusionPipeline | None = None,
        super_resolution_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> UnCLIPPipelineOutput | tuple:
        r"""Text to image: the prior samples z_i for each prompt, the decoder turns z_i (and the caption) into an image.

        Args:
            prompt: a string or a non-empty list of strings.
            num_images_per_prompt: images per prompt (B = len(prompts) · num_images_per_prompt, prompt-major).
            prior_num_inference_steps, prior_guidance_scale, num_candidates: the prior's respaced steps, guidance
                weight and rerank candidates (the best of ``num_candidates`` by CLIP similarity to the caption).
            num_inference_steps / timestep_respacing, guidance_scale: the decoder's schedule and guidance weight w.
            condition_on_text: also give the decoder the caption's token encodings (text-conditioned decoders only).
            generator, latents: the RNG (module docstring) and optional decoder x_T ``(B, C, H, W)``.
            output_type: "pil", "np" (NHWC in [0, 1]), "pt" (NCHW in [0, 1]) or "latent" (x_0 in [−1, 1]).
            super_resolution, super_resolution_kwargs: an optional SR pipeline called as
                ``super_resolution(low_res=images, generator=generator, output_type=output_type, **kwargs)``.
            return_dict: return an :class:`UnCLIPPipelineOutput` (else a tuple).
            callback_on_step_end: ``callback(pipe, step, timestep, {"latents": ...}) -> dict`` after each decoder step;
                it may change ``pipe._guidance_scale`` or set ``pipe._interrupt``.
            callback_on_step_end_tensor_inputs: the tensors the callback receives (``["latents"]``).

        Examples:

        Returns:
            :class:`UnCLIPPipelineOutput` (``images``, ``image_embeds``), or the tuple ``(images, image_embeds)``.
        """
        prompts = check_prompts(prompt)
        check_count("num_images_per_prompt", num_images_per_prompt)
        check_count("num_images_per_prompt × prompts", num_images_per_prompt * len(prompts))
        check_output_type(output_type)
        check_flag("condition_on_text", condition_on_text)
        check_flag("return_dict", return_dict)
        check_number("prior_guidance_scale", prior_guidance_scale)
        check_number("guidance_scale", guidance_scale)
        if prior_num_inference_steps is not None and self.prior_scheduler is not None:
            check_number("prior_num_inference_steps", prior_num_inference_steps, minimum=1,
                         maximum=self.prior_scheduler.config.num_train_timesteps, integer=True)
        check_generator(generator, num_images_per_prompt * len(prompts))
        self.check_sr_kwargs(super_resolution, super_resolution_kwargs)
        self.check_components()
        prior = self.prior_pipeline(
            prompts, num_images_per_prompt=num_images_per_prompt, num_inference_steps=prior_num_inference_steps,
            guidance_scale=prior_guidance_scale, num_candidates=num_candidates, generator=generator,
        )
        tokens = prior.text_token_encodings if condition_on_text and self.decoder.config.text_hidden_size else None
        images = self.decode(
            prior.image_embeds, tokens, num_inference_steps, timestep_respacing, guidance_scale, generator, latents,
            "latent", callback_on_step_end, callback_on_step_end_tensor_inputs,
        )
        images = self.upsample(images, super_resolution, generator, output_type, super_resolution_kwargs)
        if not return_dict:
            return images, prior.image_embeds
        return UnCLIPPipelineOutput(images=images, image_embeds=prior.image_embeds)

    @torch.no_grad()
    def variations(
        self,
        image: Any,
        num_images_per_prompt: int = 1,
        prompt: str | Sequence[str] | None = None,
        num_inference_steps: int | None = 25,
        timestep_respacing: str | None = None,
        guidance_scale: float = 3.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        super_resolution: DiffusionPipeline | None = None,
        super_resolution_kwargs: dict[str, Any] | None = None,
    ) -> UnCLIPPipelineOutput | tuple:
        r"""Image variations (DALL-E 2 §3.1): decode an input image's CLIP embedding with fresh noise.

        Args:
            image: a PIL image, a list of them, an NHWC array or an NCHW tensor in [0, 1].
            num_images_per_prompt: variations per input image (image-major).
            prompt: optional captions (one, or one per input image) for a text-conditioned decoder; ``None`` = none.
            the rest: as :meth:`__call__`.

        Returns:
            :class:`UnCLIPPipelineOutput` (``images``, ``image_embeds``: the input images' CLIP embeddings, repeated),
            or the tuple ``(images, image_embeds)``.
        """
        images = check_images("image", image)
        num_images_per_prompt = check_count("num_images_per_prompt", num_images_per_prompt)
        check_count("num_images_per_prompt × images", num_images_per_prompt * len(images))
        check_output_type(output_type)
        check_flag("return_dict", return_dict)
        self.check_sr_kwargs(super_resolution, super_resolution_kwargs)
        self.check_components()
        embeds = self.encode_image(images).repeat_interleave(num_images_per_prompt, dim=0)
        tokens = None
        if prompt is not None:
            prompts = check_prompts(prompt)
            if len(prompts) == 1:
                prompts = prompts * len(images)
            if len(prompts) != len(images):
                raise ValueError(f"prompt holds {len(prompts)} captions for {len(images)} images (give 1 or one each)")
            tokens = self.text_tokens(prompts, self._execution_device)
            tokens = None if tokens is None else tokens.repeat_interleave(num_images_per_prompt, dim=0)
        out = self.decode(embeds, tokens, num_inference_steps, timestep_respacing, guidance_scale, generator, latents,
                          "latent")
        out = self.upsample(out, super_resolution, generator, output_type, super_resolution_kwargs)
        if not return_dict:
            return out, embeds
        return UnCLIPPipelineOutput(images=out, image_embeds=embeds)


def default_decoder_scheduler(num_train_timesteps: int = 1000) -> ImprovedDDPMScheduler:
    """The decoder's diffusion: cosine β (Nichol & Dhariwal), ε prediction, learned Σ (``learned_range``)."""
    return ImprovedDDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="cosine",
                                 variance_type="learned_range")
