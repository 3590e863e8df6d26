"""Recipes brought from open-r1 and older TRL: every key and reward name to change is named with its replacement,
all in one report; the converted open-r1 recipe validates as shipped; the README's tables are the code's."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
import yaml

from posttrain.cli import main
from posttrain.configs import DataArguments, ModelConfig, RecipeArguments
from posttrain.data import registered_data_builders
from posttrain.methods import get_method, registered_methods
from posttrain.recipe import RecipeError, load_recipe
from posttrain.renames import KEPT, KEY_RENAMES, REWARD_RENAMES, markdown_tables
from rewards.registry import parse_reward_spec, registered_rewards

REPO = Path(__file__).parent.parent
OPENR1 = Path(__file__).parent / "fixtures" / "openr1"
CONVERTED = REPO / "recipes" / "openr1" / "grpo_demo_cpu.yaml"

GRPO_BASE = {
    "method": "grpo",
    "model_name_or_path": "smollm2-135m-instruct",
    "dataset_name": "gsm_symbolic",
    "prompt_template": "{question}",
    "reward_funcs": ["numeric_answer"],
    "loss_type": "dapo",
    "beta": 0.0,
    "scale_rewards": "group",
    "num_generations": 4,
    "per_device_train_batch_size": 4,
    "use_cpu": True,
    "report_to": "none",
}


def write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def report(path: Path, overrides: list[str] | None = None) -> list[str]:
    """The lines of the one error that loading the recipe raises."""
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, overrides)
    return str(caught.value).splitlines()


def flagged_keys(lines: list[str]) -> set[str]:
    """The keys a report names as unknown or as set by posttrain."""
    return {m.group(1) for line in lines if (m := re.match(r"\s*(?:unknown )?key '(\w+)'", line))}


@pytest.mark.parametrize(
    "key, value, says, not_says",
    [
        ("torch_dtype", "bfloat16", "it is 'dtype' in posttrain (transformers renamed it)", "torch_compile"),
        (
            "dataset_prompt_column",
            "question",
            "it is 'prompt_template: \"{question}\"' in posttrain",
            "dataset_config",
        ),
        (
            "warmup_ratio",
            0.1,
            "it is 'warmup_steps' in posttrain (transformers 5 merged them",
            "did you mean",
        ),
        ("evaluation_strategy", "steps", "it is 'eval_strategy' in posttrain", "did you mean"),
        ("callbacks", ["push_to_hub_revision"], "evaluation_on_save evaluates each one", "did you mean"),
    ],
)
def test_a_renamed_key_gets_its_replacement_not_the_nearest_spelling(tmp_path, key, value, says, not_says):
    path = write(tmp_path, {**GRPO_BASE, key: value})
    number = 1 + next(i for i, text in enumerate(path.read_text().splitlines()) if text.startswith(f"{key}:"))
    lines = report(path)
    line = next(line for line in lines if f"unknown key '{key}' in" in line)
    assert f"recipe.yaml (line {number}): " in line
    assert says in line
    assert not_says not in line


@pytest.mark.parametrize(
    "key, value, replacement",
    [
        ("use_vllm", True, "write 'rollout: vllm_colocate' or 'rollout: vllm_server' instead of use_vllm"),
        ("use_vllm", False, "write 'rollout: vllm_colocate' or 'rollout: vllm_server' instead of use_vllm"),
        (
            "vllm_mode",
            "colocate",
            "write 'rollout: vllm_colocate' or 'rollout: vllm_server' instead of vllm_mode",
        ),
        (
            "vllm_gpu_memory_utilization",
            0.7,
            "write 'rollout_memory_share' instead of vllm_gpu_memory_utilization",
        ),
    ],
)
def test_a_trl_key_that_posttrain_sets_from_its_own_is_refused(tmp_path, key, value, replacement):
    # These parse as TRL fields, but the value would be overwritten (or, for use_vllm, contradict rollout).
    lines = report(write(tmp_path, {**GRPO_BASE, key: value}))
    assert lines[0].endswith("recipe.yaml has keys to change:")
    assert any(
        f"key '{key}' in" in line and "is set by posttrain" in line and replacement in line for line in lines
    )


def test_a_renamed_key_on_the_command_line_gets_its_replacement_too(tmp_path):
    lines = report(write(tmp_path, GRPO_BASE), ["--torch_dtype", "bfloat16"])
    assert any(
        "'torch_dtype' in the command-line overrides: it is 'dtype' in posttrain" in line for line in lines
    )


@pytest.mark.parametrize(
    "name, says",
    [
        ("accuracy", "it is 'numeric_answer' or 'cls_accuracy' in posttrain (math: numeric_answer"),
        ("format", "it is 'cls_format' or 'numeric_answer_format' in posttrain"),
        ("tag_count", "it is 'cls_tags' in posttrain"),
        ("binary_code", "it is 'code_unit_tests' in posttrain"),
        ("cosine", "write it as a plug-in"),
    ],
)
def test_an_open_r1_reward_name_gets_the_posttrain_reward_that_scores_the_same(name, says):
    with pytest.raises(ValueError) as caught:
        parse_reward_spec(name)
    assert f"no reward is registered as '{name}': " in str(caught.value)
    assert says in str(caught.value)
    assert "Did you mean" not in str(caught.value)  # spelling sends 'accuracy' to cls_accuracy, even for math


def test_every_problem_of_a_recipe_comes_in_one_report(tmp_path):
    config = {key: value for key, value in GRPO_BASE.items() if key != "loss_type"}
    config |= {
        "torch_dtype": "bfloat16",
        "frobnicate": 3,
        "lerning_rate": 1.0e-5,
        "max_steps": "ten",
        "reward_funcs": ["accuracy", "numeric_answr"],
    }
    lines = report(write(tmp_path, config), ["--num_generation", "4"])
    expected = [
        "it is 'dtype' in posttrain",
        "unknown key 'frobnicate'",
        "did you mean 'learning_rate'?",
        "max_steps in ",  # a wrong value
        "'num_generation' in the command-line overrides; did you mean 'num_generations'?",
        "GRPO recipes must set loss_type",
        "no reward is registered as 'accuracy': it is 'numeric_answer'",
        "no reward is registered as 'numeric_answr'. Did you mean 'numeric_answer'",
    ]
    shown = "\n".join(lines)
    for text in expected:
        assert sum(text in line for line in lines) == 1, f"{text!r} not reported once in:\n{shown}"
    assert lines[0].endswith("recipe.yaml has unknown keys and wrong values:")
    assert "and 3 more problems:" in lines
    assert not any("Unexpected command-line arguments" in line for line in lines)  # the dropped flag's value


def test_a_recipe_with_only_bad_keys_reports_them_alone(tmp_path):
    lines = report(write(tmp_path, {**GRPO_BASE, "torch_dtype": "bfloat16"}))
    assert lines[0].endswith("has unknown keys:")
    assert len(lines) == 2


def _fields(classes) -> set[str]:
    return {f.name for cls in classes for f in dataclasses.fields(cls)}


def _every_field() -> set[str]:
    classes = [RecipeArguments, ModelConfig, DataArguments]
    classes += [method.config_class for method in registered_methods().values()]
    classes += [builder.args_class for builder in registered_data_builders().values()]
    return _fields(classes)


GRPO_FIELDS = _fields([RecipeArguments, ModelConfig, DataArguments, get_method("grpo").config_class])


def test_the_table_names_old_keys_that_no_config_has_and_replacements_that_exist():
    fields = _every_field()
    for rename in KEY_RENAMES:
        for key in rename.keys:
            if rename.set_by_posttrain:
                assert key in GRPO_FIELDS, f"{key} is no longer a TRL field: it is an ordinary rename now"
            else:
                assert key not in fields, f"{key} is a field again: the table would hide it behind a rename"
        for target in rename.targets:
            assert target in fields or target == "env", f"{rename.keys}: {target!r} is not a recipe key"


def test_the_kept_keys_are_fields_of_a_grpo_recipe():
    for keys, _ in KEPT:
        assert set(keys) <= GRPO_FIELDS, set(keys) - GRPO_FIELDS


def test_the_reward_table_names_unregistered_old_names_and_registered_new_ones():
    registered = set(registered_rewards())
    for rename in REWARD_RENAMES:
        assert not set(rename.keys) & registered
        assert set(rename.targets) <= registered


def fixture_overrides() -> list[str]:
    # open-r1 trains in bf16 on GPUs; on a CPU-only machine transformers refuses bf16 without use_cpu.
    return [] if torch.cuda.is_available() else ["--use_cpu", "true"]


DEMO_FLAGGED = {
    "torch_dtype": "'dtype'",
    "dataset_prompt_column": "'prompt_template: \"{problem}\"'",
    "use_vllm": "'rollout: vllm_colocate' or 'rollout: vllm_server'",
    "overwrite_output_dir": "resume_from_checkpoint: auto",
    "warmup_ratio": "'warmup_steps'",
}
CODEFORCES_FLAGGED = {
    "torch_dtype": "'dtype'",
    "dataset_prompt_column": "'prompt_template: \"{prompt}\"'",
    "callbacks": "hub_strategy",
    "benchmarks": "'evaluation: <eval.yaml>'",
    "use_vllm": "'rollout: vllm_colocate'",
    "vllm_device": "'rollout: vllm_server'",
    "vllm_gpu_memory_utilization": "'rollout_memory_share'",
    "hub_model_revision": "'hub_revision'",
    "wandb_entity": "WANDB_ENTITY",
    "wandb_project": "WANDB_PROJECT",
    "warmup_ratio": "'warmup_steps'",
    "code_eval_test_batch_size": "code_unit_tests",
    "code_eval_scoring_mode": "code_unit_tests",
}


@pytest.mark.parametrize(
    "recipe, flagged, other_problems",
    [
        (
            "grpo_demo.yaml",
            DEMO_FLAGGED,
            [
                "Unknown dataset 'open-r1/OpenR1-Math-220k'",
                "model_name_or_path 'Qwen/Qwen2.5-1.5B-Instruct' is neither embedded nor a local folder",
                "must set loss_type, beta, scale_rewards explicitly",
                "'accuracy': it is 'numeric_answer'",
                "'format': it is 'cls_format'",
                "'tag_count': it is 'cls_tags'",
            ],
        ),
        (
            "grpo_codeforces.yaml",
            CODEFORCES_FLAGGED,
            ["'cf_code': open-r1's own, not shipped here", "'code_format': open-r1's own, not shipped here"],
        ),
    ],
)
def test_an_open_r1_recipe_gets_one_report_of_every_key_to_change(
    monkeypatch, recipe, flagged, other_problems
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # hub ids count as problems: nothing here may download
    lines = report(OPENR1 / recipe, fixture_overrides())
    assert flagged_keys(lines) == set(flagged)  # no key kept by posttrain is named, none to change is missed
    for key, replacement in flagged.items():
        line = next(line for line in lines if f"key '{key}' in" in line)
        assert replacement in line, line
    for problem in other_problems:
        assert any(problem in line for line in lines), problem


def test_the_converted_open_r1_recipe_validates_as_shipped(offline_cache):
    assert main(["validate", str(CONVERTED)]) == 0


def test_the_converted_recipe_names_the_original_of_every_key_it_changed():
    text = CONVERTED.read_text()
    comments = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    config = yaml.safe_load(text)
    for key in DEMO_FLAGGED:
        assert key not in config
        assert re.search(rf"\b{key}\b", comments), f"no comment says what became of {key}"
    for old in ("accuracy", "format", "tag_count"):
        assert re.search(rf"\b{old}\b", comments)


def readme_section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Coming from open-r1 / TRL\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end >= 0 else len(readme)]


def test_the_readme_tables_are_the_code_tables():
    blocks, block = [], []
    for line in readme_section().splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            blocks.append("\n".join(block))
            block = []
    assert "\n\n".join(blocks) == markdown_tables(), (
        "regenerate the README's tables with: "
        "python -c 'from posttrain.renames import markdown_tables; print(markdown_tables())'"
    )


def test_the_readme_says_how_to_run_the_converted_recipe():
    section = readme_section()
    relative = CONVERTED.relative_to(REPO).as_posix()
    assert f"posttrain validate {relative}" in section
    assert f"posttrain train {relative}" in section
