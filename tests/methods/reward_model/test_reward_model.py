"""The reward-model family: a regression head learns an outcome per (prompt, answer), and the saved model is a
reward that GRPO recipes and evaluations can name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from posttrain.cli import main
from rewards.learned import reward_model
from rewards.registry import load_reward_functions
from tests.test_train_e2e import grpo_config, read_jsonl, write

PROMPTS = ["Is the sky blue?", "Is water wet?", "Do fish swim?", "Is fire hot?"]


def write_rows(path: Path) -> Path:
    rows = [
        {"question": q, "answer": a, "outcome": 1.0 if a.startswith("Yes") else 0.0}
        for q in PROMPTS
        for a in ("Yes, it is.", "No idea, sorry.")
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * 2))
    return path


def recipe(tiny_model: Path, tmp_path: Path) -> Path:
    config = {
        "method": "reward_model",
        "model_name_or_path": str(tiny_model),
        "dataset_name": str(write_rows(tmp_path / "outcomes.jsonl")),
        "prompt_template": "{question}",
        "completion_template": "{answer}",
        "target_column": "outcome",
        "learning_rate": 1e-3,
        "max_steps": 30,
        "per_device_train_batch_size": 8,
        "logging_steps": 10,
        "save_strategy": "no",
        "output_dir": str(tmp_path / "rm"),
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
    }
    path = tmp_path / "rm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_reward_model_learns_the_outcome_and_scores_as_a_reward(tiny_model, tmp_path):
    prompts = [[{"role": "user", "content": q}] for q in PROMPTS]
    yes = [[{"role": "assistant", "content": "Yes, it is."}]] * len(PROMPTS)
    no = [[{"role": "assistant", "content": "No idea, sorry."}]] * len(PROMPTS)

    assert main(["train", str(recipe(tiny_model, tmp_path))]) == 0
    out = tmp_path / "rm"
    assert (out / "reward_model.json").exists()
    (scorer,), _ = load_reward_functions([{"name": "reward_model", "kwargs": {"path": str(out)}}])
    yes_scores = scorer(prompts=prompts, completions=yes)
    no_scores = scorer(prompts=prompts, completions=no)
    # Trained on outcome 1 for "Yes" answers and 0 for the others: the head separates them.
    assert min(yes_scores) - max(no_scores) > 0.3
    assert sum(yes_scores) / 4 == pytest.approx(1.0, abs=0.3)
    assert sum(no_scores) / 4 == pytest.approx(0.0, abs=0.3)

    # The saved model is a reward a GRPO recipe names: every completion of the run is scored by it.
    grpo = grpo_config(tiny_model, tmp_path / "grpo", heldout_metric=None, max_steps=1, save_steps=10)
    grpo["reward_funcs"] = [{"name": "reward_model", "kwargs": {"path": str(out)}}]
    grpo["dataset_name"] = str(tmp_path / "outcomes.jsonl")
    grpo["max_train_samples"] = None
    assert main(["train", str(write(tmp_path / "grpo.yaml", grpo))]) == 0
    logged = read_jsonl(tmp_path / "grpo" / "completions" / "completions.jsonl")
    assert len(logged) == 4 and all(isinstance(row["rewards"]["reward_model"], float) for row in logged)
    texts = [[{"role": "assistant", "content": row["completion"][0]["content"]}] for row in logged]
    rescored = scorer(prompts=[row["prompt"] for row in logged], completions=texts)
    assert rescored == pytest.approx([row["rewards"]["reward_model"] for row in logged], abs=1e-4)


def test_a_folder_that_is_not_a_reward_model_is_refused(tiny_model):
    with pytest.raises(ValueError, match="holds no reward model"):
        reward_model(completions=["x"], prompts=["y"], path=str(tiny_model))


def test_reward_model_recipes_refuse_what_they_cannot_do(tiny_model, tmp_path):
    path = recipe(tiny_model, tmp_path)
    assert main(["validate", str(path), "--heldout_metric", "qa_contains"]) == 2
    assert main(["validate", str(path), "--use_peft", "true"]) == 2
    assert main(["validate", str(path)]) == 0


def test_a_published_reward_model_is_scored_through_its_chat_template(tiny_model, tmp_path):
    """A sequence classifier with one output, saved without this suite's marker (as a reward model from a model
    hub is), scores pairs; the same pair scores the same in any batch."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model, num_labels=1)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "published")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path / "published")
    path = str(tmp_path / "published")
    prompts = [[{"role": "user", "content": "Say hi."}], [{"role": "user", "content": "Count to three."}]]
    completions = [
        [{"role": "assistant", "content": "Hi."}],
        [{"role": "assistant", "content": "One, two, three."}],
    ]
    scores = reward_model(completions=completions, prompts=prompts, path=path)
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores) and scores[0] != scores[1]
    alone = reward_model(completions=completions[1:], prompts=prompts[1:], path=path)
    assert alone[0] == pytest.approx(scores[1], abs=1e-4)
