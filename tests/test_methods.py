"""The method registry is open: methods from outside the project register beside the built-ins, every family is
driven through its hooks, and `--help` and `validate` show and check what `train` uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from posttrain.cli import main
from posttrain.configs import SFTRecipeConfig
from posttrain.methods import Method, get_method, register_method, registered_methods
from posttrain.methods.families import SFTFamily
from posttrain.trainers import PosttrainSFTTrainer
from tests.test_recipe import GRPO_BASE

REPO = Path(__file__).parent.parent
BUILT_INS = {"grpo", "sft", "cls_rl", "reward_model", "conftuner"}


def test_registering_a_method_keeps_the_built_ins():
    mine = Method(
        name="my_sft_variant",
        family=SFTFamily(),
        config_class=SFTRecipeConfig,
        trainer_class=PosttrainSFTTrainer,
        description="An outside method.",
    )
    register_method(mine)
    assert get_method("my_sft_variant") is mine
    assert BUILT_INS <= set(registered_methods())
    assert get_method("grpo").family.name == "grpo"
    with pytest.raises(ValueError, match="already registered"):
        register_method(Method("grpo", SFTFamily(), SFTRecipeConfig, PosttrainSFTTrainer, "clash"))


def test_a_family_must_be_a_trainer_family():
    with pytest.raises(TypeError, match="not a trainer family"):
        register_method(Method("bad", object(), SFTRecipeConfig, PosttrainSFTTrainer, "not a family"))


def test_each_built_in_lives_in_its_own_package():
    import importlib

    for name in BUILT_INS:
        package = importlib.import_module(f"posttrain.methods.{name}")
        assert get_method(name) in package.METHODS


def test_no_classification_field_in_the_shared_data_config():
    import dataclasses

    from posttrain.configs import DataArguments

    shared = {f.name for f in dataclasses.fields(DataArguments)}
    assert not shared & {"label_column", "shots_per_class", "class_names", "base_to_new", "class_seed"}


@pytest.mark.parametrize(
    ("argv", "fields"),
    [
        (["train", "--help"], ["--reward_funcs", "--learning_rate", "--prompt_template", "--heldout_metric"]),
        (["train", "--method", "sft", "--help"], ["--completion_template", "--max_length"]),
        (
            ["train", "recipes/cls_rl/nothink_intent_cpu.yaml", "--help"],
            ["--label_column", "--shots_per_class"],
        ),
        (["train", "--method", "reward_model", "-h"], ["--target_column"]),
        (["eval", "--help"], ["--scorers", "--temperature", "--dataset_name"]),
        (["eval", "recipes/eval/cls_intent_nothink.yaml", "--help"], ["--label_column"]),
    ],
)
def test_help_lists_every_field_with_its_help(argv, fields, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in fields:
        assert name in out
    assert "Python format string filled from each row" in out  # a help string, not only the names


GRPO = {**GRPO_BASE, "beta": 0.0}


def test_validate_runs_the_checks_train_runs_before_the_model(tmp_path, offline_cache):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(GRPO))
    assert main(["validate", str(path)]) == 0
    # A held-out metric reading a column the data lacks (qa_contains reads 'answer'; gsm_symbolic has it, so
    # point it at a column that does not exist through a plug-in metric).
    metric = tmp_path / "metric.py"
    metric.write_text(
        "def needs_rationale(completions, rationale, **kwargs):\n    return [0.0] * len(completions)\n"
    )
    path.write_text(yaml.safe_dump({**GRPO, "heldout_metric": f"{metric}:needs_rationale"}))
    assert main(["validate", str(path)]) != 0
    # An evaluation file that does not exist.
    path.write_text(yaml.safe_dump({**GRPO, "evaluation": "no_such_eval.yaml"}))
    assert main(["validate", str(path)]) == 2


SEEN: list[dict] = []


class RecordingSFTTrainer(PosttrainSFTTrainer):
    """A method's own loss: sees each batch's per-row targets, then trains as SFT."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        SEEN.append(inputs["row_columns"])
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


@pytest.mark.slow
def test_a_methods_row_columns_reach_its_loss_and_it_trains(tiny_model, tmp_path):
    import torch
    from safetensors.torch import load_file

    register_method(
        Method(
            name="sft_with_targets",
            family=SFTFamily(),
            config_class=SFTRecipeConfig,
            trainer_class=RecordingSFTTrainer,
            description="SFT whose loss reads a per-row score.",
            keep_columns=("score",),
        ),
        overwrite=True,
    )
    data = tmp_path / "rows.jsonl"
    rows = [{"q": f"question {i}", "a": f"answer {i}", "score": i / 10} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "recipe.yaml"
    config = {
        "method": "sft_with_targets",
        "model_name_or_path": str(tiny_model),
        "dataset_name": str(data),
        "prompt_template": "{q}",
        "completion_template": "{a}",
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-2,
        "output_dir": str(tmp_path / "out"),
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
    }
    recipe.write_text(yaml.safe_dump(config))
    SEEN.clear()
    assert main(["train", str(recipe)]) == 0
    assert len(SEEN) == 2 and all(len(batch["score"]) == 4 for batch in SEEN)
    assert sorted(s for batch in SEEN for s in batch["score"]) == [r["score"] for r in rows]
    before = load_file(tiny_model / "model.safetensors")
    after = load_file(tmp_path / "out" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in after if k in before)


def test_a_record_can_name_its_family_and_classes_lazily():
    method = Method(
        name="lazy_probe",
        family="sft",
        config_class="posttrain.configs:SFTRecipeConfig",
        trainer_class="posttrain.trainers:PosttrainSFTTrainer",
        description="named, imported when used",
    )
    assert method.kind == "sft"
    assert object.__getattribute__(method, "family") == "sft"  # listing did not import the family
    assert method.config_class is SFTRecipeConfig and method.trainer_class is PosttrainSFTTrainer
    assert method.family.name == "sft" and object.__getattribute__(method, "family") is method.family
    with pytest.raises(TypeError, match="not a built-in family"):
        register_method(Method("lazy_bad", "dpo", "x:y", "x:y", "unknown family"))
