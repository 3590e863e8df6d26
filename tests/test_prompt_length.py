"""max_prompt_length and long_prompts: prompts longer than the cap are refused, dropped or truncated, in the
training split and the held-out rows, before any model loads (or right after the tokenizer loads, when it was not
on the machine before).

The data is the committed gsm_symbolic fixture (8 training rows, 4 held-out rows) with the tiny model's SmolLM2
tokenizer; token counts are taken as TRL's trainers take them, independently of posttrain's own counting.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from posttrain.cli import main
from posttrain.recipe import load_recipe
from posttrain.train import preflight

# Prompt tokens of the fixture rows with prompt_template "{question}" and SmolLM2's chat template (its default
# system prompt included), in the order the recipe samples them.
TRAIN_TOKENS = [66, 93, 73, 73, 59, 70, 93, 101]
HELDOUT_TOKENS = [151, 90, 115, 120]


def recipe(model: Path, method: str = "grpo", **fields) -> dict:
    config = {
        "method": method,
        "model_name_or_path": str(model),
        "dataset_name": "gsm_symbolic",
        "max_train_samples": 8,
        "prompt_template": "{question}",
        "heldout_metric": "numeric_answer",
        "heldout_samples": 4,
        "heldout_max_new_tokens": 8,
        "learning_rate": 1.0e-05,
        "max_steps": 1,
        "output_dir": "out",
        "per_device_train_batch_size": 2,
        "report_to": "none",
        "use_cpu": True,
    }
    if method == "grpo":
        config |= {
            "beta": 0.0,
            "loss_type": "dapo",
            "max_completion_length": 16,
            "num_generations": 2,
            "reward_funcs": ["numeric_answer"],
            "scale_rewards": "group",
        }
    else:
        config |= {"completion_template": "{solution}", "max_length": 1024}
    return config | fields


def write(config: dict) -> str:
    Path("recipe.yaml").write_text(yaml.safe_dump(config))
    return "recipe.yaml"


def checked(config: dict):
    """The preflight's training split and held-out rows for ``config``."""
    checks = preflight(load_recipe(write(config)))
    return checks.train["train"], checks.test


def trainer_ids(tokenizer, prompt) -> list[int]:
    """A prompt's token ids as TRL's trainers tokenize it: chat messages through the chat template with the
    generation prompt, raw text as it is."""
    if isinstance(prompt, str):
        return tokenizer(prompt)["input_ids"]
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)["input_ids"]


def error_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("error: ")]


