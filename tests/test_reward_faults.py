"""Faulty rewards, injected: a reward that raises on some samples, returns NaN or infinity, returns the wrong
length, or hangs. By default each stops with an error naming the reward, the sample and the step; with
``on_error="none"`` (``reward_errors: none``) the failing samples score None and are counted."""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import re
import sys
import threading
import time
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import yaml

import rewards.contract as contract
from posttrain.recipe import RecipeError, load_recipe
from posttrain.trainers import PosttrainGRPOTrainer
from rewards.contract import RewardContractError, RewardTimeoutError, checked_reward, pop_error_counts
from tests.test_recipe import GRPO_BASE

STEP = SimpleNamespace(global_step=6)  # what TRL passes as trainer_state while it computes step 7
LIMIT = 0.3  # seconds: short, so that a hang costs the suite little


@pytest.fixture(autouse=True)
def _no_pending_counts():
    pop_error_counts()
    yield
    pop_error_counts()


@pytest.fixture
def release():
    """Set at the end of a test, so that every reward call it left hanging returns and its thread ends."""
    event = threading.Event()
    yield event
    event.set()


def call(wrapper, completions, **columns):
    """Call a wrapped reward as GRPOTrainer does at step 7."""
    return wrapper(
        prompts=["p"] * len(completions),
        completions=completions,
        completion_ids=[[i] for i in range(len(completions))],
        trainer_state=STEP,
        **columns,
    )


def flaky(completions, **kwargs):
    """Scores the length of each completion, but cannot score one that says 'boom'."""
    for completion in completions:
        if "boom" in completion:
            raise ValueError(f"cannot parse {completion!r}")
    return [float(len(c)) for c in completions]


def dropping(completions, **kwargs):
    """Leaves out what it cannot score, so it returns too few values: a common reward bug."""
    return [float(len(c)) for c in completions if "boom" not in c]


# -- raises, NaN, wrong length ------------------------------------------------------------------


def test_raising_on_some_samples_stops_naming_the_reward_sample_and_step():
    with pytest.raises(RewardContractError) as caught:
        call(checked_reward(flaky, name="flaky"), ["ok", "fine", "boom " + "x" * 100])
    assert str(caught.value) == (
        "reward 'flaky' raised ValueError: cannot parse 'boom " + "x" * 100 + "' on sample 2 at step 7: "
        "'boom " + "x" * 75 + "...'"
    )


def test_raising_on_some_samples_with_none_skips_and_counts_only_those():
    wrapper = checked_reward(flaky, name="flaky", on_error="none")
    assert call(wrapper, ["ok", "boom", "fine", "boom!"]) == [2.0, None, 4.0, None]
    assert pop_error_counts(["flaky"]) == {"flaky": 2}


