"""ProX refiner training examples: one document request per row, one chunk request per chunk of a kept document,
with the teacher's program as the target."""

from __future__ import annotations

import pytest

from posttrain.data import load_registered
from posttrain.methods.prox.config import ProxProgramArguments
from posttrain.methods.prox.data import refiner_examples
from posttrain.methods.prox.program import CHUNK_FUNCTIONS, DOC_FUNCTIONS, parse_program
from posttrain.methods.prox.teacher import RuleTeacher, doc_request, numbered_lines


def test_rule_examples(offline_cache, tiny_model):
    rows = load_registered("text_quality")["train"].to_list()[:20]
    fields = ProxProgramArguments(prox_tokenizer=str(tiny_model), prox_chunk_tokens=128, prox_doc_chars=300)
    examples = refiner_examples(rows, fields)
    docs = [e for e in examples if e["level"] == "document"]
    chunks = [e for e in examples if e["level"] == "chunk"]
    assert [e["request"] for e in docs] == [doc_request(r["text"], 300) for r in rows]
    assert [e["program"] for e in docs] == RuleTeacher().doc_programs([r["text"] for r in rows])
    kept = [r for r, e in zip(rows, docs, strict=True) if e["program"] == "keep_doc()"]
    # Every line of every kept document appears in exactly one chunk request, in order.
    numbers = [n for e in chunks for n, _ in numbered_lines(e["request"].split("\n\n", 1)[1])]
    assert len(numbers) == sum(len(r["text"].split("\n")) for r in kept)
    for example in examples:  # every target parses back with no malformed call
        functions = DOC_FUNCTIONS if example["level"] == "document" else CHUNK_FUNCTIONS
        assert parse_program(example["program"], functions).malformed == ()


def test_gold_examples_remove_what_the_clean_text_lacks(offline_cache, tiny_model):
    page = load_registered("news_pages")["train"][0]
    fields = ProxProgramArguments(
        prox_teacher="gold",
        prox_html_column="html",
        prox_clean_column="clean_text",
        prox_tokenizer=str(tiny_model),
        prox_chunk_tokens=256,
    )
    examples = refiner_examples([page], fields)
    assert examples[0]["program"] == "keep_doc()"
    removed = [c for e in examples[1:] for c in parse_program(e["program"], CHUNK_FUNCTIONS).calls]
    assert any(c.name == "remove_lines" for c in removed)


def test_bad_builder_fields_are_refused():
    with pytest.raises(ValueError, match="prox_teacher must be"):
        ProxProgramArguments(prox_teacher="llm")
    with pytest.raises(ValueError, match="needs prox_clean_column"):
        ProxProgramArguments(prox_teacher="gold")