def logged(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


@pytest.fixture()
def workdir(tiny_model, offline_cache, tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_the_fixture_prompts_have_the_lengths_these_tests_assume(tiny_model, workdir, tokenizer):
    train, test = checked(recipe(tiny_model))
    assert [len(trainer_ids(tokenizer, p)) for p in train["prompt"]] == TRAIN_TOKENS
    assert [len(trainer_ids(tokenizer, p)) for p in test["prompt"]] == HELDOUT_TOKENS


def test_refuse_is_the_default_and_ends_validate_in_one_error(tiny_model, workdir, caplog):
    write(recipe(tiny_model, max_prompt_length=80))
    assert main(["validate", "recipe.yaml"]) == 2
    (error,) = error_lines(caplog)
    assert (
        "3 of 8 training prompts are longer than max_prompt_length=80 tokens (longest: row 7, 101 tokens). Set "
        "long_prompts: drop to leave them out, or long_prompts: truncate to keep their last 80 tokens; or raise "
        "max_prompt_length." in error
    )
    assert (
        "4 of 4 held-out prompts are longer than max_prompt_length=80 tokens (longest: row 0, 151 tokens)"
        in error
    )
    assert "Traceback" not in logged(caplog)


def test_prompts_within_the_cap_pass_unchanged(tiny_model, workdir, caplog):
    caplog.set_level(logging.INFO)
    train, test = checked(recipe(tiny_model))
    capped_train, capped_test = checked(recipe(tiny_model, max_prompt_length=151))
    assert capped_train["prompt"] == train["prompt"] and capped_test["prompt"] == test["prompt"]
    assert "All 8 training prompts are within max_prompt_length=151 tokens (longest 101)." in logged(caplog)


@pytest.mark.parametrize("method", ["grpo", "sft"])
def test_drop_leaves_out_the_long_rows_and_says_how_many(method, tiny_model, workdir, caplog):
    train, test = checked(recipe(tiny_model, method))
    caplog.set_level(logging.WARNING)
    kept_train, kept_test = checked(recipe(tiny_model, method, max_prompt_length=93, long_prompts="drop"))

    # Row 7 (101 tokens) goes, rows 1 and 6 (93, at the cap) stay; held-out rows 0, 2 and 3 (151, 115, 120) go.
    assert kept_train.to_list() == train.select(range(7)).to_list()
    assert kept_test.to_list() == test.select([1]).to_list()
    text = logged(caplog)
    assert (
        "Dropped 1 of 8 training prompts longer than max_prompt_length=93 tokens (longest: row 7, 101 tokens); "
        "7 left." in text
    )
    assert (
        "Dropped 3 of 4 held-out prompts longer than max_prompt_length=93 tokens (longest: row 0, 151 tokens); "
        "1 left." in text
    )


def test_drop_that_would_leave_nothing_is_refused(tiny_model, workdir, caplog):
    write(recipe(tiny_model, max_prompt_length=80, long_prompts="drop"))
    assert main(["validate", "recipe.yaml"]) == 2
    (error,) = error_lines(caplog)
    assert (
        "All 4 held-out prompts are longer than max_prompt_length=80 tokens (longest: row 0, 151 tokens)"
        in error
    )


@pytest.mark.parametrize(
    ("method", "prompt_format"), [("grpo", "chat"), ("grpo", "raw"), ("sft", "chat"), ("sft", "raw")]
)
def test_truncate_keeps_the_last_tokens_of_each_long_prompt(
    method, prompt_format, tiny_model, workdir, caplog, tokenizer
):
    fields = {"prompt_format": prompt_format, "system_prompt": "Answer with a number."}
    train, test = checked(recipe(tiny_model, method, **fields))
    # With this system prompt the training prompts have 55, 82, 62, 62, 48, 59, 82 and 90 tokens as chat, 43, 70,
    # 50, 50, 36, 47, 70 and 78 as raw text; the held-out ones 140, 79, 104, 109 and 128, 67, 92, 97.
    long_train = 5 if prompt_format == "chat" else 3
    caplog.set_level(logging.WARNING)
    cut_train, cut_test = checked(
        recipe(tiny_model, method, max_prompt_length=60, long_prompts="truncate", **fields)
    )

    assert len(cut_train) == 8 and len(cut_test) == 4
    if method == "sft":  # only the prompt part is cut
        assert cut_train["completion"] == train["completion"]
    for before, after in [
        *zip(train["prompt"], cut_train["prompt"], strict=True),
        *zip(test["prompt"], cut_test["prompt"], strict=True),
    ]:
        old, new = trainer_ids(tokenizer, before), trainer_ids(tokenizer, after)
        if len(old) <= 60:
            assert after == before
            continue
        assert len(new) == 60
        if prompt_format == "raw":  # exactly the last 60 tokens
            assert new == old[-60:]
        else:  # the system message and the markup stay; the question loses its start
            assert after[0] == before[0] == {"role": "system", "content": "Answer with a number."}
            question, cut = before[1]["content"], after[1]["content"]
            assert question.endswith(cut) and len(cut) < len(question)
            assert new[-30:] == old[-30:]
    text = logged(caplog)
    assert (
        f"Truncated {long_train} of 8 training prompts to their last 60 tokens (max_prompt_length; " in text
    )
    assert "Truncated 4 of 4 held-out prompts to their last 60 tokens (max_prompt_length; " in text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"max_prompt_length": 1020},
            "max_prompt_length=1020 with max_completion_length=16 needs 1036 tokens, more than the model's context "
            "of 1024: set max_prompt_length to at most 1008, or generate fewer tokens.",
        ),
        (
            {"max_prompt_length": 1000, "heldout_max_new_tokens": 64, "max_completion_length": 8},
            "max_prompt_length=1000 with heldout_max_new_tokens=64 needs 1064 tokens, more than the model's context "
            "of 1024: set max_prompt_length to at most 960",
        ),
        (
            {"method": "sft", "max_prompt_length": 200, "max_length": 200},
            "max_prompt_length=200 leaves no room for the completion within max_length of 200 tokens: set "
            "max_prompt_length below 200.",
        ),
    ],
    ids=["GRPO completion", "held-out completion", "SFT max_length"],
)
def test_a_cap_that_leaves_no_room_for_the_answer_is_refused(fields, message, tiny_model, workdir, caplog):
    method = fields.pop("method", "grpo")
    write(recipe(tiny_model, method, **fields))
    assert main(["validate", "recipe.yaml"]) == 2
    (error,) = error_lines(caplog)
    assert message in error


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_prompt_length": 0}, "max_prompt_length must be a whole number of tokens, 1 or more; got 0."),
        ({"max_prompt_length": "long"}, "'long' is not a whole number"),
        ({"max_prompt_length": 80, "long_prompts": "cut"}, "'cut' is not one of refuse, drop, truncate"),
        ({"long_prompts": "truncate"}, "long_prompts: truncate needs max_prompt_length"),
        (
            {"max_prompt_length": 80, "image_column": "image"},
            "max_prompt_length counts text tokens, and a vision-language prompt's length depends on its images",
        ),
    ],
    ids=["zero", "not a number", "unknown mode", "mode without a cap", "images"],
)
def test_bad_values_are_refused_when_the_recipe_loads(
    fields, message, tiny_model, workdir, caplog, monkeypatch
):
    def no_data(*args, **kwargs):
        raise AssertionError("the data loaded: the recipe should have been refused first")

    monkeypatch.setattr("posttrain.train.load_recipe_splits", no_data)
    write(recipe(tiny_model, **fields))
    assert main(["validate", "recipe.yaml"]) == 2
    (error,) = error_lines(caplog)
    assert message in error


