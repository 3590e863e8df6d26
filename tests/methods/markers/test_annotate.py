"""Each annotator on fixed inputs: lengths, buckets, natural and code language, metadata, quality quartiles and the
LLM tagger (its generation service faked, so the test checks what is asked and how answers map)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from posttrain.methods.markers.annotate import (
    AnnotationError,
    closest_choice,
    code_language,
    count_paragraphs,
    count_sentences,
    count_tokens,
    length_bucket,
    measure_markers,
    metadata_markers,
    natural_language,
    quality_bucket,
    quartile_edges,
    tag_rows,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")


def test_token_count_is_the_tokenizers(tokenizer):
    text = "Paris is the capital of France."
    assert count_tokens(text, tokenizer) == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert count_tokens("", tokenizer) == 0


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("", 0),
        ("Paris", 1),
        ("One. Two! Three?", 3),
        ("It costs 3.50 dollars. Then 2 more", 2),  # a decimal point ends no sentence
        ("Wait... what?! Yes.", 3),
        ("Here:\n```python\nx = 1. + 2.\nprint(x)\n```\nDone.", 2),  # code blocks are not prose
    ],
)
def test_sentences(text, sentences):
    assert count_sentences(text) == sentences


def test_paragraphs():
    assert count_paragraphs("") == 0
    assert count_paragraphs("one line\nsame paragraph") == 1
    assert count_paragraphs("first\n\nsecond\n   \nthird") == 3
    assert count_paragraphs("intro\n\n```python\na = 1\n\nb = 2\n```\n\nend") == 3  # the code block is one


@pytest.mark.parametrize(
    ("tokens", "bucket"),
    [
        (0, "tiny"),
        (15, "tiny"),
        (16, "short"),
        (63, "short"),
        (64, "medium"),
        (255, "medium"),
        (256, "long"),
        (5000, "long"),
    ],
)
def test_length_bucket_edges(tokens, bucket):
    assert length_bucket(tokens, (16, 64, 256)) == bucket


def test_natural_language():
    pytest.importorskip("py3langid", reason="py3langid is a dependency; bash scripts/setup.sh installs it")
    assert natural_language("The cat sat on the mat and looked out of the window at the rain.") == "en"
    assert natural_language("Le chat est assis sur le tapis et regarde la pluie par la fenêtre.") == "fr"
    assert natural_language("Die Katze sitzt auf der Matte und schaut aus dem Fenster in den Regen.") == "de"
    assert natural_language("#### 42") is None  # nothing to tell a language from
    # the prose decides, not the code
    assert (
        natural_language(
            "Voici la réponse que vous cherchez :\n```python\ndef add(a, b):\n    return a + b\n```"
        )
        == "fr"
    )


def test_code_language():
    assert code_language("no code here") is None
    assert code_language("```python\nprint(1)\n```") == "Python"
    assert code_language("```js\nconsole.log(1)\n```") == "js"
    # no tag: Pygments guesses from the code
    assert code_language("```\n#!/usr/bin/env python\nimport os\nprint(os.getcwd())\n```") == "Python"


def test_measure_markers_only_the_named_ones(tokenizer):
    text = "Two sentences. Here.\n\nSecond paragraph."
    tokens = count_tokens(text, tokenizer)
    assert measure_markers(
        text,
        tokenizer,
        ["length_tokens", "length_sentences", "length_paragraphs", "length_bucket"],
        (4, 8, 100),
    ) == {
        "length_tokens": tokens,
        "length_sentences": 3,
        "length_paragraphs": 2,
        "length_bucket": length_bucket(tokens, (4, 8, 100)),
    }
    # no code, so no code_language marker
    assert measure_markers(text, tokenizer, ["code_language"], (4, 8, 100)) == {}


def test_metadata_markers():
    row = {"domain": "Math", "task": "", "source": "gsm_symbolic", "audience": "kids", "format": None}
    assert metadata_markers(row, ["domain", "task", "format"], []) == {"domain": "Math"}
    assert metadata_markers(row, ["source"], ["audience"]) == {"source": "gsm_symbolic", "audience": "kids"}
    with pytest.raises(AnnotationError, match="no 'level' column"):
        metadata_markers(row, [], ["level"])


def test_quality_quartiles():
    scores = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert quartile_edges(scores) == [2.0, 4.0, 6.0]
    assert [quality_bucket(s, [2.0, 4.0, 6.0]) for s in scores] == [1, 1, 1, 2, 2, 3, 3, 4, 4]
    assert quartile_edges([5.0]) == [5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("answer", "choice"),
    [
        ("Math", "Math"),
        (" code.", "Code"),
        ("It is General knowledge", "General knowledge"),
        ("general", "General knowledge"),
        ("Sports", None),
        ("", None),
    ],
)
def test_tagger_answers_map_to_a_choice(answer, choice):
    assert closest_choice(answer, ["Math", "Code", "General knowledge"]) == choice


def test_tagger_asks_the_generation_service_greedily():
    asked = []

    def generate(prompts, sampling):
        asked.append((prompts, sampling))
        return [["Code"], ["I think Math."], ["???"]]

    context = SimpleNamespace(
        recipe=SimpleNamespace(trainer=SimpleNamespace(tagger_max_new_tokens=5, seed=3)), generate=generate
    )
    tags = tag_rows(
        context, ["write f", "2+2", "hm"], ["def f(): pass", "4", "x"], "domain", ["Math", "Code"]
    )
    assert tags == ["Code", "Math", None]
    prompts, sampling = asked[0]
    assert sampling.greedy and sampling.max_new_tokens == 5 and sampling.seed == 3
    assert prompts[0][0]["role"] == "user"
    assert "Request: write f" in prompts[0][0]["content"] and "one of: Math, Code" in prompts[0][0]["content"]
    assert json.dumps(prompts)  # chat messages the service renders