@pytest.mark.parametrize(("bad", "shown"), [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_non_finite_value_stops_naming_the_step_or_is_skipped(bad, shown):
    def reward(completions, **kwargs):
        return [1.0, bad, 0.5]

    with pytest.raises(RewardContractError) as caught:
        call(checked_reward(reward, name="judge"), ["a", "b", "c"])
    assert str(caught.value) == (
        f"reward 'judge' returned a non-finite value ({shown}) for sample 1 at step 7: 'b'; each item must be a "
        "finite number or None"
    )
    assert call(checked_reward(reward, name="judge", on_error="none"), ["a", "b", "c"]) == [1.0, None, 0.5]
    assert pop_error_counts(["judge"]) == {"judge": 1}


def test_wrong_length_is_traced_to_the_sample_that_causes_it():
    with pytest.raises(RewardContractError) as caught:
        call(checked_reward(dropping, name="dropping"), ["ok", "boom", "fine"])
    assert str(caught.value) == (
        "reward 'dropping' returned 0 values for 1 completions when re-run on sample 1 alone at step 7: "
        "'boom'; it must return one float or None per completion"
    )
    wrapper = checked_reward(dropping, name="dropping", on_error="none")
    assert call(wrapper, ["ok", "boom", "fine", "boom"]) == [2.0, None, 4.0, None]
    assert pop_error_counts(["dropping"]) == {"dropping": 2}


def test_a_fault_of_the_batch_alone_names_the_step():
    def reward(completions, **kwargs):
        return [1.0]  # one value whatever the batch

    with pytest.raises(RewardContractError) as caught:
        call(checked_reward(reward, name="one"), ["a", "b"])
    assert str(caught.value) == (
        "reward 'one' returned 1 values for 2 completions at step 7, but on none of them when re-run one at a time"
    )


def test_without_trainer_state_messages_leave_the_step_out():
    with pytest.raises(RewardContractError, match=r"on sample 0: 'boom'$"):
        checked_reward(flaky, name="flaky")(completions=["boom"])


# -- hangs --------------------------------------------------------------------------------------


def hanging(release):
    def judge(completions, **kwargs):
        """Scores 1.0, but never answers on a completion that says 'hang' (until the test ends)."""
        if any("hang" in c for c in completions):
            release.wait()
        return [1.0] * len(completions)

    return judge


def test_a_hang_stops_at_the_limit_naming_the_reward_step_and_limit(release):
    wrapper = checked_reward(hanging(release), name="judge", timeout=LIMIT)
    started = time.monotonic()
    with pytest.raises(RewardTimeoutError) as caught:
        call(wrapper, ["ok", "hang"])
    assert time.monotonic() - started < LIMIT + 2.0
    message = str(caught.value)
    assert message.startswith(
        "reward 'judge' overran its time limit (reward_timeout 0.3 s) on a batch of 2 completions at step 7 "
        f"(it was at {__file__}:"
    )
    assert message.endswith(
        "in judge). Raise reward_timeout if the reward is only slow, or set reward_errors: none to score the "
        "samples of such calls None."
    )


def test_a_hang_with_none_skips_the_call_counts_it_and_the_next_call_is_scored(release, caplog):
    wrapper = checked_reward(hanging(release), name="judge", on_error="none", timeout=LIMIT)
    with caplog.at_level(logging.WARNING, logger="rewards.contract"):
        assert call(wrapper, ["ok", "hang", "fine"]) == [None, None, None]
    assert pop_error_counts(["judge"]) == {"judge": 3}
    assert "its 3 samples score None" in caplog.text
    assert "release.wait()" in caplog.text  # the hung call's stack, to find the hang
    # The hung call keeps its thread; the next call gets a fresh one and is not stuck behind it.
    assert call(wrapper, ["ok", "fine"]) == [1.0, 1.0]
    assert pop_error_counts(["judge"]) == {"judge": 0}


def test_a_hang_while_re_running_a_failed_batch_skips_the_rest(release):
    def reward(completions, **kwargs):
        if any("boom" in c for c in completions):
            raise ValueError("boom")
        if any("hang" in c for c in completions) and len(completions) == 1:
            release.wait()
        return [1.0] * len(completions)

    wrapper = checked_reward(reward, name="judge", on_error="none", timeout=LIMIT)
    # The batch raises; re-run alone, sample 1 raises and sample 2 hangs: the re-run's time runs out there.
    assert call(wrapper, ["ok", "boom", "hang", "fine"]) == [1.0, None, None, None]
    assert pop_error_counts(["judge"]) == {"judge": 3}
    strict = checked_reward(reward, name="judge", timeout=LIMIT)
    with pytest.raises(RewardContractError, match="raised ValueError: boom on sample 1 at step 7"):
        call(strict, ["ok", "boom", "hang"])
    with pytest.raises(RewardTimeoutError) as caught:
        call(strict, ["hang", "boom"])
    assert str(caught.value).startswith(
        "reward 'judge' raised ValueError: boom on a batch of 2 completions at step 7, and re-running it one sample "
        "at a time overran its time limit (reward_timeout 0.3 s) at sample 0: 'hang' (it was at "
    )


def test_hangs_that_pile_up_stop_the_run_even_with_none(release, monkeypatch):
    monkeypatch.setattr(contract, "MAX_STRANDED_CALLS", 2)
    wrapper = checked_reward(hanging(release), name="judge", on_error="none", timeout=LIMIT)
    assert call(wrapper, ["hang"]) == [None]
    with pytest.raises(
        RewardTimeoutError, match="2 of its timed-out calls are still running in background threads"
    ):
        call(wrapper, ["hang"])


def test_a_hang_that_ends_frees_its_thread(release, monkeypatch):
    monkeypatch.setattr(contract, "MAX_STRANDED_CALLS", 2)
    wrapper = checked_reward(hanging(release), name="judge", on_error="none", timeout=LIMIT)
    assert call(wrapper, ["hang"]) == [None]
    release.set()
    deadline = time.monotonic() + 5
    while any(t.thread.is_alive() for t in wrapper._stranded) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.clear()
    assert call(wrapper, ["hang"]) == [None]  # only one call is still running, below the cap


def test_async_hang_is_cancelled_at_the_limit(release):
    cancelled = []

    async def judge(completions, **kwargs):
        try:
            if any("hang" in c for c in completions):
                await asyncio.sleep(3600)
            return [1.0] * len(completions)
        except asyncio.CancelledError:
            cancelled.append(completions)
            raise

    async def both():
        lenient = checked_reward(judge, name="judge", on_error="none", timeout=LIMIT)
        skipped = await call(lenient, ["ok", "hang"])
        scored = await call(lenient, ["ok"])
        await asyncio.sleep(0)  # let the cancellation land
        with pytest.raises(
            RewardTimeoutError, match=r"on a batch of 1 completions at step 7 \(cancelled; it was at"
        ):
            await call(checked_reward(judge, name="judge", timeout=LIMIT), ["hang"])
        return skipped, scored

    assert asyncio.run(both()) == ([None, None], [1.0])
    assert cancelled[0] == ["ok", "hang"]
    assert pop_error_counts(["judge"]) == {"judge": 2}


def test_a_timeout_error_of_the_reward_itself_is_an_error_not_an_overrun():
    def reward(completions, **kwargs):
        raise TimeoutError("the judge's socket timed out")

    with pytest.raises(
        RewardContractError, match="raised TimeoutError: the judge's socket timed out on sample 0"
    ) as caught:
        call(checked_reward(reward, name="judge", timeout=LIMIT), ["a"])
    assert not isinstance(caught.value, RewardTimeoutError)


def test_with_a_limit_calls_run_in_one_reused_thread_without_in_the_callers():
    threads = []

    def reward(completions, **kwargs):
        threads.append(threading.current_thread())
        return [0.0] * len(completions)

    limited = checked_reward(reward, name="limited", timeout=60)
    call(limited, ["a"])
    call(limited, ["b"])
    assert threads[0] is threads[1] is not threading.current_thread()
    assert threads[0].name == "reward-limited" and threads[0].daemon
    call(checked_reward(reward, name="unlimited"), ["c"])
    assert threads[2] is threading.current_thread()
    call(copy.deepcopy(limited), ["d"])  # a copy gets a thread of its own
    assert threads[3] not in (threads[0], threading.current_thread())


def test_the_reward_thread_uses_the_callers_cuda_device(monkeypatch):
    """The current CUDA device is per thread; each process of a multi-GPU run sets its own in its main thread."""
    set_in = []
    cuda = SimpleNamespace(
        is_initialized=lambda: True,
        current_device=lambda: 3,
        set_device=lambda device: set_in.append((device, threading.current_thread().name)),
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    call(checked_reward(flaky, name="on_gpu", timeout=60), ["a"])
    assert set_in == [(3, "reward-on_gpu")]


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, True, "10"])
def test_checked_reward_refuses_a_bad_timeout(timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds or None"):
        checked_reward(flaky, timeout=timeout)


# -- the recipe and the trainer -----------------------------------------------------------------

GRPO = {**GRPO_BASE, "beta": 0.0}


def recipe(tmp_path, overrides=(), **fields):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**GRPO, **fields}))
    return load_recipe(path, list(overrides))


