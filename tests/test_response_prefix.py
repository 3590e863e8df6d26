"""response_prefix: the answer starts with fixed text that the model continues from and rewards score whole."""

from __future__ import annotations

import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from posttrain.configs import DataArguments
from posttrain.formatting import format_split, prefixed_chat_template
from posttrain.generation import render_prompts
from posttrain.recipe import RecipeError, load_recipe
from rewards.contract import RewardContractError, with_response_prefix
from rewards.registry import load_reward_functions
from tests.conftest import FIXTURES, REPO

USER = [{"role": "user", "content": "Which intent is 'play some jazz'?"}]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")


@pytest.mark.parametrize("prefix", ["<think>", "Answer: ", "\n{{ not jinja }} {% if %}"])
def test_prefixed_template_opens_the_answer_with_the_prefix(tokenizer, prefix):
    template = prefixed_chat_template(tokenizer, prefix)
    opened = tokenizer.apply_chat_template(
        USER, tokenize=False, add_generation_prompt=True, chat_template=template
    )
    continued = tokenizer.apply_chat_template(
        USER + [{"role": "assistant", "content": prefix}], tokenize=False, continue_final_message=True
    )
    assert opened == continued
    assert opened.endswith("<|im_start|>assistant\n" + prefix)
    # A finished conversation (what SFT and saved chats render) is untouched.
    done = USER + [{"role": "assistant", "content": "play music"}]
    assert tokenizer.apply_chat_template(done, tokenize=False, chat_template=template) == (
        tokenizer.apply_chat_template(done, tokenize=False)
    )


def test_template_with_text_after_the_generation_prompt_is_refused(tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}<end>"
    )
    with pytest.raises(ValueError, match="response_prefix '<think>'.*prompt_format: raw"):
        prefixed_chat_template(tokenizer, "<think>")


def test_tokenizer_without_a_chat_template_is_refused(tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="needs a single chat template"):
        prefixed_chat_template(tokenizer, "<think>")


def test_format_split_adds_the_prefix_column_and_ends_raw_prompts_with_it():
    rows = Dataset.from_list([{"text": "play some jazz"}, {"text": "book a table"}])
    chat = format_split(rows, DataArguments(prompt_template="{text}", response_prefix="<think>"))
    assert chat["response_prefix"] == ["<think>", "<think>"]
    assert chat[0]["prompt"] == [{"role": "user", "content": "play some jazz"}]
    raw = format_split(
        rows,
        DataArguments(prompt_template="Q: {text}\nA:", prompt_format="raw", response_prefix=" <think>"),
    )
    assert raw["prompt"] == ["Q: play some jazz\nA: <think>", "Q: book a table\nA: <think>"]
    plain = format_split(rows, DataArguments(prompt_template="{text}"))
    assert "response_prefix" not in plain.column_names
    with pytest.raises(ValueError, match="completion_template"):
        format_split(
            rows, DataArguments(prompt_template="{text}", response_prefix="<think>"), completion=True
        )


def test_render_prompts_writes_each_rows_prefix_after_the_generation_prompt(tokenizer):
    rows = Dataset.from_list([{"text": "play some jazz"}])
    formatted = format_split(rows, DataArguments(prompt_template="{text}", response_prefix="<think>"))
    (text,) = render_prompts(tokenizer, formatted)
    assert text.endswith("<|im_start|>assistant\n<think>")
    (plain,) = render_prompts(tokenizer, format_split(rows, DataArguments(prompt_template="{text}")))
    assert plain.endswith("<|im_start|>assistant\n")


def test_rewards_score_the_prefix_and_the_completion_together():
    (fmt, tags), _ = load_reward_functions(["cls_format", "cls_tags"])
    completions = ["it asks for music </think><answer>play music</answer>", "play music"]
    assert fmt(completions=completions) == [0.0, 0.0]
    prefixed = {"completions": completions, "response_prefix": ["<think>", "<think>"]}
    assert fmt(**prefixed) == [1.0, 0.0]
    assert tags(**prefixed) == [1.0, 0.25]
    chat = [[{"role": "assistant", "content": c}] for c in completions]
    assert fmt(completions=chat, response_prefix=["<think>", "<think>"]) == [1.0, 0.0]


def test_with_response_prefix_leaves_other_arguments_alone():
    kwargs = {"completions": ["a", "b"], "label": ["x", "y"]}
    assert with_response_prefix(kwargs) is kwargs
    assert with_response_prefix({**kwargs, "response_prefix": ["", ""]})["completions"] == ["a", "b"]
    changed = with_response_prefix({**kwargs, "response_prefix": ["<t>", ""]})
    assert changed["completions"] == ["<t>a", "b"] and changed["label"] == ["x", "y"]
    assert kwargs["completions"] == ["a", "b"]  # the caller's list is not modified
    with pytest.raises(RewardContractError, match="2 completions"):
        with_response_prefix({**kwargs, "response_prefix": ["<t>"]})


def test_sft_recipe_with_a_response_prefix_is_refused_before_loading():
    with pytest.raises(RecipeError, match="response_prefix is for methods that generate"):
        load_recipe(REPO / "recipes" / "cls_rl" / "sft_intent_cpu.yaml", ["--response_prefix", "<think>"])
