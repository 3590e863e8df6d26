"""ProX refiner training data: the ``prox_programs`` data builder turns documents into requests (a document, or a
chunk of its numbered lines) with the program a teacher writes for each, as ``request`` and ``program`` columns
that an SFT recipe trains on (``prompt_template: "{request}"``, ``completion_template: "{program}"``).
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset, DatasetDict

from posttrain.data import require_columns
from posttrain.methods.prox.config import ProxProgramArguments
from posttrain.methods.prox.pipeline import HtmlToText, TokenCounter
from posttrain.methods.prox.program import chunk_lines, number_lines
from posttrain.methods.prox.teacher import (
    RuleTeacher,
    chunk_request,
    doc_request,
    gold_removals,
    removal_program,
)


def refiner_examples(rows: list[dict[str, Any]], fields: ProxProgramArguments) -> list[dict[str, Any]]:
    """One document-level example per row and one chunk-level example per chunk of each kept document."""
    count_tokens = TokenCounter(fields.prox_tokenizer)
    extractor = HtmlToText() if fields.prox_html_column else None
    teacher = RuleTeacher()
    examples = []
    for row in rows:
        text = extractor.extract(row[fields.prox_html_column]) if extractor else row[fields.prox_text_column]
        lines = text.split("\n")
        if fields.prox_teacher == "gold":
            doc_program, removed = "keep_doc()", set(gold_removals(lines, row[fields.prox_clean_column]))
        else:
            (doc_program,) = teacher.doc_programs([text])
            removed = {i for i, line in enumerate(lines) if teacher.line_removed(line)}
        examples.append(
            {"request": doc_request(text, fields.prox_doc_chars), "program": doc_program, "level": "document"}
        )
        if doc_program == "drop_doc()":
            continue
        for chunk in chunk_lines(lines, count_tokens, fields.prox_chunk_tokens):
            numbered = number_lines(lines[chunk.start : chunk.stop], start=chunk.start)
            program = removal_program([i for i in chunk if i in removed])
            examples.append({"request": chunk_request(numbered), "program": program, "level": "chunk"})
    return examples


def build_refiner_examples(
    splits: DatasetDict, fields: ProxProgramArguments, *, train_split: str = "train"
) -> DatasetDict:
    """Refiner examples for every split of ``splits`` (see :func:`refiner_examples`)."""
    needed = [fields.prox_html_column or fields.prox_text_column]
    if fields.prox_teacher == "gold":
        needed.append(fields.prox_clean_column)
    built = {}
    for name, split in splits.items():
        require_columns(split, needed, what=f"prox_programs (split {name!r})")
        built[name] = Dataset.from_list(refiner_examples(split.to_list(), fields))
    return DatasetDict(built)