@pytest.mark.parametrize("value", [-5, ".nan", True, [30]])
def test_recipe_refuses_a_bad_reward_timeout(tmp_path, value):
    if value == ".nan":
        value = math.nan
    # The recipe parser refuses what is not a number at all; the config, numbers out of range.
    with pytest.raises(
        RecipeError,
        match=r"reward_timeout (must be a number of seconds \(0 or null for no limit\)|in .* is not a number)",
    ):
        recipe(tmp_path, reward_timeout=value)


def test_recipe_reward_timeout_reaches_every_reward(tmp_path):
    loaded = recipe(tmp_path, reward_funcs=["numeric_answer", "numeric_answer_format"], reward_timeout=45)
    funcs, _ = loaded.method.family.rewards(loaded)
    assert [f.timeout for f in funcs] == [45.0, 45.0]
    assert recipe(tmp_path).trainer.reward_timeout == 600.0
    assert recipe(tmp_path, reward_timeout=None).trainer.reward_timeout is None
    assert recipe(tmp_path, ["--reward_timeout", "0"]).trainer.reward_timeout is None
    assert recipe(tmp_path, ["--reward_timeout", "2.5"]).trainer.reward_timeout == 2.5


def test_trainer_logs_each_lenient_rewards_skipped_samples_per_batch_summed_over_processes():
    lenient = checked_reward(flaky, name="flaky", on_error="none")
    quiet = checked_reward(flaky, name="quiet", on_error="none")
    strict = checked_reward(flaky, name="strict")
    call(lenient, ["boom", "ok", "boom"])

    class TwoProcesses:
        """Gathers as if a second process had skipped one sample of each reward."""

        device = "cpu"

        def gather(self, tensor):
            return torch.cat([tensor, torch.ones_like(tensor)])

    metrics = {"train": defaultdict(list)}
    trainer = SimpleNamespace(
        reward_funcs=[lenient, quiet, strict], accelerator=TwoProcesses(), _metrics=metrics
    )
    PosttrainGRPOTrainer._log_reward_errors(trainer, "train")
    PosttrainGRPOTrainer._log_reward_errors(trainer, "train")
    assert dict(metrics["train"]) == {"rewards/flaky/errors": [3.0, 1.0], "rewards/quiet/errors": [1.0, 1.0]}


