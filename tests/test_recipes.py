"""`make models` runs pipelines/*/recipe.sh: every shipped default has one, it is valid bash, every command in it
names a script, subcommand and flags that exist (checked against each command's own --help, in-process), and the
flags of every ADM-family training run, parsed by its script, build exactly the shipped model and scheduler configs."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(ROOT.glob("pipelines/*/recipe.sh"))


def commands(recipe: Path) -> list[list[str]]:
    """The ``$PY ...`` commands of a recipe, continuation lines joined, shell variables replaced by placeholders."""
    text = re.sub(r"\\\n", " ", recipe.read_text())
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return [shlex.split(re.sub(r'"?\$\{?\w+\}?[^"\s]*"?', "X", line))[1:] for line in lines if line.startswith("$PY")]


def main_of(command: list[str]):
    """The ``main(argv)`` a command runs and the argv before its first flag (script path or ``-m module``)."""
    if command[0] == "-m":
        module = importlib.import_module(command[1])
        rest = command[2:]
    else:
        path = ROOT / command[0]
        assert path.is_file(), f"{command[0]} does not exist"
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rest = command[1:]
    first_flag = next((i for i, arg in enumerate(rest) if arg.startswith("--")), len(rest))
    return module.main, rest[:first_flag], [arg for arg in rest if arg.startswith("--")]


def test_every_shipped_pipeline_has_a_recipe():
    folders = {p.parent.name for p in ROOT.glob("pipelines/*/model_index.json")}
    assert folders and folders == {r.parent.name for r in RECIPES}


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.parent.name for r in RECIPES])
def test_recipe_commands_exist(recipe, monkeypatch):
    subprocess.run(["bash", "-n", str(recipe)], check=True)
    found = commands(recipe)
    assert found, "no $PY commands"
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    for command in found:
        main, positional, flags = main_of(command)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            main([*positional, "--help"])
        missing = [flag for flag in flags if not re.search(re.escape(flag) + r"\b", out.getvalue())]
        assert not missing, f"{' '.join(command[:3])}: unknown flags {missing}"


# -- each ADM-family training command builds the architecture of the shipped component it made -------------------

ADM_SCRIPTS = ("train_adm", "train_classifier", "train_super_resolution", "train_unclip_decoder")
SHIPPED = {  # (pipeline folder, training script) -> (model subfolder, scheduler subfolder or None)
    ("adm-glyphs-32", "train_adm"): ("unet", "scheduler"),
    ("adm-glyphs-32", "train_classifier"): ("classifier", None),  # trained for the U-Net's diffusion
    ("glyph-cascade-16-64", "train_adm"): ("base_unet", "base_scheduler"),
    ("glyph-cascade-16-64", "train_super_resolution"): ("sr_unet_1", "sr_scheduler_1"),
    ("unclip-glyphs", "train_unclip_decoder"): ("decoder", "decoder_scheduler"),
}


def load_module(relative: str):
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_commands(recipe: Path) -> list[tuple[str, list[str]]]:
    """(script name, argv) of every ADM-family training run of a recipe: ``training/<script>.py`` commands as written,
    ``benchmarks/bench_cascade.py train-base / train-sr`` as the arguments it passes to its script."""
    runs = []
    for command in commands(recipe):
        if command[0].startswith("training/") and Path(command[0]).stem in ADM_SCRIPTS:
            runs.append((Path(command[0]).stem, command[1:]))
        elif command[0] == "benchmarks/bench_cascade.py" and command[1] in ("train-base", "train-sr"):
            bench = load_module(command[0])
            args = bench.build_parser().parse_args(command[1:])
            runs.append(("train_adm", bench.base_argv(args)) if args.command == "train-base"
                        else ("train_super_resolution", bench.sr_argv(args)))
    return runs


def stored_config(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def as_stored(config) -> dict:
    """A config as its config.json would hold it (tuples as lists), without the bookkeeping keys."""
    return {k: v for k, v in json.loads(json.dumps(dict(config))).items() if not k.startswith("_")}


def test_every_adm_training_command_is_checked_against_its_shipped_component():
    found = {(recipe.parent.name, name) for recipe in RECIPES for name, _ in training_commands(recipe)}
    assert found == set(SHIPPED)


@pytest.mark.parametrize("folder, name", sorted(SHIPPED), ids=["/".join(key) for key in sorted(SHIPPED)])
def test_recipe_flags_build_the_shipped_architecture(folder, name, tmp_path, monkeypatch):
    """The recipe's flags, parsed by the script, give the shipped folder's model and scheduler configs exactly (the
    shipped folders store downsample factors; the flags are the reference's feature-map sides)."""
    from diffusion_canon.data.glyphs import CHARACTERS
    from diffusion_canon.models import ADMClassifierModel, ADMUNet2DModel
    from diffusion_canon.models.unclip_decoder import UnCLIPDecoderUNet2DModel
    from diffusion_canon.training.adm_args import diffusion_scheduler, network_kwargs
    from script_helpers import load_script

    monkeypatch.syspath_prepend(str(ROOT / "training"))
    shipped = ROOT / "pipelines" / folder
    # a run that goes on from a trained decoder takes its architecture from that decoder, not from flags
    (argv,) = [argv for n, argv in training_commands(shipped / "recipe.sh")
               if n == name and "--pretrained_decoder_path" not in argv]
    placeholders = {"--output_dir": str(tmp_path / "out"), "--pretrained_model_name_or_path": str(shipped),
                    "--clip_model_path": str(shipped), "--prior_model_path": str(shipped)}
    argv = [placeholders.get(flag, value) if value == "X" else value for flag, value in zip(["", *argv], argv)]
    script = load_script(name)
    args = script.parse_args(argv)
    model_folder, scheduler_folder = SHIPPED[folder, name]
    config = stored_config(shipped / model_folder / "config.json")
    kwargs = network_kwargs(args)
    if name == "train_super_resolution":  # load_pairs names every glyph-world character
        model = script.build_unet(args, None if args.unconditional else list(CHARACTERS))
    elif name == "train_unclip_decoder":  # the conditioning widths come from the CLIP model, not from flags
        clip = {key: config[key] for key in ("embedding_dim", "text_hidden_size", "num_text_tokens")}
        model = UnCLIPDecoderUNet2DModel(out_channels=6, num_context_tokens=args.num_context_tokens,
                                         context_dim=args.context_dim, **clip, **kwargs)
    else:  # glyph world: the classes that occur, in the glyph world's order (as train_adm / train_classifier do)
        names = [c for c in CHARACTERS if c in args.characters]
        if name == "train_adm":
            model = ADMUNet2DModel(out_channels=6 if args.variance_type.startswith("learned") else 3,
                                   num_classes=None if args.unconditional else len(names),
                                   null_class_embedding=args.class_dropout > 0, class_names=names, **kwargs)
        else:
            model = ADMClassifierModel(num_classes=len(names), pool=args.pool, class_names=names, **kwargs)
    assert type(model).__name__ == json.loads((shipped / model_folder / "config.json").read_text())["_class_name"]
    # the shipped config as diffusers reads it (a key added to the model since has its default)
    assert as_stored(model.config) == as_stored(type(model).from_config(config).config)
    if scheduler_folder:  # the unCLIP decoder's Σ is always learned
        scheduler = diffusion_scheduler(args, getattr(args, "variance_type", "learned_range"))
        assert as_stored(scheduler.config) == stored_config(shipped / scheduler_folder / "scheduler_config.json")


def test_shipped_defaults_fit_the_budget():
    """DESIGN.md: the whole pipelines/ folder stays within 40 MB."""
    size = sum(p.stat().st_size for p in (ROOT / "pipelines").rglob("*") if p.is_file())
    assert size <= 40 * 10**6, f"pipelines/ holds {size / 1e6:.1f} MB"


def test_clip_recipe_flags_build_the_shipped_clip_towers():
    """unclip-glyphs' train-clip flags, parsed by the CLI and built as ``train-clip`` builds them, give the shipped
    ``text_encoder`` / ``image_encoder`` configs in every field that shapes the network."""
    from transformers import CLIPTokenizer

    from diffusion_canon.cli import build_parser
    from diffusion_canon.clip.training import clip_config_from_args

    shipped = ROOT / "pipelines" / "unclip-glyphs"
    (argv,) = [c[2:] for c in commands(shipped / "recipe.sh") if c[:2] == ["-m", "diffusion_canon.cli"]]
    args = build_parser("train-clip").parse_args([value if value != "X" else "out" for value in argv])
    config = clip_config_from_args(CLIPTokenizer.from_pretrained(shipped / "tokenizer"), args)
    fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "projection_dim")
    for tower, built in (("text_encoder", config.text_config), ("image_encoder", config.vision_config)):
        stored = stored_config(shipped / tower / "config.json")
        extra = ("vocab_size", "max_position_embeddings") if tower == "text_encoder" else ("image_size", "patch_size")
        assert {k: stored[k] for k in fields + extra} == {k: getattr(built, k) for k in fields + extra}, tower
