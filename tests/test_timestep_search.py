"""The multistep-schedule search (greedy, one index at a time by ternary search) finds known optima, and a folder's
searched ``multistep_timesteps`` are what ``pipe(num_inference_steps=n)`` samples with."""

from __future__ import annotations

import json
import math
import random

import pytest

from diffusion_canon.evaluation.timestep_search import greedy_timesteps, ternary_search
from diffusion_canon.pipelines import EDMPipeline, save_pipeline_folder
from diffusion_canon.schedulers import ConsistencyScheduler
from script_helpers import load_script
from test_edm_pipeline import tiny_unet

search_script = load_script("search_consistency_timesteps")


@pytest.mark.parametrize("seed", range(20))
def test_ternary_search_finds_the_minimum_of_a_valley(seed):
    rng = random.Random(seed)
    low, high = rng.randint(0, 5), rng.randint(6, 60)
    bottom, plateau = rng.randint(low, high), rng.random() < 0.3
    calls = []

    def score(k):
        calls.append(k)
        return max(abs(k - bottom), 2 if plateau else 0) + rng.random() * 1e-3 * (k == bottom)

    found = ternary_search(score, low, high)
    brute = min(range(low, high + 1), key=lambda k: max(abs(k - bottom), 2 if plateau else 0))
    assert abs(found - bottom) <= (2 if plateau else 0) and (plateau or found == brute)
    assert len(calls) == len(set(calls))  # each index scored once
    assert len(calls) <= 2 * math.ceil(math.log(high - low + 1, 1.5)) + 3


def test_greedy_schedule_adds_one_index_at_a_time_in_the_best_gap():
    # each target index costs its weight times its distance to the nearest chosen index
    targets = {9: 8.0, 30: 4.0, 17: 2.0, 24: 1.0}
    calls = []

    def score(ts):
        calls.append(tuple(ts))
        return sum(weight * min(abs(k - t) for t in ts) for k, weight in targets.items())

    schedules = greedy_timesteps(score, grid_size=40, max_steps=5)
    assert len(calls) == len(set(calls)) and len(calls) < 100  # each schedule scored once (38 for one brute force)
    assert schedules[2] == min(([0, k, 39] for k in range(1, 39)), key=score)  # brute force over the one gap
    assert schedules[5] == [0, 9, 17, 24, 30, 39]  # the targets, added heaviest first
    assert [sorted(set(schedules[n]) - set(schedules[n - 1])) for n in (3, 4, 5)] == [[30], [17], [24]]
    with pytest.raises(ValueError, match="max_steps"):
        greedy_timesteps(score, grid_size=4, max_steps=4)


def consistency_folder(tmp_path, **config):
    folder = tmp_path / "cm"
    unet = tiny_unet()
    unet.register_to_config(class_names=["A", "B", "C"])  # glyph characters, for the search's real renders
    save_pipeline_folder(EDMPipeline(unet, ConsistencyScheduler(boundary_condition=True), grid_size=6, **config), folder)
    return folder


def test_searched_schedules_are_used_and_survive_a_save(tmp_path):
    pipe = EDMPipeline.from_pretrained(consistency_folder(tmp_path, multistep_timesteps={"2": "0,4,5"}))
    pipe.set_progress_bar_config(disable=True)
    churn = dict(s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0)
    assert pipe.inference_scheduler(None, 2, None, churn).indices == [0, 4, 5]
    assert pipe.inference_scheduler(None, 3, None, churn).indices == [0, 2, 3, 5]  # not searched: evenly spread
    assert pipe.inference_scheduler(None, 2, [0, 1, 5], churn).indices == [0, 1, 5]  # a caller's --ts wins
    pipe(class_labels=["A"], num_inference_steps=2, output_type="np")
    assert pipe.num_timesteps == 2
    for bad in ({"2": "0,5"}, {"two": "0,4,5"}, ["0,4,5"]):
        with pytest.raises((ValueError, TypeError), match="multistep_timesteps"):
            EDMPipeline(tiny_unet(), ConsistencyScheduler(boundary_condition=True), multistep_timesteps=bad)


def test_search_script_records_its_schedules(tmp_path, monkeypatch):
    folder = consistency_folder(tmp_path)
    weights = (folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    scored = []

    def fake_search(score, grid_size, max_steps):  # one real score call: the sampling and cFID path runs
        scored.append(score([0, 3, grid_size - 1]))
        return {2: [0, 3, grid_size - 1], 3: [0, 3, 4, grid_size - 1]}

    monkeypatch.setattr(search_script, "greedy_timesteps", fake_search)
    search_script.main(["--pipeline", str(folder), "--max_steps", "3", "--per_class", "2", "--characters", "ABC"])
    assert len(scored) == 1 and math.isfinite(scored[0])
    index = json.loads((folder / "model_index.json").read_text())
    assert index["multistep_timesteps"] == {"2": "0,3,5", "3": "0,3,4,5"}
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == weights
    assert EDMPipeline.from_pretrained(folder).config.multistep_timesteps == {"2": "0,3,5", "3": "0,3,4,5"}
    with pytest.raises(ValueError, match="characters"):
        search_script.main(["--pipeline", str(folder), "--characters", "xyz"])