# -- end to end ---------------------------------------------------------------------------------

FAULTY_REWARDS = '''
import time

from transformers import TrainerState

first_prompts = []


def flaky(completions, prompts, trainer_state, **kwargs):
    """Cannot score the completions of the first prompt of each training batch (it remembers which, for the
    re-runs); the made-up answers validate scores it on before training pass."""
    if not isinstance(trainer_state, TrainerState):
        return [1.0] * len(completions)
    if len(completions) > 1:
        first_prompts.append(prompts[0])
    if any(prompt == first_prompts[-1] for prompt in prompts):
        raise ValueError("cannot score this prompt")
    return [1.0] * len(completions)


def stalls(completions, trainer_state, **kwargs):
    """Hangs at step 2 (global_step 1 while it is computed), far longer than the recipe's reward_timeout."""
    if trainer_state.global_step == 1:
        time.sleep(30)
    return [0.5] * len(completions)
'''


@pytest.mark.slow
def test_grpo_with_faulty_rewards_stops_by_default_and_skips_and_counts_with_none(
    tiny_model, offline_cache, tmp_path, caplog
):
    from posttrain.cli import main
    from tests.test_train_e2e import grpo_config, read_jsonl, trainer_state, write

    (tmp_path / "faulty_rewards.py").write_text(FAULTY_REWARDS)
    config = grpo_config(tiny_model, tmp_path / "raise", heldout_metric=None, per_device_train_batch_size=8)
    config["reward_funcs"] = ["numeric_answer", "faulty_rewards.py:flaky"]
    assert main(["train", str(write(tmp_path / "raise.yaml", config))]) == 2  # one clean error, exit 2
    assert re.search(
        r"error: reward 'flaky' raised ValueError: cannot score this prompt on sample 0 at step 1: '",
        caplog.text,
    )

    out = tmp_path / "none"
    config.update(output_dir=str(out), reward_errors="none", reward_timeout=2)
    config["reward_funcs"].append("faulty_rewards.py:stalls")
    assert main(["train", str(write(tmp_path / "none.yaml", config))]) == 0
    logged = [e for e in trainer_state(out / "checkpoint-2")["log_history"] if "loss" in e]
    # Per step: the 4 completions of the first prompt (flaky); every completion at step 2 (stalls, timed out).
    assert [(e["rewards/flaky/errors"], e["rewards/stalls/errors"]) for e in logged] == [
        (4.0, 0.0),
        (4.0, 8.0),
    ]
    rows = read_jsonl(out / "completions" / "completions.jsonl")
    skipped = [
        (
            r["step"],
            r["rewards"]["flaky"] is None,
            r["rewards"]["stalls"] is None,
            r["rewards"]["numeric_answer"] is None,
        )
        for r in rows
    ]
    assert skipped == [(1, i < 4, False, False) for i in range(8)] + [
        (2, i < 4, True, False) for i in range(8)
    ]
