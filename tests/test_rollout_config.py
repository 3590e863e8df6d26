"""Rollout backend fields in a recipe: mapping onto TRL's vLLM settings and up-front errors."""

from __future__ import annotations

import pytest
import yaml

from posttrain.recipe import RecipeError, load_recipe
from tests.test_recipe import GRPO_BASE


def write(tmp_path, config):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "rollout,use_vllm,mode",
    [("hf", False, None), ("vllm_colocate", True, "colocate"), ("vllm_server", True, "server")],
)
def test_rollout_sets_trl_vllm_fields(tmp_path, rollout, use_vllm, mode):
    recipe = load_recipe(write(tmp_path, {**GRPO_BASE, "rollout": rollout, "rollout_memory_share": 0.25}))
    assert recipe.trainer.use_vllm is use_vllm
    if mode:
        assert recipe.trainer.vllm_mode == mode
        assert recipe.trainer.vllm_gpu_memory_utilization == 0.25


def test_unknown_rollout_backend(tmp_path):
    with pytest.raises(RecipeError, match="rollout must be 'hf', 'vllm_colocate' or 'vllm_server'"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "rollout": "vllm"}))


def test_memory_share_out_of_range(tmp_path):
    with pytest.raises(RecipeError, match=r"rollout_memory_share must be in \(0, 1\]"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "rollout": "vllm_colocate", "rollout_memory_share": 1.5}))


def test_use_vllm_without_rollout_is_redirected(tmp_path):
    with pytest.raises(RecipeError, match="instead of use_vllm"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "use_vllm": True}))


def test_vllm_requested_but_not_installed(tmp_path, monkeypatch):
    import posttrain.methods.families

    monkeypatch.setattr(posttrain.methods.families, "vllm_available", lambda: False)
    with pytest.raises(RecipeError, match="needs vLLM, which is not installed"):
        load_recipe(write(tmp_path, {**GRPO_BASE, "rollout": "vllm_colocate"}))
