"""Data stages: the steps a method runs over its data before training (self-generated targets, judged answers,
refined documents, tags), run by one runner that shards, resumes and writes a dataset a recipe can name.

A method lists its :class:`Stage` records. :func:`run_stages` loads the recipe's training split (through its
data builder), and for each stage in turn:

- splits the rows by rank (``RANK``/``WORLD_SIZE``, as ``torchrun`` and ``accelerate launch`` set them): rank
  ``r`` of ``w`` takes the rows whose index is ``r`` modulo ``w``;
- runs the stage over them in batches and appends each batch's output rows, keyed by input index, to
  ``<stage_dir>/<stage>/part-rank<r>.jsonl``, flushed and synced batch by batch. A run killed at any point
  resumes where it stopped: rows already written are skipped, a torn last line is cut off, so nothing is lost
  or written twice;
- waits for every rank (a gloo barrier with a timeout, so a crashed rank is an error, not a hang), then rank 0
  merges the parts in index order into ``<stage_dir>/<stage>/train.jsonl`` and marks the stage complete.

The last stage's folder (with the source's test split copied beside it as ``test.jsonl``) is a dataset:
``posttrain train`` trains the method on it, and any recipe can name it as ``dataset_name``. The model loads
only when a stage that needs it has rows left to process. A stage folder remembers what produced it (method,
stage, data and model) and refuses to continue another run's rows.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from posttrain.data import load_recipe_splits, require_columns
from posttrain.errors import UserError
from posttrain.formatting import template_columns
from posttrain.generation import Sampling, make_engine, render_prompt
from posttrain.jsonl import read_jsonl
from posttrain.models import resolve_model_path
from posttrain.recipe import Recipe

logger = logging.getLogger(__name__)

PART = "part-rank{rank}.jsonl"
COMPLETE = "stage.json"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class Stage:
    """One data stage: ``run(rows, context)`` maps a batch of input rows to one output row each (None drops a
    row). ``uses_model`` says whether ``context.model``/``context.tokenizer`` are needed.

    ``reads(recipe)`` names the input columns the stage needs beyond the prompt template's, and ``writes`` maps
    each column it adds to an example value: before the stages have run (``posttrain validate``), the source
    data is checked for the first and given the second (:func:`with_stage_columns`), so that the checks see
    rows shaped as training will. ``summary(rows)``, given every output row once the stage is complete, returns
    statistics written to ``<stage folder>/summary.json`` and logged. ``settings(recipe)`` returns the recipe
    fields that decide what the stage writes (a judge, a selection rule): they join the stage's fingerprint, so
    that a stage folder written under other settings is refused rather than resumed."""

    name: str
    run: Callable[[list[dict[str, Any]], StageContext], list[dict[str, Any] | None]]
    uses_model: bool = False
    batch_size: int = 16
    description: str = ""
    reads: Callable[[Recipe], Iterable[str]] | None = None
    writes: Mapping[str, Any] = field(default_factory=dict)
    summary: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
    #: The recipe's settings that change what the stage writes (beyond the data, model and seed): a stage folder
    #: made with other settings is refused, not silently reused.
    settings: Callable[[Recipe], Mapping[str, Any]] | None = None


@dataclass
class StageContext:
    """What a stage may use: the recipe, this process's rank, and the recipe's model, loaded on first use,
    either for generation through the shared service (:meth:`generate`) or as the trainer would load it
    (:attr:`model`, :attr:`tokenizer`: for scoring, judging, embedding)."""

    recipe: Recipe
    rank: int = 0
    world_size: int = 1
    engine_name: str = "auto"
    dtype: str = "auto"
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    def generate(
        self, prompts: list[Any], sampling: Sampling, expected_rows: int | None = None
    ) -> list[list[str]]:
        """``sampling.n`` completions of each prompt (chat messages or strings) from the recipe's model.

        The engine (``engine_name``; 'auto' sizes it by ``expected_rows`` prompts) starts on the first call and
        serves every later batch. A prompt's samples depend on the seed and the prompt only, so a resumed stage
        writes the rows an uninterrupted one would."""
        if "engine" not in self._loaded:
            rows = expected_rows if expected_rows is not None else len(prompts)
            self._loaded["engine"] = make_engine(
                self.engine_name,
                resolve_model_path(self.recipe.model.model_name_or_path),
                expected_tokens=rows * sampling.n * sampling.max_new_tokens,
                dtype=self.dtype,
            )
        engine = self._loaded["engine"]
        return engine.generate([render_prompt(engine.tokenizer, p) for p in prompts], sampling)

    @property
    def tokenizer(self):
        if "tokenizer" not in self._loaded:
            self._loaded["tokenizer"] = self.recipe.method.family.load_tokenizer(self.recipe)
        return self._loaded["tokenizer"]

    @property
    def model(self):
        if "model" not in self._loaded:
            logger.info("Loading %s for the data stages", self.recipe.model.model_name_or_path)
            self._loaded["model"] = self.recipe.method.family.load_model(self.recipe)
        return self._loaded["model"]


class StageError(UserError, RuntimeError):
    """A stage that cannot run or resume; the message says what to do."""


def stage_root(recipe: Recipe) -> Path:
    return Path(recipe.recipe.stage_dir or Path(recipe.trainer.output_dir) / "stages")


def _fingerprint(recipe: Recipe, stage: Stage) -> str:
    """What produced a stage's rows: the method, the stage (and its settings), the data (and its builder) and the
    model."""
    parts = {
        "method": recipe.method.name,
        "stage": stage.name,
        "data": dataclasses.asdict(recipe.data),
        "builder": dataclasses.asdict(recipe.builder) if recipe.builder is not None else None,
        "model": recipe.model.model_name_or_path,
        "seed": recipe.trainer.seed,
    }
    if stage.settings is not None:
        parts["settings"] = dict(stage.settings(recipe))
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rank_and_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _barrier(world_size: int, timeout_s: float) -> None:
    """Wait for every rank; with one process there is nothing to wait for."""
    if world_size == 1:
        return
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout_s), wait_all_ranks=True)


def read_part(path: Path) -> dict[int, dict[str, Any] | None]:
    """Rows a rank has written, by input index; the file is repaired as :func:`posttrain.jsonl.read_jsonl` says."""
    return {record["index"]: record["row"] for record in read_jsonl(path)}


def _check_owner(folder: Path, fingerprint: str, stage: Stage) -> None:
    meta = folder / "owner.json"
    if meta.exists():
        owner = json.loads(meta.read_text())
        if owner.get("fingerprint") != fingerprint:
            raise StageError(
                f"{folder} holds rows of stage {stage.name!r} from a different run (its recipe, data or model differ: "
                f"{owner}). Delete the folder to start this stage over, or set stage_dir to a new folder."
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"fingerprint": fingerprint, "stage": stage.name}))


def run_stage(stage: Stage, rows: Dataset, folder: Path, context: StageContext, fingerprint: str) -> Path:
    """Run one stage over ``rows`` into ``folder`` (resuming what is there); returns the merged file."""
    merged = folder / "train.jsonl"
    complete = folder / COMPLETE
    rank, world = context.rank, context.world_size
    if complete.exists() and json.loads(complete.read_text()).get("fingerprint") == fingerprint:
        logger.info("Stage %s: complete in %s, skipped", stage.name, folder)
        return merged
    if rank == 0:
        _check_owner(folder, fingerprint, stage)
    _barrier(world, timeout_s=600)
    _check_owner(folder, fingerprint, stage)
    part = folder / PART.format(rank=rank)
    done = read_part(part)
    mine = [i for i in range(len(rows)) if i % world == rank and i not in done]
    if done:
        logger.info(
            "Stage %s: resuming, %d of %d rows already written", stage.name, len(done), len(done) + len(mine)
        )
    progress = tqdm(total=len(mine), desc=f"Stage {stage.name}", unit="row", disable=not mine)
    with part.open("a") as sink:
        for start in range(0, len(mine), stage.batch_size):
            indices = mine[start : start + stage.batch_size]
            batch = [rows[i] for i in indices]
            outputs = stage.run(batch, context)
            if len(outputs) != len(batch):
                raise StageError(
                    f"Stage {stage.name!r} returned {len(outputs)} rows for a batch of {len(batch)}; it must return "
                    "one row (or None) per input row."
                )
            for index, out in zip(indices, outputs, strict=True):
                sink.write(json.dumps({"index": index, "row": out}, ensure_ascii=False, default=str) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            progress.update(len(indices))
    progress.close()
    _barrier(world, timeout_s=24 * 3600)  # the slowest rank may still be generating
    if rank == 0:
        written: dict[int, dict[str, Any] | None] = {}
        for r in range(world):
            written.update(read_part(folder / PART.format(rank=r)))
        missing = sorted(set(range(len(rows))) - set(written))
        if missing:
            raise StageError(
                f"Stage {stage.name!r}: {len(missing)} rows have no output (e.g. {missing[:5]}); rerun."
            )
        kept = [written[i] for i in range(len(rows)) if written[i] is not None]
        staging = merged.with_suffix(".partial")
        with staging.open("w") as f:
            for row in kept:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        staging.replace(merged)
        if stage.summary is not None:
            stats = stage.summary(kept)
            (folder / SUMMARY).write_text(json.dumps(stats, indent=2, ensure_ascii=False, default=str))
            logger.info("Stage %s: %s", stage.name, json.dumps(stats, default=str))
        complete.write_text(
            json.dumps({"fingerprint": fingerprint, "rows": len(kept), "dropped": len(rows) - len(kept)})
        )
        logger.info(
            "Stage %s: %d rows written to %s (%d dropped)",
            stage.name,
            len(kept),
            merged,
            len(rows) - len(kept),
        )
    _barrier(world, timeout_s=600)
    return merged


def on_stage_output(recipe: Recipe, folder: Path) -> Recipe:
    """The recipe reading the stages' output: their folder is the dataset, already built and sampled."""
    data = dataclasses.replace(
        recipe.data,
        dataset_name=str(folder),
        dataset_config=None,
        data_builder=None,
        dataset_train_split="train",
        dataset_test_split="test",
        max_train_samples=None,
    )
    return dataclasses.replace(recipe, data=data, builder=None)


