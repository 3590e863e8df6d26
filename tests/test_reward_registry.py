"""The reward registry (spec parsing, resolution, required columns) and the contract wrapper."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from pathlib import Path

import pytest

import rewards.registry as registry
from rewards import (
    CheckedReward,
    RewardContractError,
    RewardSpec,
    checked_reward,
    cls_accuracy,
    load_reward_functions,
    numeric_answer,
    parse_reward_spec,
    pop_error_counts,
    register_reward,
    registered_rewards,
    reward_required_columns,
)
from rewards.contract import AsyncCheckedReward

FIXTURES = Path(__file__).parent / "fixtures"
PLUGIN = FIXTURES / "plugin_rewards.py"
BUILT_INS = {
    "numeric_answer",
    "numeric_answer_format",
    "cls_format",
    "cls_accuracy",
    "cls_equality",
    "cls_contains",
}


@pytest.fixture(autouse=True)
def _isolated_state():
    """Each test starts with the built-in registry and no pending error counts."""
    saved = dict(registry._REGISTRY)
    pop_error_counts()
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    pop_error_counts()


def trl_call(fn, completions, **columns):
    """Call a reward the way GRPOTrainer 1.16 does."""
    return fn(
        prompts=[f"prompt {i}" for i in range(len(completions))],
        completions=completions,
        completion_ids=[[i] for i in range(len(completions))],
        **columns,
        trainer_state=object(),
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: None,
    )


# -- registration -------------------------------------------------------------------------------


def test_built_ins_are_registered():
    assert BUILT_INS <= set(registered_rewards())
    assert registered_rewards()["numeric_answer"] is numeric_answer


def test_registered_rewards_returns_a_copy():
    registered_rewards().clear()
    assert BUILT_INS <= set(registered_rewards())


def test_register_reward_with_name_bare_and_empty_call():
    @register_reward("custom_score")
    def named(completions, **kwargs):
        return [1.0] * len(completions)

    @register_reward
    def bare_reward(completions, **kwargs):
        return [2.0] * len(completions)

    @register_reward()
    def called_reward(completions, **kwargs):
        return [3.0] * len(completions)

    assert registered_rewards()["custom_score"] is named
    assert registered_rewards()["bare_reward"] is bare_reward
    assert registered_rewards()["called_reward"] is called_reward
    assert parse_reward_spec("custom_score") == RewardSpec("custom_score", 1.0, {}, "custom_score")


def test_register_reward_refuses_a_taken_name_unless_overwriting():
    def other(completions, **kwargs):
        return [0.0] * len(completions)

    with pytest.raises(ValueError, match="already registered as 'cls_format'"):
        register_reward("cls_format")(other)
    register_reward("cls_format", overwrite=True)(other)
    assert registered_rewards()["cls_format"] is other
    # Registering the same function again (a module imported twice) is fine.
    register_reward("cls_format")(other)


@pytest.mark.parametrize("bad_name", ["", "a:b", "file.py"])
def test_register_reward_refuses_names_that_read_as_targets(bad_name):
    with pytest.raises(ValueError, match="cannot register reward"):
        register_reward(bad_name)(lambda completions, **kwargs: [])


# -- parsing each string form -------------------------------------------------------------------


def test_parse_registered_name():
    assert parse_reward_spec("cls_accuracy") == RewardSpec("cls_accuracy", 1.0, {}, "cls_accuracy")
    assert parse_reward_spec("  cls_accuracy ").target == "cls_accuracy"


def test_parse_module_function():
    spec = parse_reward_spec("rewards.math:numeric_answer")
    assert spec == RewardSpec("rewards.math:numeric_answer", 1.0, {}, "numeric_answer")
    assert registry.resolve_reward(spec) is numeric_answer


def test_parse_plugin_file_relative_to_base_dir():
    spec = parse_reward_spec("plugin_rewards.py:keyword_reward", base_dir=FIXTURES)
    assert spec.target == f"{PLUGIN.resolve()}:keyword_reward"
    assert spec.name == "keyword_reward"
    fn = registry.resolve_reward(spec)
    assert fn(completions=["a cat", "a dog"], keyword=["cat", "cat"]) == [1.0, 0.0]


def test_parse_plugin_file_relative_to_cwd(monkeypatch):
    monkeypatch.chdir(FIXTURES.parent.parent)
    spec = parse_reward_spec("tests/fixtures/plugin_rewards.py:length_reward", base_dir="/nonexistent")
    assert spec.target == f"{PLUGIN.resolve()}:length_reward"


def test_parse_plugin_file_absolute_path():
    spec = parse_reward_spec(f"{PLUGIN}:length_reward")
    assert spec.name == "length_reward"


def test_base_dir_wins_over_cwd(tmp_path, monkeypatch):
    for folder, value in (("recipe", 1.0), ("cwd", 2.0)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mine.py").write_text(
            f"def mine(completions, **kwargs):\n    return [{value}] * len(completions)\n"
        )
    monkeypatch.chdir(tmp_path / "cwd")
    from_recipe = registry.resolve_reward(parse_reward_spec("mine.py:mine", base_dir=tmp_path / "recipe"))
    from_cwd = registry.resolve_reward(parse_reward_spec("mine.py:mine"))
    assert from_recipe(completions=["x"]) == [1.0]
    assert from_cwd(completions=["x"]) == [2.0]


def test_plugin_file_is_executed_once():
    first = registry.resolve_reward(parse_reward_spec(f"{PLUGIN}:length_reward"))
    second = registry.resolve_reward(parse_reward_spec(f"{PLUGIN}:length_reward"))
    assert first is second


def test_metric_name_comes_from_factory_name_or_attribute():
    assert parse_reward_spec(f"{PLUGIN}:starts_with_hello").name == "starts_with_prefix"
    assert parse_reward_spec(f"{PLUGIN}:shouting").name == "shouting"  # a lambda


# -- dict specs ---------------------------------------------------------------------------------


def test_dict_spec_with_weight_and_kwargs():
    spec = parse_reward_spec({"name": "numeric_answer", "weight": 0.5, "kwargs": {"rel_tol": 0.01}})
    assert spec == RewardSpec("numeric_answer", 0.5, {"rel_tol": 0.01}, "numeric_answer")
    fn = registry.resolve_reward(spec)
    assert fn.__name__ == "numeric_answer"
    assert fn(completions=["#### 1005"], answer=["1000"]) == [1.0]


def test_dict_spec_defaults_and_int_weight():
    assert parse_reward_spec({"name": "cls_format"}) == RewardSpec("cls_format", 1.0, {}, "cls_format")
    assert parse_reward_spec({"name": "cls_format", "weight": 2}).weight == 2.0
    assert parse_reward_spec({"name": "cls_format", "weight": -1.0, "kwargs": None}).weight == -1.0


def test_bound_kwargs_win_over_call_kwargs_and_leave_the_signature():
    spec = parse_reward_spec({"name": f"{PLUGIN}:keyword_reward", "kwargs": {"bonus": 2.0}})
    fn = registry.resolve_reward(spec)
    assert fn(completions=["a cat"], keyword=["cat"], bonus=5.0) == [2.0]
    assert "bonus" not in inspect.signature(fn).parameters
    assert reward_required_columns(fn) == {"keyword"}


def test_binding_a_column_parameter_removes_it_from_required_columns():
    spec = parse_reward_spec({"name": "cls_accuracy", "kwargs": {"label": ["cat"]}})
    fn = registry.resolve_reward(spec)
    assert reward_required_columns(fn) == set()
    assert fn(completions=["<answer>Cat</answer>"]) == [1.0]


# -- load_reward_functions ----------------------------------------------------------------------


def test_load_reward_functions_returns_wrapped_functions_and_weights_in_order():
    functions, weights = load_reward_functions(
        [
            {"name": "cls_format", "weight": 0.5},
            "cls_accuracy",
            "plugin_rewards.py:keyword_reward",
            "rewards.math:numeric_answer_format",
        ],
        base_dir=FIXTURES,
        on_error="none",
    )
    assert [f.__name__ for f in functions] == [
        "cls_format",
        "cls_accuracy",
        "keyword_reward",
        "numeric_answer_format",
    ]
    assert weights == [0.5, 1.0, 1.0, 1.0]
    assert all(isinstance(f, CheckedReward) and f.on_error == "none" for f in functions)
    assert trl_call(functions[1], ["<answer>cat</answer>", "cat"], label=["cat", "cat"]) == [1.0, 0.0]


def test_load_reward_functions_makes_duplicate_names_unique():
    functions, _ = load_reward_functions(
        [
            "numeric_answer",
            {"name": "numeric_answer", "kwargs": {"rel_tol": 0.1}},
            "rewards.math:numeric_answer",
        ]
    )
    assert [f.__name__ for f in functions] == ["numeric_answer", "numeric_answer_2", "numeric_answer_3"]
    assert trl_call(functions[1], ["95"], answer=["100"]) == [1.0]
    assert trl_call(functions[0], ["95"], answer=["100"]) == [0.0]


def test_load_reward_functions_accepts_one_spec_and_parsed_specs():
    functions, weights = load_reward_functions("cls_format")
    assert [f.__name__ for f in functions] == ["cls_format"]
    functions, weights = load_reward_functions([RewardSpec("cls_equality", 3.0, {}, "cls_equality")])
    assert (functions[0].__name__, weights) == ("cls_equality", [3.0])
    assert load_reward_functions([]) == ([], [])


def test_load_reward_functions_fails_on_any_bad_spec_before_loading():
    with pytest.raises(ValueError, match="numeric_answr"):
        load_reward_functions(["cls_format", "numeric_answr"])


def test_async_plugin_gives_an_async_wrapper():
    functions, _ = load_reward_functions([f"{PLUGIN}:async_length_reward"])
    (fn,) = functions
    assert isinstance(fn, AsyncCheckedReward)
    assert inspect.iscoroutinefunction(fn.__call__)
    assert asyncio.run(trl_call(fn, ["ab", "abcd"])) == [2.0, 4.0]


def test_wrappers_look_right_to_trl():
    trl_utils = pytest.importorskip("trl.trainer.utils")
    (sync_fn, async_fn), _ = load_reward_functions(["cls_format", f"{PLUGIN}:async_length_reward"])
    assert trl_utils.get_callable_name(sync_fn) == "cls_format"
    assert not trl_utils.is_async_callable(sync_fn)
    assert trl_utils.get_callable_name(async_fn) == "async_length_reward"
    assert trl_utils.is_async_callable(async_fn)


# -- parse errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("numeric_answr", r"no reward is registered as 'numeric_answr'.*Did you mean 'numeric_answer'"),
        ("cls_acuracy", r"Did you mean 'cls_accuracy'"),
        ("rewards.math.numeric_answer", r"write 'package\.module:function'"),
        ("", "the reward name is empty"),
        ("rewards.math:", "is not a function name"),
        ("rewards.math:numeric-answer", "is not a function name"),
        ("rewards.math:numeric_answr", r"has no attribute 'numeric_answr'.*Did you mean 'numeric_answer'"),
        ("no_such_module_xyz:fn", r"module 'no_such_module_xyz' not found"),
        ("no such module:fn", "is not a module path"),
        ("missing_plugin.py:fn", r"plug-in file 'missing_plugin\.py' not found"),
        (f"{PLUGIN}:NOT_A_REWARD", "is a int, not a function"),
        (f"{PLUGIN}:reward_without_kwargs", r"must accept \*\*kwargs"),
        (f"{PLUGIN}:reward_reading_prompt", r"parameter 'prompt' is never passed.*'prompts'"),
        ({"name": "cls_format", "wieght": 2}, r"unknown key\(s\) 'wieght'.*Did you mean 'weight'"),
        ({"weight": 2}, "needs 'name'"),
        ({"name": 3}, "'name' must be a string"),
        ({"name": "cls_format", "weight": "1.0"}, "weight must be a number, got str"),
        ({"name": "cls_format", "weight": True}, "weight must be a number, got bool"),
        ({"name": "cls_format", "weight": math.nan}, "weight must be finite"),
        ({"name": "cls_format", "kwargs": ["rel_tol"]}, "'kwargs' must be a mapping"),
        (
            {"name": "numeric_answer", "kwargs": {"rel_tl": 0.1}},
            r"no parameter 'rel_tl' to bind.*Did you mean 'rel_tol'",
        ),
        ({"name": "numeric_answer", "kwargs": {"completions": []}}, "kwargs cannot set 'completions'"),
        (42, "must be a string or a dict, got int"),
    ],
)
def test_parse_errors_name_the_spec_and_the_fix(spec, message):
    with pytest.raises(ValueError, match=message) as caught:
        parse_reward_spec(spec)
    if spec != 42:
        assert repr(spec) in str(caught.value)


def test_parse_error_for_a_module_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "broken_reward_module.py").write_text("raise RuntimeError('kaput')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ValueError, match="importing module 'broken_reward_module' failed: RuntimeError: kaput"
    ):
        parse_reward_spec("broken_reward_module:fn")


def test_parse_error_for_a_module_with_a_missing_dependency(tmp_path, monkeypatch):
    (tmp_path / "needs_missing_dep.py").write_text("import not_installed_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="failed: ModuleNotFoundError.*not_installed_dep_xyz"):
        parse_reward_spec("needs_missing_dep:fn")


def test_parse_error_for_a_plugin_file_that_fails_to_import(tmp_path):
    (tmp_path / "broken.py").write_text("1 / 0\n")
    with pytest.raises(ValueError, match=r"importing plug-in file .*broken\.py' failed: ZeroDivisionError"):
        parse_reward_spec("broken.py:fn", base_dir=tmp_path)


# -- required columns ---------------------------------------------------------------------------


def test_required_columns_of_built_ins():
    columns = {name: reward_required_columns(fn) for name, fn in registered_rewards().items()}
    assert {name: columns[name] for name in BUILT_INS} == {
        "numeric_answer": {"answer"},
        "numeric_answer_format": set(),
        "cls_format": set(),
        "cls_accuracy": {"label"},
        "cls_equality": {"label"},
        "cls_contains": {"label"},
    }


def test_required_columns_skip_trl_keywords_and_defaults():
    def reward(
        prompts,
        completions,
        completion_ids,
        trainer_state,
        log_extra,
        log_metric,
        environments,
        solution,
        *args,
        difficulty,
        scale=1.0,
        **kwargs,
    ):
        return []

    assert reward_required_columns(reward) == {"solution", "difficulty"}
    assert reward_required_columns(len) == set()  # a builtin without a readable signature


def test_required_columns_exposed_on_the_wrapper():
    wrapper = checked_reward(cls_accuracy, name="acc")
    assert wrapper.required_columns == frozenset({"label"})
    assert reward_required_columns(wrapper) == {"label"}
    assert list(inspect.signature(wrapper).parameters) == ["completions", "label", "kwargs"]


# -- the contract wrapper -----------------------------------------------------------------------


def constant(value):
    def reward(completions, **kwargs):
        return value

    return reward


def test_wrapper_keeps_the_name_and_converts_values_to_floats():
    wrapper = checked_reward(constant([1, True, False, None, 0.5]), name="mixed")
    assert wrapper.__name__ == "mixed"
    scores = trl_call(wrapper, list("abcde"))
    assert scores == [1.0, 1.0, 0.0, None, 0.5]
    assert all(type(s) is float for s in scores if s is not None)
    assert checked_reward(numeric_answer).__name__ == "numeric_answer"


def test_wrapper_accepts_tuples_numpy_and_torch():
    np = pytest.importorskip("numpy")
    assert trl_call(checked_reward(constant((1.0, None)), name="t"), ["a", "b"]) == [1.0, None]
    array = np.array([0.25, 1.0], dtype=np.float32)
    assert trl_call(checked_reward(constant(array), name="arr"), ["a", "b"]) == [0.25, 1.0]
    scalars = [np.float32(0.5), np.int64(2), np.bool_(True), np.array(3.0)]
    assert trl_call(checked_reward(constant(scalars), name="np"), list("abcd")) == [0.5, 2.0, 1.0, 3.0]
    torch = pytest.importorskip("torch")
    tensor = torch.tensor([1.0, 0.0])
    assert trl_call(checked_reward(constant(tensor), name="tensor"), ["a", "b"]) == [1.0, 0.0]
    items = [torch.tensor(0.5), torch.tensor(True)]
    assert trl_call(checked_reward(constant(items), name="items"), ["a", "b"]) == [0.5, 1.0]


def test_wrong_length_that_no_single_sample_repeats_is_an_error():
    wrapper = checked_reward(constant([1.0]), name="short")
    with pytest.raises(
        RewardContractError,
        match="'short' returned 1 values for 2 completions, but on none of them when re-run",
    ):
        trl_call(wrapper, ["a", "b"])


@pytest.mark.parametrize("output", [1.0, None, {"a": 1.0}, "10", (x for x in [1.0])])
def test_wrong_container_type_is_an_error_of_each_sample(output):
    strict = checked_reward(constant(output), name="scalar")
    with pytest.raises(
        RewardContractError,
        match=r"'scalar' returned \w+ instead of a list when re-run on sample 0 alone: 'a'; it must return one",
    ):
        trl_call(strict, ["a", "b"])
    lenient = checked_reward(constant(output), name="scalar", on_error="none")
    assert trl_call(lenient, ["a", "b"]) == [None, None]
    assert pop_error_counts() == {"scalar": 2}


def test_two_dimensional_array_is_an_error():
    np = pytest.importorskip("numpy")
    wrapper = checked_reward(constant(np.zeros((2, 1))), name="matrix")
    with pytest.raises(RewardContractError, match="returned ndarray"):
        trl_call(wrapper, ["a", "b"])


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("1", r"a value of type str \('1'\)"),
        ([1.0], r"a value of type list \(\[1\.0\]\)"),
        (math.nan, r"a non-finite value \(nan\)"),
        (math.inf, r"a non-finite value \(inf\)"),
        (-math.inf, r"a non-finite value \(-inf\)"),
    ],
)
def test_bad_item_raises_with_the_sample(bad, problem):
    wrapper = checked_reward(constant([1.0, bad]), name="bad_item")
    with pytest.raises(RewardContractError, match=f"'bad_item' returned {problem} for sample 1: 'second'"):
        trl_call(wrapper, ["first", "second"])


def test_bad_item_scores_none_and_is_counted():
    wrapper = checked_reward(constant([1.0, math.nan, "x"]), name="bad_items", on_error="none")
    assert trl_call(wrapper, ["a", "b", "c"]) == [1.0, None, None]
    assert wrapper.error_count == 2
    assert pop_error_counts() == {"bad_items": 2}


def boom_on_marker(completions, answer, **kwargs):
    """Scores 1.0, but raises on any completion containing 'boom'."""
    for completion in completions:
        if "boom" in completion:
            raise KeyError(f"cannot score {completion!r}")
    return [1.0 if a == "yes" else 0.0 for a in answer]


def test_exception_raises_naming_the_failing_sample():
    wrapper = checked_reward(boom_on_marker, name="boom")
    long_completion = "boom " + "x" * 200
    with pytest.raises(RewardContractError) as caught:
        trl_call(wrapper, ["fine", long_completion, "boom again"], answer=["yes", "yes", "no"])
    message = str(caught.value)
    assert message.startswith("reward 'boom' raised KeyError: \"cannot score")
    assert f"on sample 1: {('boom ' + 'x' * 75 + '...')!r}" in message
    assert isinstance(caught.value.__cause__, KeyError)
    assert isinstance(caught.value, RuntimeError)


def test_exception_with_on_error_none_isolates_the_failing_samples(caplog):
    wrapper = checked_reward(boom_on_marker, name="boom", on_error="none")
    columns = {"answer": ["yes", "yes", "no", "yes"]}
    with caplog.at_level(logging.WARNING, logger="rewards.contract"):
        scores = trl_call(wrapper, ["fine", "boom", "ok", "boom!"], **columns)
    # Each survivor keeps its own column value: the re-run slices every per-sample argument.
    assert scores == [1.0, None, 0.0, None]
    assert wrapper.error_count == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the first error only
    assert "raised KeyError" in warnings[0] and "cannot score 'boom'" in warnings[0]
    assert "on sample 1: 'boom'" in warnings[0]

    trl_call(wrapper, ["boom"], answer=["yes"])
    assert wrapper.error_count == 3
    assert pop_error_counts() == {"boom": 3}
    assert pop_error_counts() == {}
    assert pop_error_counts(["boom", "cls_format"]) == {"boom": 0, "cls_format": 0}


def test_rerun_passes_non_sample_arguments_unchanged():
    seen = []

    def reward(completions, trainer_state, **kwargs):
        seen.append(trainer_state)
        if len(completions) > 1:
            raise RuntimeError("batch only")
        return [1.0]

    state = object()
    wrapper = checked_reward(reward, name="batchy", on_error="none")
    assert wrapper(completions=["a", "b"], trainer_state=state) == [1.0, 1.0]
    assert seen == [state, state, state]
    assert wrapper.error_count == 0

    strict = checked_reward(reward, name="batchy")
    with pytest.raises(RewardContractError, match="on a batch of 2 completions, but on none of them"):
        strict(completions=["a", "b"], trainer_state=state)


def test_wrong_length_on_a_rerun_is_an_error_of_that_sample():
    def reward(completions, **kwargs):
        if len(completions) > 1:
            raise RuntimeError("batch only")
        return [] if completions[0] == "b" else [1.0]

    wrapper = checked_reward(reward, name="empty", on_error="none")
    assert wrapper(completions=["a", "b"]) == [1.0, None]
    assert wrapper.error_count == 1
    strict = checked_reward(reward, name="empty")
    with pytest.raises(
        RewardContractError, match="0 values for 1 completions when re-run on sample 1 alone: 'b'"
    ):
        strict(completions=["a", "b"])


def test_async_reward_errors_are_isolated_too():
    async def reward(completions, **kwargs):
        if any("boom" in c for c in completions):
            raise ValueError("no")
        return [1.0] * len(completions)

    lenient = checked_reward(reward, name="async_boom", on_error="none")
    assert asyncio.run(lenient(completions=["a", "boom", "c"])) == [1.0, None, 1.0]
    assert pop_error_counts() == {"async_boom": 1}
    strict = checked_reward(reward, name="async_boom")
    with pytest.raises(RewardContractError, match="raised ValueError: no on sample 1: 'boom'"):
        asyncio.run(strict(completions=["a", "boom"]))


def test_conversational_completion_is_previewed_as_text():
    wrapper = checked_reward(constant(["x"]), name="conv")
    with pytest.raises(RewardContractError, match="for sample 0: '#### 5'"):
        wrapper(completions=[[{"role": "assistant", "content": "#### 5"}]])


def test_wrapper_needs_completions_and_a_valid_mode():
    with pytest.raises(RewardContractError, match="keyword argument `completions`"):
        checked_reward(constant([]), name="c")(prompts=["p"])
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'none'"):
        checked_reward(constant([]), name="c", on_error="skip")


def test_rewrapping_wraps_the_original_function():
    inner = checked_reward(numeric_answer, name="first")
    outer = checked_reward(inner, name="second", on_error="none")
    assert outer.func is numeric_answer
    assert outer.__name__ == "second"
