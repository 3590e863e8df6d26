"""Refine a corpus with ProX from a YAML file: the rule teacher or a trained refiner writes every document's
programs, and the datatrove pipeline (:func:`posttrain.methods.prox.pipeline.refine_corpus`) applies them.

    posttrain refine recipes/refine/prox_text_quality_rules.yaml [--workers 2 ...]
    python -m posttrain.methods.prox.refine recipes/refine/prox_text_quality_rules.yaml (the same)

Unknown keys and wrong values are refused before anything runs, as recipes are. The output folder gets
``kept/``, ``dropped/``, datatrove's ``logs/`` and ``summary.json`` (documents and words in and out).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from posttrain.errors import UserError
from posttrain.methods.prox.pipeline import CorpusSource, TokenCounter, refine_corpus
from posttrain.methods.prox.refiner import ModelRefiner
from posttrain.methods.prox.teacher import RuleTeacher
from posttrain.parsing import parse_dataclasses, read_yaml
from posttrain.recipe import model_reference_errors

logger = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m-instruct"


@dataclass
class RefineArguments:
    """What to refine, with which programmer, and how to spread the work."""

    source: str = field(
        metadata={"help": "Documents: a .jsonl/.json/.parquet file or folder, or a registered dataset name."}
    )
    output_dir: str = field(metadata={"help": "Folder for kept/, dropped/, logs/ and summary.json."})
    split: str = field(default="train", metadata={"help": "Split of a registered dataset."})
    text_column: str = field(default="text", metadata={"help": "Column holding each document (or its HTML)."})
    id_column: str | None = field(
        default=None, metadata={"help": "Column holding document ids; by default ids come from the text."}
    )
    html: bool = field(
        default=False, metadata={"help": "The text column holds raw HTML: turn it into text first."}
    )
    programmer: str = field(
        default="rules",
        metadata={
            "help": "'rules' (the rule teacher) or a trained refiner: a model folder or registered name."
        },
    )
    engine: str = field(
        default="auto", metadata={"help": "Generation engine of a model refiner: auto, vllm or hf."}
    )
    max_new_tokens: int = field(
        default=96, metadata={"help": "Most tokens a model refiner writes per program."}
    )
    doc_chars: int = field(
        default=2_000,
        metadata={"help": "Characters of a document a model refiner sees (as in its training)."},
    )
    chunk_tokens: int = field(default=1_500, metadata={"help": "Most tokens of numbered lines in one chunk."})
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Tokenizer sizing the chunks; by default the refiner's, or the embedded one."},
    )
    tasks: int = field(default=1, metadata={"help": "Shards (datatrove tasks)."})
    workers: int = field(default=1, metadata={"help": "Processes running the shards on this machine."})
    batch_size: int = field(
        default=32, metadata={"help": "Documents a model refiner writes programs for at once."}
    )
    limit: int = field(default=-1, metadata={"help": "Documents read per shard (-1: all)."})

    def __post_init__(self):
        if self.tasks < 1 or self.workers < 1 or self.batch_size < 1 or self.chunk_tokens < 1:
            raise ValueError("tasks, workers, batch_size and chunk_tokens must be at least 1.")


def parse_refine(argv: list[str]) -> RefineArguments:
    if not argv or argv[0].startswith("-"):
        raise UserError("usage: posttrain refine CONFIG.yaml [--field value ...]")
    path = Path(argv[0])
    (args,) = parse_dataclasses(read_yaml(path), argv[1:], (RefineArguments,), str(path))
    return args


def _counts(folder: Path) -> tuple[int, int, int]:
    """Documents in ``folder``'s shards, their words before refinement and after."""
    documents = before = after = 0
    for part in sorted(folder.glob("*.jsonl")):
        for line in part.open(encoding="utf-8"):
            prox = json.loads(line)["metadata"]["prox"]
            documents, before, after = (
                documents + 1,
                before + prox["words_before"],
                after + prox["words_after"],
            )
    return documents, before, after


def _check_programmer(programmer: str) -> None:
    """A trained refiner must be there (a local folder, an embedded name or a hub id), checked before any work."""
    errors = model_reference_errors(programmer, "programmer")
    if errors:
        raise UserError(
            " ".join(errors),
            hint="train the refiner first (posttrain train recipes/prox/refiner_rules_cpu.yaml writes "
            "outputs/prox-refiner-rules-cpu) and point programmer at its output_dir, or set programmer: rules.",
        )


def run_refine(args: RefineArguments) -> dict:
    """Refine as ``args`` says; returns (and writes to ``summary.json``) documents and words kept and dropped."""
    if args.programmer == "rules":
        programmer = RuleTeacher()
    else:
        _check_programmer(args.programmer)
        programmer = ModelRefiner(
            args.programmer, engine=args.engine, max_new_tokens=args.max_new_tokens, doc_chars=args.doc_chars
        )
    tokenizer = args.tokenizer or (EMBEDDED if args.programmer == "rules" else args.programmer)
    output = Path(args.output_dir)
    refine_corpus(
        CorpusSource(args.source, split=args.split, text_key=args.text_column, id_key=args.id_column),
        output,
        programmer,
        TokenCounter(tokenizer),
        html=args.html,
        tasks=args.tasks,
        workers=args.workers,
        chunk_tokens=args.chunk_tokens,
        batch_size=args.batch_size,
        limit=args.limit,
    )
    kept_docs, kept_before, kept_after = _counts(output / "kept")
    dropped_docs, dropped_before, _ = _counts(output / "dropped")
    words_in = kept_before + dropped_before
    summary = {
        "settings": asdict(args),
        "documents_in": kept_docs + dropped_docs,
        "documents_kept": kept_docs,
        "words_in": words_in,
        "words_kept": kept_after,
        "word_retention": kept_after / words_in if words_in else None,
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    logger.info(
        "ProX: kept %d of %d documents and %d of %d words; summary in %s",
        kept_docs,
        kept_docs + dropped_docs,
        kept_after,
        words_in,
        output / "summary.json",
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_refine(parse_refine(sys.argv[1:] if argv is None else argv))
    except UserError as err:
        logger.error("error: %s", err)
        if err.hint:
            logger.error("hint: %s", err.hint)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
