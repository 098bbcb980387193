"""Generated bad input (hypothesis): every generated call of a pipeline either succeeds with finite output or raises
ValueError/TypeError naming one of the arguments it was given. The arguments come from each ``__call__``'s own
signature, so a new argument is covered without anyone listing it."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import test_unclip_pipeline
import test_unclip_prior_pipeline
from test_cascade import cascade
from test_pipeline_adm import small_pipeline
from test_edm_pipeline import tiny_unet
from test_sr_pipeline import low_res_images, sr_pipeline

from diffusion_canon.data.tokenizer import build_glyph_tokenizer
from diffusion_canon.pipelines import EDMPipeline
from diffusion_canon.pipelines.pipeline_unclip import UnCLIPPipeline
from diffusion_canon.schedulers import ConsistencyScheduler, KarrasHeunScheduler

NAN, INF = float("nan"), float("inf")
# values a careless or hostile caller passes: wrong types, non-finite, negative, zero, huge, empty, wrong lengths
BAD_VALUES = [None, NAN, INF, -INF, -1, 0, -0.5, 1e30, 10**12, True, "x", "", [], [0], [0, 1, 2], {"a": 1}, object(),
              torch.tensor(NAN), torch.full((2, 3, 4, 4), NAN), torch.zeros(2, 3), torch.Generator(),
              [torch.Generator()], [torch.Generator()] * 3, ["a prompt"], 3.5]


def finite_output(output) -> bool:
    images = output[0] if isinstance(output, tuple) else getattr(output, "images", None)
    images = output.image_embeds if images is None else images
    if isinstance(images, list):
        images = np.stack([np.asarray(image, dtype=np.float64) for image in images])
    images = images.detach().double().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return bool(np.isfinite(images).all())


def check_contract(call, base: dict, overrides: dict) -> None:
    try:
        output = call(**{**base, **overrides})
    except (ValueError, TypeError) as error:
        assert any(name in str(error) for name in overrides), f"{error!r} names none of {list(overrides)}"
        return
    assert finite_output(output), f"non-finite output for {overrides}"


def overrides_for(call) -> st.SearchStrategy[dict]:
    names = list(inspect.signature(call).parameters)
    return st.dictionaries(st.sampled_from(names), st.sampled_from(BAD_VALUES), min_size=1, max_size=2)


GENERATED = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))


def unclip_pipeline() -> UnCLIPPipeline:
    return UnCLIPPipeline(**test_unclip_pipeline.make_parts(tokenizer(test_unclip_pipeline.LENGTH)))


# name -> (build the pipeline, its method to call, the valid base arguments the generated ones override)
PIPELINES = {
    "adm": (lambda: small_pipeline(classifier=True), dict(class_labels=[0, 1], num_inference_steps=2, output_type="pt")),
    "super_resolution": (sr_pipeline, dict(low_res=low_res_images(2), class_labels=[0, 1], num_inference_steps=2,
                                           output_type="pt")),
    "cascade": (cascade, dict(class_labels=[0, 1], num_inference_steps=2, output_type="pt")),
    "unclip_prior": (lambda: test_unclip_prior_pipeline.make_pipeline(tokenizer(8)),
                     dict(prompt=["a red letter A"], num_inference_steps=2)),
    "unclip": (unclip_pipeline,
               dict(prompt=["a red letter A"], num_inference_steps=2, prior_num_inference_steps=2, output_type="pt")),
    "unclip.variations": (unclip_pipeline, dict(image=torch.rand(1, 3, 16, 16), num_inference_steps=2,
                                                output_type="pt")),
    "edm": (lambda: EDMPipeline(tiny_unet(), KarrasHeunScheduler(), grid_size=3),
            dict(class_labels=[0, 1], num_inference_steps=2, output_type="pt")),
    "consistency": (lambda: EDMPipeline(tiny_unet(), ConsistencyScheduler(boundary_condition=True), grid_size=10),
                    dict(class_labels=[0, 1], timesteps=[0, 5, 9], output_type="pt")),
}


def tokenizer(length: int):
    return build_glyph_tokenizer(captions=test_unclip_pipeline.PROMPTS + ["a green letter B"], model_max_length=length)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_generated_calls_succeed_finite_or_name_an_argument(name):
    build, base = PIPELINES[name]
    pipe = build()
    pipe.set_progress_bar_config(disable=True)
    call = pipe.variations if name.endswith(".variations") else pipe

    @GENERATED
    @given(overrides_for(call))
    def run(overrides):
        check_contract(call, base, overrides)

    run()


# -- schedulers: the constructor, set_timesteps and step ----------------------------------------------------------

from diffusion_canon.schedulers import ImprovedDDIMScheduler, ImprovedDDPMScheduler  # noqa: E402

SCHEDULERS = [ImprovedDDPMScheduler, ImprovedDDIMScheduler]
SCHEDULER_BAD_VALUES = BAD_VALUES + [10**9, "cosine", "learned_range", "v_prediction", "ddim5", "10,20", [1, 5, 9],
                                     np.linspace(0.1, 0.2, 10)]


def small_config() -> dict:
    return dict(num_train_timesteps=20, beta_schedule="cosine", variance_type="learned_range")


def finite(result) -> bool:
    tensors = [v for v in (result if isinstance(result, tuple) else vars(result).values()) if torch.is_tensor(v)]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


@pytest.mark.parametrize("cls", SCHEDULERS, ids=lambda c: c.__name__)
def test_generated_scheduler_constructions_succeed_or_name_an_argument(cls):
    names = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]

    @GENERATED
    @given(st.dictionaries(st.sampled_from(names), st.sampled_from(SCHEDULER_BAD_VALUES), min_size=1, max_size=2))
    def run(overrides):
        try:
            scheduler = cls(**{**small_config(), **overrides})
        except (ValueError, TypeError) as error:
            assert any(name in str(error) for name in overrides), f"{error!r} names none of {list(overrides)}"
            return
        assert np.isfinite(scheduler.schedule.alphas_cumprod).all()

    run()


@pytest.mark.parametrize("cls", SCHEDULERS, ids=lambda c: c.__name__)
def test_generated_set_timesteps_and_steps_succeed_finite_or_name_an_argument(cls):
    names = [n for n in inspect.signature(cls.set_timesteps).parameters if n != "self"]
    step_names = [n for n in inspect.signature(cls.step).parameters if n != "self"]
    sample = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    output = torch.randn(2, 6, 4, 4, generator=torch.Generator().manual_seed(1))

    @GENERATED
    @given(st.dictionaries(st.sampled_from(names), st.sampled_from(SCHEDULER_BAD_VALUES), max_size=2),
           st.dictionaries(st.sampled_from(step_names), st.sampled_from(SCHEDULER_BAD_VALUES), max_size=2))
    def run(timestep_overrides, step_overrides):
        scheduler = cls(**small_config())
        try:
            scheduler.set_timesteps(**({"num_inference_steps": 5} | timestep_overrides))
        except (ValueError, TypeError) as error:
            assert any(n in str(error) for n in timestep_overrides), f"{error!r} names none of {list(timestep_overrides)}"
            return
        step = dict(model_output=output, timestep=scheduler.timesteps[0], sample=sample) | step_overrides
        try:
            result = scheduler.step(**step)
        except (ValueError, TypeError) as error:
            assert any(n in str(error) for n in step_overrides), f"{error!r} names none of {list(step_overrides)}"
            return
        assert finite(result), f"non-finite step for {step_overrides}"

    run()


# -- training scripts: every numeric flag of every script's parser ------------------------------------------------

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402

from script_helpers import CHECKOUT, load_script  # noqa: E402

from diffusion_canon.training import arguments  # noqa: E402

SCRIPTS = sorted(p.stem for p in (CHECKOUT / "training").glob("train_*.py"))
FLAG_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e30", "abc", "2.5", ""]


def script_parser(name: str) -> argparse.ArgumentParser:
    """The parser a script builds (captured where it hands it to ``parse_training_args``)."""
    script = load_script(name)
    captured = []

    def capture(parser, argv):
        captured.append(parser)
        raise LookupError("captured")

    script.parse_training_args = capture
    with pytest.raises(LookupError):
        script.parse_args(["--output_dir", "unused"])
    return captured[0]


def numeric_flags(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    return [(a.option_strings[0], a) for a in parser._actions
            if a.option_strings and a.type is not None and getattr(a.type, "__name__", "") in ("int", "float")]


def parse_outcome(parser, flag: str, value: str, tmp: str) -> tuple[str, str]:
    """("ok", "") or ("error", message) for ``--output_dir tmp flag value``."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            arguments.parse_training_args(parser, ["--output_dir", tmp, flag, value])
    except SystemExit:
        return "error", err.getvalue()
    except ValueError as error:
        return "error", str(error)
    return "ok", ""


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_numeric_flag_rejects_non_finite_and_malformed_values_naming_it(name, tmp_path):
    parser = script_parser(name)
    flags = numeric_flags(parser)
    assert len(flags) >= 10, name
    for flag, action in flags:
        bad = ["abc", ""] + (["nan", "inf", "-inf"] if action.type.__name__ == "float" else ["2.5"])
        for value in bad:
            outcome, message = parse_outcome(parser, flag, value, str(tmp_path))
            assert outcome == "error" and flag in message, (name, flag, value, message[-200:])


