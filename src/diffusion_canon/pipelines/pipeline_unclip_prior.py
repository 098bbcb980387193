"""unCLIP prior sampling (Ramesh et al. 2022, §2.1): prompts -> CLIP image embeddings.

The prior predicts the clean standardised image embedding (x0); the improved-DDPM scheduler (cosine schedule,
``prediction_type="sample"``, any respacing) turns that into ancestral steps. Classifier-free guidance mixes the
conditional and the learned-null predictions, ẑ = ẑ(∅) + w·(ẑ(y) − ẑ(∅)). With ``num_candidates = n`` every
requested embedding is the best of n samples by similarity with the prompt's CLIP text embedding (the paper samples
two and keeps the one with the higher dot product; we score the dot product of the unit-normalised embeddings, i.e.
the cosine similarity CLIP itself ranks pairs by).

RNG contract: with one ``torch.Generator``, the initial noise (all candidates, shape ``(B·n, D)``) is drawn first,
then each step's noise of that shape, in sampling order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
# SchedulerMixin / ModelMixin in this namespace let diffusers' loader accept this module as the components' library
from diffusers import DiffusionPipeline, ModelMixin, SchedulerMixin  # noqa: F401
from diffusers.utils import BaseOutput, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from ..clip.encoding import encode_prompts
from ..models.unclip_prior import UnCLIPPriorTransformer
from ..schedulers import ImprovedDDPMScheduler
from ..schedulers.improved_diffusion_base import ImprovedDiffusionScheduler
from ..checks import (
    check_callback, check_choice, check_count, check_flag, check_generator, check_number, check_prompts, check_tensor,
)
from .hub import FolderPipelineMixin
from .sampling import Model, SamplingMixin, StepCallback, classifier_free_guidance, denoise, doubled_for

EMBEDDING_OUTPUT_TYPES = ("pt", "np")  # the prior returns embeddings, not images


EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DiffusionPipeline
        >>> unclip = DiffusionPipeline.from_pretrained("pipelines/unclip-glyphs", trust_remote_code=True)
        >>> prior = unclip.prior_pipeline  # an UnCLIPPriorPipeline sharing the text encoder
        >>> out = prior(["the digit 7 in blue monospace"], num_candidates=2, generator=torch.manual_seed(0))
        >>> out.image_embeds.shape  # (1, D)
        ```
"""


@dataclass
class UnCLIPPriorPipelineOutput(BaseOutput):
    """Per generated embedding (B = len(prompts) · num_images_per_prompt rows, prompt-major):

    ``image_embeds`` (B, D) sampled CLIP image embeddings (CLIP's scale, not standardised); ``text_embeds`` (B, D),
    ``text_token_encodings`` (B, L, H) and ``text_attention_mask`` (B, L): the prompts' CLIP encodings, for a decoder
    that also reads the text; ``scores`` (B,) the cosine similarity of each kept embedding with its text embedding.
    """

    image_embeds: Any
    text_embeds: Any
    text_token_encodings: Any
    text_attention_mask: Any
    scores: Any


