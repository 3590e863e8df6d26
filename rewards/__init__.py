"""Reward functions for GRPO with TRL's contract, their registry, and a contract-checking wrapper.

A reward is a plain function ``(completions, **dataset_columns) -> list[float | None]`` that takes
``**kwargs`` (TRL passes more than it needs). Recipes name rewards by spec (a registered name,
``package.module:function`` or ``path/to/file.py:function``); :func:`load_reward_functions` turns
the specs into checked functions and weights for ``GRPOTrainer``.

Registered built-ins: ``numeric_answer``, ``numeric_answer_format`` (:mod:`rewards.math`) and
``cls_format``, ``cls_accuracy``, ``cls_equality``, ``cls_contains``
(:mod:`rewards.classification`), ``qa_contains`` (:mod:`rewards.qa`), ``reward_model`` (a saved reward model,
:mod:`rewards.learned`), ``code_unit_tests`` (a completion's code run against the row's unit tests in the
sandbox, :mod:`rewards.code`), ``text_reward`` (a linear reward on frozen embeddings, such as DeconfoundLM's,
:mod:`rewards.text_reward`).
"""

# Importing the built-in modules registers their rewards.
from rewards.classification import (
    cls_accuracy,
    cls_contains,
    cls_equality,
    cls_format,
    normalize_class_name,
)
from rewards.code import code_unit_tests
from rewards.contract import (
    TRL_REWARD_KWARGS,
    CheckedReward,
    RewardContractError,
    checked_reward,
    completion_text,
    pop_error_counts,
    reward_required_columns,
)
from rewards.learned import reward_model
from rewards.math import extract_final_number, numeric_answer, numeric_answer_format
from rewards.qa import qa_contains
from rewards.registry import (
    RewardSpec,
    load_reward_functions,
    parse_reward_spec,
    register_reward,
    registered_rewards,
    resolve_reward,
)
from rewards.text_reward import text_reward

__all__ = [
    "text_reward",
    "qa_contains",
    "TRL_REWARD_KWARGS",
    "CheckedReward",
    "RewardContractError",
    "RewardSpec",
    "checked_reward",
    "cls_accuracy",
    "cls_contains",
    "cls_equality",
    "cls_format",
    "code_unit_tests",
    "completion_text",
    "extract_final_number",
    "load_reward_functions",
    "normalize_class_name",
    "numeric_answer",
    "numeric_answer_format",
    "parse_reward_spec",
    "pop_error_counts",
    "register_reward",
    "registered_rewards",
    "resolve_reward",
    "reward_model",
    "reward_required_columns",
]