@pytest.mark.parametrize("name", SCRIPTS)
def test_generated_flag_values_parse_or_fail_naming_the_flag(name, tmp_path):
    parser = script_parser(name)
    flags = numeric_flags(parser)

    @GENERATED
    @given(st.sampled_from(flags), st.sampled_from(FLAG_VALUES))
    def run(flag_action, value):
        flag, _ = flag_action
        outcome, message = parse_outcome(parser, flag, value, str(tmp_path))
        assert outcome == "ok" or flag in message, (flag, value, message[-300:])

    run()


# -- hand-written: loading files and folders ----------------------------------------------------------------------

from safetensors.torch import load_file, save_file  # noqa: E402

from diffusion_canon.convert import load_checkpoint  # noqa: E402
from diffusion_canon.pipelines import ADMPipeline, save_pipeline_folder  # noqa: E402


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"MODEL_FLAGS=--image_size 64\n", "cannot be read as a torch checkpoint"),
    ("truncated", "cannot be read as a torch checkpoint"),
    ("missing", "does not exist"),
])
def test_convert_names_an_unreadable_checkpoint(tmp_path, content, message):
    path = tmp_path / "model.pt"
    if content == "truncated":
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif content != "missing":
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"checkpoint '.*model.pt' {message}"):
        load_checkpoint(path)


