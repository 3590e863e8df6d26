"""ProX's corpus pipeline on datatrove: documents in, a programmer writes each document's programs, the executor
applies them, refined documents out, with the executed programs kept as metadata.

Documents come from a JSONL or Parquet file or folder, a ``datasets`` source or a registered dataset, read by
datatrove's ``HuggingFaceDatasetReader`` (rows shard across tasks by index); raw HTML is turned into text first
(inscriptis, inside datatrove's extractor sandbox with its per-document timeout). Datatrove runs the tasks: here
with its local executor (``tasks`` shards, ``workers`` processes), and the same steps run under its Slurm or Ray
executors across nodes. Each task writes ``<output>/<rank>.jsonl`` (kept documents) and
``<output>/dropped/<rank>.jsonl``; a task that did not finish (killed, or failed) has no completion mark and is
run again from the start of its shard on the next run, rewriting its files, so nothing is lost or duplicated.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.extractors.base import BaseExtractor
from datatrove.pipeline.readers import HuggingFaceDatasetReader
from datatrove.pipeline.writers import JsonlWriter

from posttrain.data import prepare_registered, registered_datasets
from posttrain.methods.prox.program import apply_programs, chunk_lines, number_lines
from posttrain.methods.prox.teacher import Programmer
from posttrain.models import resolve_model_path

logger = logging.getLogger(__name__)


class TokenCounter:
    """Counts tokens with a model's tokenizer, loaded on first use (in the worker, not pickled with the step)."""

    def __init__(self, model_name_or_path: str):
        self.model_name_or_path = model_name_or_path
        self._tokenizer: Any = None

    def __getstate__(self) -> dict:
        return {"model_name_or_path": self.model_name_or_path, "_tokenizer": None}

    def __call__(self, text: str) -> int:
        if self._tokenizer is None:
            from transformers import AutoTokenizer  # heavy; loaded once per worker

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self.model_name_or_path))
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])


class HtmlToText(BaseExtractor):
    """Raw HTML to text with inscriptis, which keeps the page's layout as lines (navigation, banners and footers
    included: removing those is the refiner's job)."""

    name = "⛏ inscriptis"

    def __init__(self, timeout: float = 30):
        super().__init__(timeout)

    def extract(self, text: str) -> str:
        from inscriptis import get_text  # imported in the extractor's sandbox process

        lines = [line.rstrip() for line in get_text(text).split("\n")]
        return "\n".join(line for line in lines if line.strip())


def _stable_id(reader: Any, data: dict, path: str, id_in_file: int | str) -> dict:
    """datatrove's default row-to-document mapping, except that a row without an id gets one from its text, so
    a document keeps its id however the rows are sharded (datatrove's default numbers rows within a shard)."""
    text = data.get(reader.text_key, "")
    if reader.id_key not in data:
        data[reader.id_key] = hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]
    return reader._default_adapter(data, path, id_in_file)


