"""DeconfoundLM's best-of-n method: which candidate is kept, the recipe's checks, the stage over a stand-in model
(targets and summary by hand), the learned reward skipped by `posttrain validate`'s probe, and a short run that
trains on the chosen completions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from posttrain.methods.deconfound.data import BEST_OF_N_STAGE, best_index
from posttrain.recipe import RecipeError, load_recipe
from posttrain.stages import StageContext, _fingerprint, run_stage

# Scores a completion by its number of exclamation marks; a completion saying "skip" is not scored.
BANG_REWARD = """
def bangs(completions, **kwargs):
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [None if "skip" in t else float(t.count("!")) for t in texts]
"""


def write_recipe(tmp_path: Path, model: Path | str, rows: int = 4, **fields) -> Path:
    data = tmp_path / "requests.jsonl"
    data.write_text("".join(json.dumps({"request": f"request {i}"}) + "\n" for i in range(rows)))
    (tmp_path / "bangs.py").write_text(BANG_REWARD)
    config = {
        "method": "deconfound",
        "model_name_or_path": str(model),
        "dataset_name": str(data),
        "prompt_template": "Write: {request}",
        "selection_reward": "bangs.py:bangs",
        "best_of": 3,
        "sample_max_new_tokens": 4,
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        **fields,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_best_scored_candidate_is_kept_and_an_unscored_one_only_when_none_is_scored():
    assert best_index([0.5, 2.0, 1.0]) == 1
    assert best_index([1.0, 1.0, 0.0]) == 0  # the first of a tie
    assert best_index([None, -3.0, -5.0]) == 1
    assert best_index([None, None]) == 0


def test_recipe_checks(tiny_model, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, tiny_model))
    assert recipe.method.name == "deconfound" and recipe.trainer.best_of == 3
    for fields, message in [
        ({"best_of": 1}, "best_of must be at least 2"),
        ({"selection_reward": ""}, "selection_reward is required"),
        ({"selection_reward": "{not json"}, "selection_reward is not a JSON object"),
        ({"selection_reward": "text_rewards"}, "selection_reward: .*text_reward"),
        ({"sample_temperature": 0.0}, "sample_temperature must be above 0"),
        ({"completion_template": "{request}"}, "drop completion_template"),
        ({"prompt_format": "raw"}, "set prompt_format to chat"),
    ]:
        with pytest.raises(RecipeError, match=message):
            load_recipe(write_recipe(tmp_path, tiny_model, **fields))


class StandIn(StageContext):
    """A model stand-in: for request i, the candidates 'a!', 'b' followed by i exclamation marks, and 'skip!!!!!'."""

    def generate(self, prompts, sampling, expected_rows=None):
        self._loaded.setdefault("sampling", []).append(sampling)
        out = []
        for prompt in prompts:
            i = int(prompt[-1]["content"].split()[-1])
            out.append(["a!", "b" + "!" * i, "skip!!!!!"][: sampling.n])
        return out


def test_the_stage_keeps_each_prompts_best_candidate_and_sums_up_the_gain(tiny_model, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, tiny_model, rows=4))
    from posttrain.data import load_recipe_splits

    rows = load_recipe_splits(recipe.data, recipe.builder, seed=recipe.trainer.seed)["train"]
    context = StandIn(recipe=recipe)
    folder = tmp_path / "stage"
    run_stage(BEST_OF_N_STAGE, rows, folder, context, _fingerprint(recipe, BEST_OF_N_STAGE))
    built = {
        row["request"]: row for row in map(json.loads, (folder / "train.jsonl").read_text().splitlines())
    }
    # Request 0: 'a!' (1) beats 'b' (0); request 1: a tie, the first kept; requests 2 and 3: 'b!!', 'b!!!'.
    chosen = [built[f"request {i}"]["completion"][0]["content"] for i in range(4)]
    assert chosen == ["a!", "a!", "b!!", "b!!!"]
    assert built["request 2"]["candidate_rewards"] == [1.0, 2.0, None]
    sampling = context._loaded["sampling"][0]
    assert (sampling.n, sampling.temperature, sampling.max_new_tokens) == (3, 1.0, 4)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["rows"] == 4
    assert summary["mean_chosen_reward"] == pytest.approx((1 + 1 + 2 + 3) / 4)
    assert summary["mean_candidate_reward"] == pytest.approx((1 + 0 + 1 + 1 + 1 + 2 + 1 + 3) / 8)


def test_validate_does_not_load_a_learned_reward_bound_to_its_folder(tiny_model, tmp_path):
    """text_reward loads a model of its own: validate's probe skips it, even bound to a path not yet written."""
    from rewards import load_reward_functions
    from rewards.contract import RewardContractError, probe_reward

    (reward,), _ = load_reward_functions(
        [{"name": "text_reward", "kwargs": {"path": str(tmp_path / "none")}}]
    )
    probe_reward(
        reward, [{"prompt": [{"role": "user", "content": "hi"}]}]
    )  # would raise: no text_reward.json
    with pytest.raises(RewardContractError, match="holds no text_reward.json"):
        reward(completions=["x"], prompts=["p"])