@pytest.fixture
def folder(tmp_path):
    pipe = small_pipeline()
    save_pipeline_folder(pipe, tmp_path / "pipe")
    return tmp_path / "pipe"


def test_a_missing_local_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"pretrained_model_name_or_path '.*nope' is not an existing folder"):
        ADMPipeline.from_pretrained(str(tmp_path / "nope"))


def test_an_unknown_component_keyword_is_an_error(folder):
    with pytest.raises(TypeError, match=r"from_pretrained got components \['vae'\]; its components are"):
        ADMPipeline.from_pretrained(folder, vae=None)
    assert ADMPipeline.from_pretrained(folder, dtype=torch.float32, classifier=None) is not None


def test_a_folder_with_a_tensor_missing_fails_at_load_naming_it(folder):
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, weights)
    with pytest.raises(ValueError, match=rf"component 'unet' lacks weights for \['{dropped}'\]"):
        ADMPipeline.from_pretrained(folder)


def test_a_malformed_concepts_list_is_named(tmp_path):
    train_dreambooth = load_script("train_dreambooth")
    concepts = tmp_path / "concepts.json"
    for text in ("{not json", '[{"instance_prompt": "a sks font"}]', '"a string"'):
        concepts.write_text(text)
        with pytest.raises(ValueError, match=r"--concepts_list '.*concepts.json': expected a JSON list of objects"):
            train_dreambooth.read_concepts(argparse.Namespace(concepts_list=str(concepts), with_prior_preservation=False))


def test_a_config_field_of_the_wrong_type_is_named_at_load(folder):
    import json

    config_path = folder / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["model_channels"] = str(config["model_channels"])
    config_path.write_text(json.dumps(config))
    with pytest.raises(TypeError, match=r"ADMUNet2DModel config field 'model_channels' must be of type int"):
        ADMPipeline.from_pretrained(folder)