def run_stages(recipe: Recipe) -> Path:
    """Run the method's stages in order; returns the folder of the last one (a dataset with train and test)."""
    rank, world = _rank_and_world()
    splits = load_recipe_splits(recipe.data, recipe.builder, seed=recipe.trainer.seed)
    rows: Dataset = splits["train"]
    context = StageContext(recipe=recipe, rank=rank, world_size=world)
    root = stage_root(recipe)
    folder = root
    for stage in recipe.method.stages:
        folder = root / stage.name
        merged = run_stage(stage, rows, folder, context, _fingerprint(recipe, stage))
        rows = Dataset.from_json(str(merged)) if merged.stat().st_size else Dataset.from_list([])
    if rank == 0 and "test" in splits and not (folder / "test.jsonl").exists():
        splits["test"].to_json(str(folder / "test.jsonl"))
    _barrier(world, timeout_s=600)
    return folder


def with_stage_columns(recipe: Recipe, splits: DatasetDict) -> DatasetDict:
    """The source data as the method's stages will leave it, for checks made before they run.

    When the training split lacks a column some stage writes (the stages have not run: ``posttrain validate``),
    it is checked for the columns the stages read (the prompt template's and each stage's ``reads``) and gets
    every written column, filled with the stage's example value. Data that already has them (the stages' own
    output, which ``posttrain train`` reads) is returned as it is."""
    stages = recipe.method.stages
    written = {name: value for stage in stages for name, value in stage.writes.items()}
    train = splits.get("train")
    if not stages or train is None or all(name in train.column_names for name in written):
        return splits
    needed = set(template_columns(recipe.data.prompt_template))
    for stage in stages:
        if stage.reads is not None:
            needed |= set(stage.reads(recipe))
    needed -= set(written)
    require_columns(train, sorted(needed), what=f"the data stages of method {recipe.method.name!r}")
    for name, value in written.items():
        if name not in train.column_names:
            train = train.add_column(name, [value] * len(train))
    return DatasetDict({**splits, "train": train})