def _batches(items: Iterable[Document], size: int) -> Iterable[list[Document]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class ProxRefine(PipelineStep):
    """Refines each document with its programs: the document program first, then, for a kept document, one program
    per chunk of numbered lines (at most ``chunk_tokens`` tokens a chunk). Documents are batched, so that a model
    programmer generates for ``batch_size`` documents or chunks at once. Dropped documents go to
    ``exclusion_writer`` when one is given."""

    name = "✂️ ProX refine"
    type = "🔻 - FILTER"

    def __init__(
        self,
        programmer: Programmer,
        count_tokens: Callable[[str], int],
        *,
        chunk_tokens: int = 1_500,
        batch_size: int = 32,
        exclusion_writer: JsonlWriter | None = None,
    ):
        super().__init__()
        self.programmer = programmer
        self.count_tokens = count_tokens
        self.chunk_tokens = chunk_tokens
        self.batch_size = batch_size
        self.exclusion_writer = exclusion_writer

    def refine(self, documents: list[Document]) -> list[bool]:
        """Refine ``documents`` in place (text and ``metadata["prox"]``); whether each is kept."""
        texts = [doc.text for doc in documents]
        doc_programs = self.programmer.doc_programs(texts)
        ranges: list[list[range]] = []
        for text, doc_program in zip(texts, doc_programs, strict=True):
            lines = text.split("\n")
            kept = (
                doc_program.strip() != "drop_doc()"
            )  # the executor decides; this only skips needless chunks
            ranges.append(chunk_lines(lines, self.count_tokens, self.chunk_tokens) if kept else [])
        chunk_texts = [
            number_lines(text.split("\n")[r.start : r.stop], start=r.start)
            for text, doc_ranges in zip(texts, ranges, strict=True)
            for r in doc_ranges
        ]
        chunk_programs = iter(self.programmer.chunk_programs(chunk_texts) if chunk_texts else [])
        kept_flags = []
        for doc, doc_program, doc_ranges in zip(documents, doc_programs, ranges, strict=True):
            programs = [next(chunk_programs) for _ in doc_ranges]  # none for a document dropped whole
            result = apply_programs(doc.text, doc_program, doc_ranges, programs)
            doc.metadata["prox"] = result.metadata()
            self.stat_update("malformed_calls", value=len(result.malformed))
            self.stat_update("removed_lines", value=result.removed_lines)
            if result.kept:
                doc.text = result.text
            kept_flags.append(result.kept)
        return kept_flags

    def run(self, data: Iterable[Document], rank: int = 0, world_size: int = 1) -> Iterable[Document]:
        writer = self.exclusion_writer.__enter__() if self.exclusion_writer else None
        try:
            for batch in _batches(data, self.batch_size):
                with self.track_time(unit="batch"):
                    kept = self.refine(batch)
                for doc, keep in zip(batch, kept, strict=True):
                    self.stat_update("kept" if keep else "dropped")
                    if keep:
                        self.update_doc_stats(doc)
                        yield doc
                    elif writer is not None:
                        writer.write(doc, rank)
        finally:
            if writer is not None:
                writer.close()


@dataclass(frozen=True)
class CorpusSource:
    """Where documents come from: a ``.jsonl``/``.json``/``.parquet`` file or folder, or a registered or
    ``datasets`` dataset name, with its split and the column holding the text (or the HTML)."""

    path_or_name: str
    split: str = "train"
    text_key: str = "text"
    id_key: str | None = None

    def reader(self, limit: int = -1) -> HuggingFaceDatasetReader:
        target = self.path_or_name
        options: dict[str, Any] = {"split": self.split}
        if target in registered_datasets():
            target = str(prepare_registered(target) / f"{self.split}.jsonl")
            options["split"] = "train"
        path = Path(target)
        if path.exists():
            suffix = (next(path.rglob("*.*")) if path.is_dir() else path).suffix.lstrip(".")
            kind = {"jsonl": "json", "json": "json", "parquet": "parquet"}.get(suffix)
            if kind is None:
                raise ValueError(f"{target}: ProX reads .jsonl, .json or .parquet documents, not .{suffix}")
            options["data_files"] = str(path / f"*.{suffix}") if path.is_dir() else str(path)
            options["split"] = "train"
            target = kind
        return HuggingFaceDatasetReader(
            target,
            dataset_options=options,
            text_key=self.text_key,
            id_key=self.id_key or "id",
            limit=limit,
            adapter=_stable_id,
        )


def refine_corpus(
    source: CorpusSource,
    output_dir: str | Path,
    programmer: Programmer,
    count_tokens: Callable[[str], int],
    *,
    html: bool = False,
    tasks: int = 1,
    workers: int = 1,
    chunk_tokens: int = 1_500,
    batch_size: int = 32,
    limit: int = -1,
    logging_dir: str | Path | None = None,
) -> LocalPipelineExecutor:
    """Run the pipeline on this machine with datatrove's local executor: ``tasks`` shards over ``workers``
    processes. Runs again skip the tasks already completed (see the module docstring). Returns the executor
    (its ``logging_dir`` holds datatrove's stats and completion marks)."""
    output = Path(output_dir)
    steps: list[PipelineStep] = [source.reader(limit)]
    if html:
        steps.append(HtmlToText(timeout=30))
    steps += [
        ProxRefine(
            programmer,
            count_tokens,
            chunk_tokens=chunk_tokens,
            batch_size=batch_size,
            exclusion_writer=JsonlWriter(
                str(output / "dropped"), output_filename="${rank}.jsonl", compression=None
            ),
        ),
        JsonlWriter(str(output / "kept"), output_filename="${rank}.jsonl", compression=None),
    ]
    executor = LocalPipelineExecutor(
        steps,
        tasks=tasks,
        workers=workers,
        logging_dir=str(logging_dir or output / "logs"),
        start_method="fork",
    )
    executor.run()
    return executor