class UnCLIPPriorPipeline(SamplingMixin, FolderPipelineMixin, DiffusionPipeline):
    r"""Sample CLIP image embeddings from prompts with the unCLIP diffusion prior.

    Components:
        prior: :class:`~diffusion_canon.models.unclip_prior.UnCLIPPriorTransformer` (statistics set from data).
        text_encoder: ``transformers.CLIPTextModelWithProjection`` (z_t = ``text_embeds``, tokens = last hidden
            states).
        tokenizer: ``transformers.CLIPTokenizer`` (padding to ``model_max_length`` = the prior's text length).
        scheduler: :class:`~diffusion_canon.schedulers.ImprovedDDPMScheduler` with ``prediction_type="sample"``.
    """

    model_cpu_offload_seq = "text_encoder->prior"

    def __init__(
        self,
        prior: UnCLIPPriorTransformer,
        text_encoder: Any,
        tokenizer: Any,
        scheduler: ImprovedDiffusionScheduler,
    ):
        super().__init__()
        self.register_modules(prior=prior, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        self.check_components()

    def check_components(self) -> None:
        """The prior, the CLIP text encoder and the tokenizer must agree on every dimension (checked between the
        components present: diffusers builds a pipeline without some to test the others)."""
        if self.scheduler is not None and self.scheduler.config.prediction_type != "sample":
            raise ValueError(
                f"the prior predicts x0: the scheduler needs prediction_type='sample', got "
                f"{self.scheduler.config.prediction_type!r}"
            )
        if self.prior is None or self.text_encoder is None or self.tokenizer is None:
            return
        prior, text = self.prior.config, self.text_encoder.config
        if prior.embedding_dim != text.projection_dim:
            raise ValueError(
                f"prior embedding_dim={prior.embedding_dim} does not match the CLIP text encoder's "
                f"projection_dim={text.projection_dim}"
            )
        if prior.text_hidden_size not in (0, text.hidden_size):
            raise ValueError(
                f"prior text_hidden_size={prior.text_hidden_size} does not match the CLIP text encoder's "
                f"hidden_size={text.hidden_size} (or 0 for no token encodings)"
            )
        if prior.num_text_tokens not in (0, self.tokenizer.model_max_length):
            raise ValueError(
                f"prior num_text_tokens={prior.num_text_tokens} does not match the tokenizer's "
                f"model_max_length={self.tokenizer.model_max_length}"
            )


    def check_inputs(self, num_inference_steps: Any, guidance_scale: Any, output_type: Any, return_dict: Any,
                     callback_on_step_end: Any, callback_on_step_end_tensor_inputs: Any) -> None:
        if num_inference_steps is not None:
            check_number("num_inference_steps", num_inference_steps, minimum=1,
                         maximum=self.scheduler.config.num_train_timesteps, integer=True)
        check_number("guidance_scale", guidance_scale)
        check_choice("output_type", output_type, EMBEDDING_OUTPUT_TYPES)
        check_flag("return_dict", return_dict)
        check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs)

    def encode_prompt(self, prompt: str | Sequence[str], device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
        """``(text_embeds (N, D), text_token_encodings (N, L, H), text_attention_mask (N, L))`` of the prompt(s), on
        ``device`` (default: the execution device)."""
        return encode_prompts(self.text_encoder, self.tokenizer, check_prompts(prompt),
                              device=device or self._execution_device)

    def model(self, text_embeds: torch.Tensor, tokens: torch.Tensor | None, mask: torch.Tensor | None) -> Model:
        """``(z_t, model_timestep) -> x̂_0`` ``(B, D)`` float32, with classifier-free guidance when the current run asks
        for it: ẑ = ẑ(∅) + w·(ẑ(y) − ẑ(∅))."""
        if tokens is not None and not self.prior.config.text_hidden_size:
            tokens = mask = None

        def prior(x: torch.Tensor, model_timestep: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            text, text_tokens, text_mask = doubled_for(keep, text_embeds, tokens, mask)
            return self.prior(x, model_timestep, text, text_tokens, text_mask,
                              keep_condition=keep).predicted_image_embedding.float()

        return classifier_free_guidance(prior, self)

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | Sequence[str] | None = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int | None = None,
        timestep_respacing: str | None = None,
        guidance_scale: float = 4.0,
        num_candidates: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> UnCLIPPriorPipelineOutput | tuple:
        r"""Sample image embeddings.

        Args:
            prompt: a string or a non-empty list of strings.
            num_images_per_prompt: embeddings per prompt.
            num_inference_steps / timestep_respacing: the respaced schedule (a count or an improved-diffusion
                string such as "64" or "10,20"); neither = all training steps.
            guidance_scale: classifier-free guidance weight w (1 = conditional only; 0 = unconditional).
            num_candidates: n >= 1 samples per returned embedding; the one most similar to the text embedding is kept.
            generator, latents: the RNG (module docstring) and optional standardised z_T of shape
                ``(len(prompts) · num_images_per_prompt · num_candidates, D)``.
            output_type: "pt" (tensors) or "np" (arrays).
            callback_on_step_end: ``callback(pipe, step, timestep, {"latents": ...}) -> dict``; a returned "latents"
                replaces the current sample.

        Examples:

        Returns:
            :class:`UnCLIPPriorPipelineOutput` (or its fields as a tuple).
        """
        prompts = check_prompts(prompt)
        num_images_per_prompt = check_count("num_images_per_prompt", num_images_per_prompt)
        num_candidates = check_count("num_candidates", num_candidates)
        check_count("num_images_per_prompt × num_candidates × prompts", len(prompts) * num_images_per_prompt *
                    num_candidates)
        self.check_inputs(num_inference_steps, guidance_scale, output_type, return_dict, callback_on_step_end,
                          callback_on_step_end_tensor_inputs)
        check_generator(generator, len(prompts) * num_images_per_prompt * num_candidates)
        if latents is not None:
            check_tensor("latents", latents, ndim=2)
        self.check_components()
        missing = [name for name in ("prior", "text_encoder", "tokenizer", "scheduler") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"this UnCLIPPriorPipeline has no {', '.join(missing)}: sampling needs every component")
        device = self._execution_device

        text_embeds, tokens, mask = self.encode_prompt(prompts, device)
        per_prompt = num_images_per_prompt * num_candidates
        repeat = lambda x: x.repeat_interleave(per_prompt, dim=0)  # noqa: E731
        cand_text, cand_tokens, cand_mask = repeat(text_embeds), repeat(tokens), repeat(mask)
        shape = (len(prompts) * per_prompt, self.prior.config.embedding_dim)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
        latents = latents.to(device=device, dtype=torch.float32)

        self.begin_sampling(guidance_scale)
        self.scheduler.set_timesteps(num_inference_steps=num_inference_steps, timestep_respacing=timestep_respacing,
                                     device=device)
        latents = denoise(self, self.scheduler, self.model(cand_text, cand_tokens, cand_mask), latents,
                          generator=generator, callback_on_step_end=callback_on_step_end,
                          callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                          causes="latents and guidance_scale")

        candidates = self.prior.unnormalize_image_embeds(latents)
        scores = torch.cosine_similarity(candidates, cand_text.float(), dim=-1)
        best = scores.view(-1, num_candidates).argmax(dim=1)
        kept = torch.arange(len(best), device=device) * num_candidates + best
        image_embeds, scores = candidates[kept], scores[kept]
        keep_text = lambda x: x.repeat_interleave(num_images_per_prompt, dim=0)  # noqa: E731
        fields = (image_embeds, keep_text(text_embeds), keep_text(tokens), keep_text(mask), scores)
        self.maybe_free_model_hooks()
        if output_type == "np":
            fields = tuple(x.cpu().float().numpy() if x.is_floating_point() else x.cpu().numpy() for x in fields)
        if not return_dict:
            return fields
        return UnCLIPPriorPipelineOutput(*fields)


def default_prior_scheduler(num_train_timesteps: int = 1000) -> ImprovedDDPMScheduler:
    """The scheduler the prior trains and samples with: cosine β (Nichol & Dhariwal), x0 prediction, fixed_small
    variance, x̂0 clipped to ±5 (standardised embeddings rarely leave it; Karlo's prior uses the same range)."""
    return ImprovedDDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="cosine",
        prediction_type="sample",
        variance_type="fixed_small",
        clip_sample=True,
        clip_sample_range=5.0,
    )