@pytest.mark.slow
def test_best_of_n_picks_by_a_fitted_text_reward_and_trains_on_the_picks(tiny_model, tmp_path):
    from posttrain.methods.deconfound.reward import fit_and_save
    from posttrain.train import train
    from tests.conftest import adapter_trained

    texts = [f"note {i} {'!' * (i % 4)}" for i in range(24)]
    fit_and_save(
        texts,
        np.array([t.count("!") for t in texts], float),
        None,
        "naive",
        tmp_path / "rw",
        model=str(tiny_model),
    )
    path = write_recipe(
        tmp_path,
        tiny_model,
        rows=4,
        selection_reward=json.dumps({"name": "text_reward", "kwargs": {"path": str(tmp_path / "rw")}}),
        use_peft=True,
        lora_r=4,
        lora_alpha=8,
        lora_target_modules=["q_proj", "v_proj"],
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        save_strategy="steps",
        save_steps=2,
    )
    train(load_recipe(path))
    out = tmp_path / "out"
    assert adapter_trained(out)
    built = [
        json.loads(line) for line in (out / "stages" / "best_of_n" / "train.jsonl").read_text().splitlines()
    ]
    assert len(built) == 4
    for row in built:
        assert len(row["candidates"]) == 3
        best = row["candidates"][int(np.argmax(row["candidate_rewards"]))]
        assert row["completion"][0]["content"] == best


@pytest.mark.slow
@pytest.mark.parametrize("name", ["grpo_joint_cpu.yaml", "best_of_n_joint_cpu.yaml"])
def test_the_cpu_recipes_align_with_a_saved_text_reward(name, tiny_model, offline_cache, tmp_path):
    """The shipped CPU recipes on a tiny model and the fixture's tweets, their reward a text_reward fitted on the
    tiny model's embeddings: the adapter trains, and every completion is scored by the learned reward."""
    from posttrain.methods.deconfound.reward import fit_and_save
    from posttrain.train import train
    from tests.conftest import adapter_trained

    texts = [f"note {i} {'!' * (i % 4)}" for i in range(24)]
    reward_dir = tmp_path / "reward"
    fit_and_save(
        texts,
        np.array([t.count("!") for t in texts], float),
        None,
        "naive",
        reward_dir,
        model=str(tiny_model),
    )
    config = yaml.safe_load((Path(__file__).parents[3] / "recipes" / "deconfound" / name).read_text())
    reward = {"name": "text_reward", "kwargs": {"path": str(reward_dir)}}
    if config["method"] == "grpo":
        config.update(reward_funcs=[reward], max_steps=1, num_generations=4, per_device_train_batch_size=4)
        config.update(max_completion_length=8)
    else:
        config.update(selection_reward=reward, sample_max_new_tokens=8, max_steps=2)
    config.update(
        model_name_or_path=str(tiny_model),
        output_dir=str(tmp_path / "out"),
        max_train_samples=4,
        learning_rate=1e-2,
        save_steps=2,
    )
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    train(load_recipe(path))
    out = tmp_path / "out"
    assert adapter_trained(out)
    if config["method"] == "grpo":
        logged = [
            json.loads(line) for line in (out / "completions" / "completions.jsonl").read_text().splitlines()
        ]
        assert len(logged) == 4 and all(isinstance(row["rewards"]["text_reward"], float) for row in logged)
    else:
        built = [
            json.loads(line)
            for line in (out / "stages" / "best_of_n" / "train.jsonl").read_text().splitlines()
        ]
        assert len(built) == 4 and all(len(row["candidate_rewards"]) == config["best_of"] for row in built)
        assert all(isinstance(s, float) for row in built for s in row["candidate_rewards"])
