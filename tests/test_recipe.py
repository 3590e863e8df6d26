"""Recipe parsing and validation: every shipped recipe parses, and bad recipes fail early with clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from posttrain.recipe import RecipeError, load_recipe

REPO = Path(__file__).parent.parent
# recipes/eval/ holds `posttrain eval` configs and recipes/refine/ corpus-refinement configs, not training recipes.
RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if p.parent.name not in ("eval", "refine"))
REFINE_CONFIGS = sorted((REPO / "recipes" / "refine").glob("*.yaml"))
EVAL_CONFIGS = sorted((REPO / "recipes" / "eval").glob("*.yaml"))

GRPO_BASE = {
    "method": "grpo",
    "model_name_or_path": "smollm2-135m-instruct",
    "dataset_name": "gsm_symbolic",
    "prompt_template": "{question}",
    "reward_funcs": ["numeric_answer"],
    "loss_type": "grpo",
    "beta": 0.04,
    "scale_rewards": "group",
    "num_generations": 4,
    "per_device_train_batch_size": 4,
    "use_cpu": True,
    "report_to": "none",
}


# Where each shipped recipe writes its model: a recipe may start from another's (a warm start).
OUTPUT_DIRS = {yaml.safe_load(p.read_text()).get("output_dir"): p for p in RECIPES}


def cpu_overrides(path: Path) -> list[str]:
    """GPU-sized recipes ask for bf16 on GPUs; on a CPU-only machine validate everything else on the CPU.

    A recipe that starts from another shipped recipe's output is validated on the embedded model, which that
    output is trained from: whether the output exists depends on what ran on this machine before.
    """
    import torch

    config = yaml.safe_load(path.read_text())
    overrides = ["--use_cpu", "true"] if config.get("bf16") and not torch.cuda.is_available() else []
    if config.get("model_name_or_path") in OUTPUT_DIRS:
        overrides += ["--model_name_or_path", "smollm2-135m-instruct"]
    return overrides


def test_a_recipe_that_starts_from_another_names_a_shipped_output():
    think = yaml.safe_load((REPO / "recipes" / "cls_rl" / "think_intent_cpu.yaml").read_text())
    assert OUTPUT_DIRS[think["model_name_or_path"]].name == "think_warmstart_intent_cpu.yaml"


def write(tmp_path: Path, config: dict, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(REPO / "recipes")) for p in RECIPES])
def test_every_shipped_recipe_parses_and_validates(path):
    recipe = load_recipe(path, cpu_overrides(path))
    assert recipe.data.dataset_name
    assert recipe.model.model_name_or_path
    if recipe.method.kind == "grpo":
        assert recipe.trainer.reward_weights is not None
        assert len(recipe.trainer.reward_weights) == len(recipe.trainer.reward_funcs)


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(REPO / "recipes")) for p in RECIPES])
def test_every_shipped_recipe_matches_its_dataset_columns(path, offline_cache):
    from posttrain.cli import main

    recipe = load_recipe(path, cpu_overrides(path))
    if recipe.data.dataset_name.startswith(("/", ".")) or "/" in recipe.data.dataset_name:
        pytest.skip("user dataset path; checked where the data lives")
    assert main(["validate", str(path), *cpu_overrides(path)]) == 0


def test_cli_override_wins_over_yaml(tmp_path):
    recipe = load_recipe(write(tmp_path, GRPO_BASE), ["--learning_rate", "3e-6", "--beta", "0.0"])
    assert recipe.trainer.learning_rate == pytest.approx(3e-6)
    assert recipe.trainer.beta == 0.0


def test_yaml_scientific_notation_without_dot_is_a_float(tmp_path):
    recipe = load_recipe(write(tmp_path, {**GRPO_BASE, "learning_rate": "1e-6"}))
    assert recipe.trainer.learning_rate == pytest.approx(1e-6)


def test_nested_sections_parse_like_flat(tmp_path):
    nested = {
        "model": {"model_name_or_path": "smollm2-135m-instruct"},
        "data": {"dataset_name": "gsm_symbolic", "prompt_template": "{question}"},
        "trainer": {k: v for k, v in GRPO_BASE.items() if k not in ("model_name_or_path", "dataset_name")},
    }
    del nested["trainer"]["prompt_template"]
    recipe = load_recipe(write(tmp_path, nested))
    assert recipe.trainer.num_generations == 4
    assert recipe.data.prompt_template == "{question}"


def test_unknown_yaml_key_suggests_nearest(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown key 'learning_rat'.*did you mean 'learning_rate'"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "learning_rat": 1e-6}))


def test_unknown_cli_flag_suggests_nearest(tmp_path):
    with pytest.raises(RecipeError, match=r"'num_generation'.*'num_generations'"):
        load_recipe(write(tmp_path, GRPO_BASE), ["--num_generation", "8"])


def test_broken_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("method: grpo\nreward_funcs: [numeric_answer\n")
    with pytest.raises(RecipeError, match="broken.yaml is not valid YAML"):
        load_recipe(path)


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must hold a YAML mapping"):
        load_recipe(path)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_unknown_method_suggests_nearest(tmp_path):
    with pytest.raises(RecipeError, match=r"Unknown method 'grop'.*'grpo'"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "method": "grop"}))


@pytest.mark.parametrize("field", ["loss_type", "beta", "scale_rewards", "num_generations"])
def test_grpo_requires_explicit_settings(tmp_path, field):
    config = dict(GRPO_BASE)
    del config[field]
    if field == "num_generations":  # TRL's default (8) must also divide the batch to reach our check
        config["per_device_train_batch_size"] = 8
    with pytest.raises(RecipeError, match=rf"must set {field} explicitly"):
        load_recipe(write(tmp_path, config))


def test_explicit_setting_on_the_command_line_counts(tmp_path):
    config = dict(GRPO_BASE)
    del config["beta"]
    assert load_recipe(write(tmp_path, config), ["--beta", "0.0"]).trainer.beta == 0.0


def test_batch_not_divisible_by_num_generations(tmp_path):
    with pytest.raises(RecipeError, match=r"divisible by num_generations"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "per_device_train_batch_size": 6}))


def test_grpo_needs_a_reward(tmp_path):
    with pytest.raises(RecipeError, match="reward_funcs is empty"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "reward_funcs": []}))


def test_unknown_reward_is_reported_before_anything_loads(tmp_path):
    with pytest.raises(RecipeError, match="numeric_answr"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "reward_funcs": ["numeric_answr"]}))


def test_reward_weights_from_specs_and_conflicts(tmp_path):
    specs = ["numeric_answer", {"name": "numeric_answer_format", "weight": 0.5}]
    recipe = load_recipe(write(tmp_path, {**GRPO_BASE, "reward_funcs": specs}))
    assert recipe.trainer.reward_weights == [1.0, 0.5]
    with pytest.raises(RecipeError, match="not both"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "reward_funcs": specs, "reward_weights": [1.0, 1.0]}))
    with pytest.raises(RecipeError, match="2 entries for 1 reward_funcs"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "reward_weights": [1.0, 1.0]}))


def test_reward_errors_value_is_checked(tmp_path):
    with pytest.raises(RecipeError, match="reward_errors must be"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "reward_errors": "ignore"}))


def test_qlora_requires_peft(tmp_path):
    with pytest.raises(RecipeError, match="load_in_4bit"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "load_in_4bit": True}))


def test_missing_dataset_and_model(tmp_path):
    config = {k: v for k, v in GRPO_BASE.items() if k not in ("dataset_name", "model_name_or_path")}
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, config))
    assert "dataset_name is required" in str(err.value)
    assert "model_name_or_path is required" in str(err.value)


def test_resume_path_must_exist(tmp_path):
    with pytest.raises(RecipeError, match="resume_from_checkpoint"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "resume_from_checkpoint": str(tmp_path / "missing")}))


def test_missing_dataset_column_is_named(tmp_path, offline_cache, caplog):
    from posttrain.cli import main
    from posttrain.data import load_registered

    columns = load_registered("gsm_symbolic")["train"].column_names
    path = write(tmp_path, {**GRPO_BASE, "prompt_template": "{problem}"})
    assert main(["validate", str(path)]) == 2  # one clean message, no traceback
    assert re.search(rf"missing column.*'problem'.*{columns[0]}", caplog.text)


@pytest.mark.parametrize("path", EVAL_CONFIGS, ids=[p.name for p in EVAL_CONFIGS])
def test_every_shipped_eval_config_parses_and_matches_its_data(path, offline_cache):
    from eval.runner import model_specs, parse_evaluation
    from posttrain.data import load_dataset_for, require_columns
    from posttrain.formatting import template_columns
    from posttrain.parsing import read_yaml
    from rewards.registry import load_reward_functions, reward_required_columns

    eval_args, data_args, builder_args = parse_evaluation(read_yaml(path), [], str(path))
    assert model_specs(eval_args)
    scorers, _ = load_reward_functions(list(eval_args.scorers))
    needed = template_columns(data_args.prompt_template)
    for fn in scorers:
        needed |= reward_required_columns(fn)
    split = load_dataset_for(data_args, builder_args)[data_args.dataset_test_split]
    require_columns(split, needed, what=path.name)


def test_cpu_machine_defaults_to_float32_unless_the_recipe_says(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_recipe(write(tmp_path, GRPO_BASE)).trainer.bf16 is False
    assert load_recipe(write(tmp_path, {**GRPO_BASE, "bf16": True})).trainer.bf16 is True
    assert load_recipe(write(tmp_path, GRPO_BASE), ["--bf16", "true"]).trainer.bf16 is True


def test_a_dataset_path_is_read_relative_to_the_recipe(tmp_path, monkeypatch, caplog):
    """As reward files are: a recipe and its data in one folder run from anywhere."""
    project = tmp_path / "project"
    project.mkdir()
    rows = "".join(json.dumps({"question": f"q{i}", "answer": str(i)}) + "\n" for i in range(4))
    (project / "mine.jsonl").write_text(rows)
    recipe = write(project, {**GRPO_BASE, "dataset_name": "mine.jsonl"})
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    assert load_recipe(recipe).data.dataset_name == str(project / "mine.jsonl")

    # Found only from the current directory, as before: still used, with a warning that says how to write it.
    (tmp_path / "elsewhere.jsonl").write_text(rows)
    other = write(project, {**GRPO_BASE, "dataset_name": "elsewhere.jsonl"}, name="other.yaml")
    assert load_recipe(other).data.dataset_name == str(tmp_path / "elsewhere.jsonl")
    assert "read relative to the recipe" in caplog.text and "'../elsewhere.jsonl'" in caplog.text


@pytest.mark.parametrize(
    "fields,message",
    [
        (
            {"report_to": "wandb"},
            r"report_to 'wandb': its package is not installed here .*report_to: tensorboard",
        ),
        ({"push_to_hub": True}, r"push_to_hub: true needs a Hugging Face token"),
        (
            {"attn_implementation": "flash_attention_2"},
            r"needs the 'flash_attn' package, which is not installed",
        ),
    ],
)
def test_settings_this_machine_cannot_honour_fail_validation(tmp_path, monkeypatch, fields, message):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored token either
    with pytest.raises(RecipeError, match=message):
        load_recipe(write(tmp_path, {**GRPO_BASE, **fields}))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if "push_to_hub" in fields:
        with pytest.raises(RecipeError, match="the hub is offline here"):
            load_recipe(write(tmp_path, {**GRPO_BASE, **fields}))


def test_an_installed_tracker_passes(tmp_path):
    assert load_recipe(write(tmp_path, {**GRPO_BASE, "report_to": "tensorboard"})).trainer.report_to == [
        "tensorboard"
    ]


@pytest.mark.parametrize("path", REFINE_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_refine_config_parses(path):
    from posttrain.methods.prox.refine import parse_refine

    args = parse_refine([str(path)])
    assert args.source and args.output_dir