class ModelLoaded(Exception):
    """Raised instead of loading the model."""


@pytest.fixture()
def tokenizer_not_local(monkeypatch) -> list[str]:
    """The tokenizer is not on the machine before the run (an embedded model not converted yet): the preflight
    cannot count; ``train`` loads the tokenizer, then trips on the model load. Returns the models loaded."""
    loads: list[str] = []

    def load_model(*args, **kwargs):
        loads.append("model")
        raise ModelLoaded

    monkeypatch.setattr("posttrain.formatting.local_tokenizer_and_context", lambda *args, **kwargs: None)
    monkeypatch.setattr("posttrain.methods.families.load_model", load_model)
    return loads


def test_without_a_local_tokenizer_train_refuses_after_the_tokenizer_loads(
    tiny_model, workdir, caplog, tokenizer_not_local
):
    write(recipe(tiny_model, max_prompt_length=80))
    caplog.set_level(logging.INFO)
    assert main(["validate", "recipe.yaml"]) == 0  # nothing to count with yet, and validate says so
    assert "They are checked, and max_prompt_length applied, once the tokenizer loads" in logged(caplog)
    caplog.clear()
    assert main(["train", "recipe.yaml"]) == 2
    (error,) = error_lines(caplog)
    assert (
        "3 of 8 training prompts are longer than max_prompt_length=80 tokens (longest: row 7, 101 tokens)"
        in error
    )
    assert tokenizer_not_local == []  # refused before the model loads


def test_without_a_local_tokenizer_train_drops_before_the_model_loads(
    tiny_model, workdir, caplog, tokenizer_not_local
):
    write(recipe(tiny_model, max_prompt_length=92, long_prompts="drop"))
    caplog.set_level(logging.INFO)
    with pytest.raises(ModelLoaded):
        main(["train", "recipe.yaml"])
    text = logged(caplog)
    dropped = text.index("Dropped 3 of 8 training prompts longer than max_prompt_length=92 tokens")
    assert dropped > text.index("They are checked, and max_prompt_length applied, once the tokenizer loads")
    assert tokenizer_not_local == ["model"]


@pytest.mark.slow
def test_grpo_trains_on_the_truncated_prompts_when_the_tokenizer_loads_late(
    tiny_model, workdir, caplog, monkeypatch, tokenizer
):
    """End to end: the prompts TRL generates from (in the completion log) are the capped ones."""
    monkeypatch.setattr("posttrain.formatting.local_tokenizer_and_context", lambda *args, **kwargs: None)
    base = recipe(tiny_model, heldout_metric=None)
    train, _ = checked(base)
    # One step takes every prompt once: 16 completions, 2 per prompt.
    config = base | {
        "max_prompt_length": 80,
        "long_prompts": "truncate",
        "per_device_train_batch_size": 16,
        "max_completion_length": 4,
    }
    caplog.set_level(logging.INFO)
    assert main(["train", write(config)]) == 0
    assert "Truncated 3 of 8 training prompts to their last 80 tokens" in logged(caplog)
    rows = [json.loads(line) for line in Path("out/completions/completions.jsonl").read_text().splitlines()]
    prompts = {json.dumps(row["prompt"]) for row in rows}
    assert len(rows) == 16 and len(prompts) == 8
    lengths = sorted(len(trainer_ids(tokenizer, json.loads(p))) for p in prompts)
    assert lengths == sorted([min(n, 80) for n in TRAIN_TOKENS])
    assert len(prompts - {json.dumps(p) for p in train["prompt"]}) == 3  # the three long ones, cut
