"""`posttrain eval`: generate n samples per prompt for one or several models, score them with registry
rewards, and summarise (mean reward, pass@k, maj@k, mean@k, and calibration when answers state a confidence).

Samples are appended to ``samples[.rankR].jsonl`` as they are scored, so an interrupted run resumes where it
stopped: prompts already written are skipped, and the summary is computed from the file, without duplicates
or gaps. A prompt's samples are seeded by the seed, its text and the sample index only (see
:mod:`posttrain.generation`), and prompts are generated in chunks fixed by their position, so a resumed run
writes the rows an uninterrupted one writes. Another chunk size or number of processes draws the same random
numbers too, but batches differently, which changes some samples through floating-point noise (rarely in
float32, often in bfloat16: see :mod:`posttrain.generation`).

Processes split the prompts by ``RANK``/``WORLD_SIZE`` (data parallel, launched by ``torchrun`` or
``accelerate launch``, which also set the rendezvous ``MASTER_ADDR``/``MASTER_PORT``). They meet in a gloo
process group: rank 0 gathers every rank's rows and writes the summary. A rank that crashes closes its
connections and the others fail at once with an error; ``rank_timeout_minutes`` bounds the wait for a rank that
hangs.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from eval.answer_confidence import COMBINATIONS, answer_text, answer_token_probabilities, combine
from eval.calibration import parse_confidence
from eval.metrics import vote_answer
from eval.summary import summarize_samples, write_comparison, write_json
from posttrain.configs import DataArguments
from posttrain.data import (
    DataError,
    check_dataset_reference,
    load_dataset_for,
    require_columns,
    resolve_data_path,
)
from posttrain.formatting import format_split, template_columns
from posttrain.generation import ENGINES, Sampling, make_engine, release_engine, render_prompts
from posttrain.models import merge_adapter, resolve_model_path
from posttrain.parsing import RecipeError, data_sections, parse_dataclasses
from rewards.contract import score_completions
from rewards.registry import load_reward_functions, parse_reward_spec, reward_required_columns

logger = logging.getLogger(__name__)


@dataclass
class EvalArguments:
    """What to evaluate and how; dataset fields come from the recipe's DataArguments."""

    model_name_or_path: str = field(
        default="", metadata={"help": "Model to evaluate: an embedded name, a local checkpoint or a hub id."}
    )
    adapter_path: str | None = field(
        default=None,
        metadata={"help": "A PEFT adapter on top of model_name_or_path (merged before generation)."},
    )
    models: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Several models to compare, each a model reference; in YAML an entry may be a mapping "
            "{model, adapter, label}. Replaces model_name_or_path."
        },
    )
    scorers: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Rewards from the registry (or module:function / file.py:function) to score samples."
        },
    )
    threshold: float = field(
        default=0.5,
        metadata={
            "help": "A sample counts as correct (pass@k, maj@k, calibration) when the first "
            "scorer gives it at least this."
        },
    )
    answer_parser: str = field(
        default="text",
        metadata={
            "help": "How maj@k reads an answer: 'number' (the final number), 'text' (the answer before a stated "
            "confidence, normalised as qa_contains compares), 'none'."
        },
    )
    confidence: bool = field(
        default=False,
        metadata={"help": "Parse a stated 'Confidence: X' from each sample and report ECE, Brier and AUROC."},
    )
    confidence_cue: str | None = field(
        default=None,
        metadata={
            "help": "With confidence: after each answer (the sample before any confidence it states), write a new "
            "line and this cue, and let the model continue it greedily for confidence_max_new_tokens tokens; the "
            "confidence is read from the cue and its continuation. E.g. 'Confidence (0-9): ' for a ConfTuner model "
            "on a tokenizer with the 0..9 scale. None: the confidence the sample states itself."
        },
    )
    confidence_max_new_tokens: int = field(
        default=4, metadata={"help": "New tokens after confidence_cue (the number and a little more)."}
    )
    logit_confidence: str | None = field(
        default=None,
        metadata={
            "help": "Also report calibration of a confidence that needs no training: the probability the model "
            "gives its own answer, teacher-forced, as the 'mean' of the answer tokens' probabilities or their "
            "'product'. Reported as logit_ece, logit_brier, logit_auroc. None: not computed."
        },
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Evaluate a fixed, seeded subset of this many prompts."}
    )
    group_by: str | None = field(
        default=None,
        metadata={
            "help": "A dataset column; the summary also reports every metric per value of it (e.g. class_group "
            "for base and new classes, or label for per-class accuracy)."
        },
    )
    n: int = field(default=1, metadata={"help": "Samples per prompt."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature; 0 is greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=128, metadata={"help": "Maximum new tokens per sample."})
    seed: int = field(
        default=0,
        metadata={"help": "Sampling seed; with a prompt's text and sample index it seeds each sample."},
    )
    engine: str = field(
        default="auto",
        metadata={
            "help": "'vllm', 'hf', or 'auto' (vLLM when it is installed and the job is large enough to repay its "
            "start-up, HF generation otherwise)."
        },
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "Generation dtype: 'auto' (bfloat16 where the GPU or CPU computes it natively, else float32), "
            "'bfloat16', 'float16' or 'float32'."
        },
    )
    tensor_parallel_size: int = field(
        default=1, metadata={"help": "vLLM tensor parallelism (GPUs per engine)."}
    )
    chunk_size: int = field(
        default=32,
        metadata={
            "help": "Prompts per generation call; results are written after each chunk. Chunks are fixed by "
            "position, so a resumed run with the same chunk size batches as the first run did."
        },
    )
    inference: str | None = field(
        default=None,
        metadata={
            "help": "A method's inference mode: 'package.module:factory', or a mapping {name, kwargs}, naming a "
            "function that returns a hook with prompt(prompt, row) -> prompt (what is sent) and answer(text) -> "
            "(answer, record) (what is scored; samples.jsonl keeps the raw output and the record). E.g. "
            "{name: posttrain.methods.markers.inference:markers_mode, kwargs: {mode: fixed, markers: "
            "{length_bucket: short}}}. None: prompts and answers as they are."
        },
    )
    output_dir: str = field(default="outputs/eval", metadata={"help": "Where samples and the summary go."})
    rank_timeout_minutes: float = field(
        default=360.0,
        metadata={
            "help": "With several processes: how long one waits for the others (a crashed rank fails the others "
            "at once; this bounds a hung one)."
        },
    )

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be 'auto', 'vllm' or 'hf', got {self.engine!r}.")
        if self.answer_parser not in ("number", "text", "none"):
            raise ValueError(f"answer_parser must be 'number', 'text' or 'none', got {self.answer_parser!r}.")
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        if self.n > 1 and self.temperature == 0:
            raise ValueError(f"n={self.n} samples at temperature 0 are identical; set temperature > 0.")
        if self.confidence_cue is not None and not self.confidence:
            raise ValueError(
                "confidence_cue asks for a confidence after each answer: also set confidence: true."
            )
        if self.confidence_max_new_tokens < 1:
            raise ValueError(
                f"confidence_max_new_tokens must be at least 1, got {self.confidence_max_new_tokens}."
            )
        if self.logit_confidence is not None and self.logit_confidence not in COMBINATIONS:
            raise ValueError(
                f"logit_confidence must be one of {', '.join(COMBINATIONS)} (or null), got {self.logit_confidence!r}."
            )


def load_inference_hook(spec: Any) -> Any:
    """The hook an ``inference`` entry names (see :class:`EvalArguments`), built with its kwargs; a bad entry is a
    ValueError that says what to write."""
    if spec is None:
        return None
    entry = {"name": spec} if isinstance(spec, str) else dict(spec)
    name, kwargs = entry.get("name"), entry.get("kwargs") or {}
    if not isinstance(name, str) or set(entry) - {"name", "kwargs"} or not isinstance(kwargs, dict):
        raise ValueError(f"inference is 'package.module:factory' or {{name, kwargs}}, got {spec!r}.")
    module, _, attribute = name.partition(":")
    if not attribute:
        raise ValueError(f"inference {name!r} names no factory: write 'package.module:factory'.")
    try:
        factory = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"inference {name!r} does not load: {err}") from err
    try:
        hook = factory(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"inference {name!r} with kwargs {kwargs}: {err}") from err
    if not callable(getattr(hook, "answer", None)):
        raise ValueError(f"inference {name!r} returned {hook!r}, which has no answer(text) method.")
    return hook


def apply_inference_prompts(dataset: Any, hook: Any) -> Any:
    """The dataset with each prompt as the hook sends it (unchanged when the hook has no ``prompt``)."""
    if hook is None or not callable(getattr(hook, "prompt", None)):
        return dataset
    return dataset.map(lambda row: {"prompt": hook.prompt(row["prompt"], row)}, desc="Inference-mode prompts")


@dataclass(frozen=True)
class ModelSpec:
    model: str
    adapter: str | None
    label: str


def model_specs(args: EvalArguments) -> list[ModelSpec]:
    entries: list[Any] = list(args.models) or (
        [{"model": args.model_name_or_path, "adapter": args.adapter_path}] if args.model_name_or_path else []
    )
    if not entries:
        raise ValueError("Name a model: model_name_or_path, or models for a comparison.")
    specs = []
    for entry in entries:
        entry = {"model": entry} if isinstance(entry, str) else dict(entry)
        unknown = set(entry) - {"model", "adapter", "label"}
        if unknown or "model" not in entry:
            raise ValueError(
                f"A models entry is a model reference or {{model, adapter, label}}, got {entry!r}."
            )
        label = entry.get("label") or Path(str(entry.get("adapter") or entry["model"])).name
        specs.append(ModelSpec(str(entry["model"]), entry.get("adapter"), label))
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Model labels must differ, got {labels}; set 'label' in the models entries.")
    return specs


@dataclass(frozen=True)
class Ranks:
    """This process's place among an evaluation's processes, and the gloo group they meet in."""

    rank: int = 0
    world: int = 1
    group: Any = None  # a ProcessGroupGloo of the evaluation's own when world > 1
    timeout_minutes: float = 0.0


_groups = itertools.count()  # every process opens its groups in the same order, so the names agree


@contextmanager
def rank_group(timeout_minutes: float, *, distributed: bool = True) -> Iterator[Ranks]:
    """The processes of a data-parallel evaluation, from ``RANK``/``WORLD_SIZE``, joined in a gloo group.

    The group is the evaluation's own, met through the rendezvous store that torchrun/accelerate's
    ``MASTER_ADDR``/``MASTER_PORT`` describe; torch.distributed's default group is left alone, so a training
    job's group, or the one an in-process vLLM engine creates, neither serves nor disturbs it. With
    ``distributed=False`` or one process, no group: this process evaluates every prompt.
    """
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if not distributed or world == 1:
        yield Ranks()
        return
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={world} but {' and '.join(missing)} unset: launch the processes with torchrun or "
            "accelerate launch, which set the rendezvous, or set it yourself."
        )
    timeout = timedelta(minutes=timeout_minutes)
    store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world, timeout=timeout))
    name = f"posttrain-eval/{next(_groups)}"
    group = dist.ProcessGroupGloo(dist.PrefixStore(name, store), rank, world, timeout)
    yield Ranks(rank, world, group, timeout_minutes)


def gather_rows(rows: dict[int, dict], ranks: Ranks) -> list[dict[int, dict]] | None:
    """Every rank's rows, on rank 0 (``None`` on the others), once all ranks have generated theirs."""
    if ranks.world == 1:
        return [rows]
    text = json.dumps(list(rows.values()), allow_nan=False)
    payload = torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8)
    try:
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(ranks.world)]
        ranks.group.allgather([sizes], [torch.tensor([payload.numel()])]).wait()
        longest = max(int(size) for size in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8)
        padded[: payload.numel()] = payload
        options = dist.GatherOptions()
        options.rootRank = 0
        parts = (
            [torch.empty(longest, dtype=torch.uint8) for _ in range(ranks.world)] if ranks.rank == 0 else []
        )
        ranks.group.gather([parts] if parts else [], [padded], options).wait()
    except RuntimeError as err:
        raise RuntimeError(
            f"Rank {ranks.rank}: another rank of this evaluation failed, or did not finish within "
            f"{ranks.timeout_minutes:g} minutes ({err}). The rows written so far are kept; rerun to resume."
        ) from err
    if ranks.rank != 0:
        return None
    return [
        {row["index"]: row for row in json.loads(part[: int(size)].numpy().tobytes())}
        for part, size in zip(parts, sizes, strict=True)
    ]


def _samples_path(out: Path, rank: int, world: int) -> Path:
    return out / ("samples.jsonl" if world == 1 else f"samples.rank{rank}.jsonl")


def sample_line(row: dict) -> str:
    """One row of ``samples.jsonl`` as written, without its newline: strict JSON (no NaN), UTF-8 text."""
    return json.dumps(row, ensure_ascii=False, default=str, allow_nan=False)


def read_samples(path: Path, *, repair: bool = False) -> dict[int, dict]:
    """Rows already written, by prompt index.

    Rows are split on newlines only: JSON leaves U+2028, U+2029 and U+0085 unescaped inside a completion, and
    ``str.splitlines`` would cut a row there. A line that is not a whole row (a crash mid-write, which may also
    cut a UTF-8 character) is dropped. With ``repair``, a file with such a line, or whose last row lacks its
    newline, is rewritten with the whole rows only, each ending in a newline, so rows appended next start on a
    line of their own.
    """
    rows: dict[int, dict] = {}
    if not path.exists():
        return rows
    *lines, last = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    broken = False
    for line in [*lines, last]:
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("index"), int):
            logger.warning("Dropping a partial line in %s (interrupted write)", path)
            broken = True
            continue
        rows[row["index"]] = row
    if repair and (broken or last):
        if not broken:
            logger.warning("Adding the newline the last row of %s lacks", path)
        staging = path.with_suffix(".repair")
        staging.write_text("".join(sample_line(r) + "\n" for r in rows.values()), encoding="utf-8")
        staging.replace(path)
    return rows


def _merged_model(spec: ModelSpec, out: Path) -> str:
    """A base model with its adapter merged, saved once, since every engine loads full checkpoints."""
    base = resolve_model_path(spec.model)
    if spec.adapter is None:
        return base
    return str(merge_adapter(base, spec.adapter, out / "merged-model"))


def _check_context(tokenizer, prompts: list[str], limit: int, max_new_tokens: int) -> None:
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    too_long = [(i, n) for i, n in enumerate(lengths) if n + max_new_tokens > limit]
    if too_long:
        i, n = too_long[0]
        raise ValueError(
            f"{len(too_long)} prompt(s) do not fit the model's context of {limit} tokens with max_new_tokens="
            f"{max_new_tokens} (e.g. prompt {i}: {n} tokens). Shorten the prompts, lower max_new_tokens, or "
            "filter the dataset."
        )


def _cued_confidences(
    engine: Any, rendered: list[str], completions: list[str], args: EvalArguments
) -> list[str]:
    """The cue and the model's greedy continuation of it, written after each completion's answer."""
    cued = [
        p + answer_text(c) + "\n" + args.confidence_cue for p, c in zip(rendered, completions, strict=True)
    ]
    greedy = Sampling(1, 0.0, 1.0, args.confidence_max_new_tokens, args.seed)
    return [args.confidence_cue + group[0] for group in engine.generate(cued, greedy)]


def _scoring_model(engine: Any, model_path: str | None) -> Any:
    """A model in memory to score answers with: the HF engine's own, or the checkpoint loaded in float32."""
    model = getattr(engine, "model", None)
    if isinstance(model, torch.nn.Module):
        return model
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device).eval()


def evaluate_model(
    spec: ModelSpec,
    args: EvalArguments,
    dataset: Any,
    scorers: list,
    out: Path,
    engine: Any = None,
    ranks: Ranks | None = None,
) -> dict[str, Any] | None:
    """Generate, score and append the rows this rank owns; rank 0 then summarises all ranks' rows."""
    ranks = ranks or Ranks()
    rank, world = ranks.rank, ranks.world
    out.mkdir(parents=True, exist_ok=True)
    path = _samples_path(out, rank, world)
    mine = list(range(len(dataset)))[rank::world]
    done = read_samples(path, repair=True)
    todo = [i for i in mine if i not in done]
    if done:
        logger.info(
            "%s: resuming, %d of %d prompts already scored", spec.label, len(mine) - len(todo), len(mine)
        )

    if todo:
        # Chunks are fixed by position among this rank's prompts, and a chunk with any prompt left is generated
        # whole, so a resumed run batches exactly as an uninterrupted one and gets bit-identical samples, even
        # in bfloat16 where another batch composition changes many samples.
        chunks = [mine[s : s + args.chunk_size] for s in range(0, len(mine), args.chunk_size)]
        chunks = [chunk for chunk in chunks if any(i not in done for i in chunk)]
        model_path = None  # an engine passed in wraps a model in memory
        if engine is None:
            model_path = _merged_model(spec, out)
            tokenizer = AutoTokenizer.from_pretrained(model_path)
            limit = int(getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", 2048))
        else:  # an engine around a model already in memory (the training callback)
            tokenizer, limit = engine.tokenizer, engine.context_length()
        needed = [i for chunk in chunks for i in chunk]
        prompts = dict(zip(needed, render_prompts(tokenizer, dataset, needed), strict=True))
        _check_context(tokenizer, list(prompts.values()), limit, args.max_new_tokens)
        owned = engine is None  # an engine passed in stays its owner's
        if owned:
            try:
                engine = make_engine(
                    args.engine,
                    model_path,
                    expected_tokens=len(needed) * args.n * args.max_new_tokens,
                    dtype=args.dtype,
                    tensor_parallel_size=args.tensor_parallel_size,
                )
            except OSError as err:
                raise OSError(f"Model {spec.model!r} ({model_path}) does not load: {err}") from err
        sampling = Sampling(args.n, args.temperature, args.top_p, args.max_new_tokens, args.seed)
        hook = load_inference_hook(args.inference)
        columns = [c for c in dataset.column_names if c != "prompt"]
        scorer_model = None
        progress = tqdm(total=len(todo), desc=f"Evaluating {spec.label}", unit="prompt")
        generated_tokens, started = 0, time.perf_counter()
        with path.open("a", encoding="utf-8") as sink:
            for chunk in chunks:
                generated = engine.generate([prompts[i] for i in chunk], sampling)
                generated_tokens += engine.last_tokens  # before the cue's continuations
                indices = [i for i in chunk if i not in done]
                completions = [group for i, group in zip(chunk, generated, strict=True) if i not in done]
                raw, records = None, None
                if hook is not None:  # the method's inference mode: score the answer it shows, keep the rest
                    raw = completions
                    read = [[hook.answer(text) for text in group] for group in completions]
                    completions = [[answer for answer, _ in group] for group in read]
                    records = [[record for _, record in group] for group in read]
                flat = [c for group in completions for c in group]
                kwargs = {c: [dataset[i][c] for i in indices for _ in range(args.n)] for c in columns}
                flat_prompts = [dataset[i]["prompt"] for i in indices for _ in range(args.n)]
                scores = {
                    fn.__name__: score_completions(fn, flat_prompts, flat, kwargs, tokenizer=tokenizer)
                    for fn in scorers
                }
                rendered = [prompts[i] for i in indices for _ in range(args.n)]
                cued = _cued_confidences(engine, rendered, flat, args) if args.confidence_cue else None
                logits = None
                if args.logit_confidence:
                    if scorer_model is None:
                        scorer_model = _scoring_model(engine, model_path)
                    probabilities = answer_token_probabilities(
                        scorer_model, tokenizer, rendered, [answer_text(t) for t in flat]
                    )
                    logits = [combine(p, args.logit_confidence) for p in probabilities]
                if cued is not None:
                    cued = [cued[j * args.n : (j + 1) * args.n] for j in range(len(indices))]
                if logits is not None:
                    logits = [logits[j * args.n : (j + 1) * args.n] for j in range(len(indices))]
                for j, index in enumerate(indices):
                    texts = completions[j]
                    row = {
                        "index": index,
                        "prompt": dataset[index]["prompt"],
                        "completions": texts,
                        "scores": {name: s[j * args.n : (j + 1) * args.n] for name, s in scores.items()},
                        "answers": [vote_answer(t, args.answer_parser) for t in texts],
                    }
                    if raw is not None:
                        row["raw_completions"] = raw[j]
                        row["inference"] = records[j]
                    if args.group_by:
                        row["group"] = dataset[index][args.group_by]
                    if args.confidence:
                        if cued is not None:
                            row["cued_confidences"] = cued[j]
                        stated = cued[j] if cued is not None else texts
                        row["confidences"] = [parse_confidence(t) for t in stated]
                    if logits is not None:
                        row["logit_confidences"] = logits[j]
                    line = sample_line(row)
                    sink.write(line + "\n")
                    done[index] = json.loads(line)  # as a resumed run reads it back
                sink.flush()
                progress.update(len(indices))
                progress.set_postfix(tok_s=f"{generated_tokens / (time.perf_counter() - started):.0f}")
        progress.close()
        throughput = {"generated_tokens": generated_tokens, "seconds": time.perf_counter() - started}
        write_json(out / f"throughput.rank{rank}.json", throughput)
        if owned:
            release_engine(engine)
        del engine

    gathered = gather_rows(done, ranks)
    if gathered is None:
        return None
    rows: dict[int, dict] = {}
    for part in gathered:
        rows.update(part)
    missing = sorted(set(range(len(dataset))) - set(rows))
    if missing:
        raise RuntimeError(
            f"{spec.label}: {len(missing)} prompts have no samples (e.g. {missing[:5]}); rerun to fill."
        )
    summary = summarize_samples([rows[i] for i in range(len(dataset))], args, out, spec.label)
    write_json(out / "summary.json", summary)
    return summary


def parse_evaluation(
    config: dict[str, Any], overrides: list[str], where: str, *, base_dir: Path | None = None
) -> tuple[EvalArguments, DataArguments, Any]:
    """An evaluation's sections from its YAML and flags: EvalArguments, DataArguments and the fields of its data
    builder (None without one).

    Checked here, before any model or dataset loads, all in one :class:`RecipeError`: the scorers (each reward
    reference too, when ``base_dir``, the folder reward files are found from, is given) and the dataset
    reference. The models are checked where they are used as written (by `posttrain eval`): a recipe's
    evaluation gets its model from training."""
    types = (EvalArguments, *data_sections(config, overrides, None))
    eval_args, data_args, *builder = parse_dataclasses(config, overrides, types, where)
    errors = []
    if not eval_args.scorers:
        errors.append("scorers is empty: name at least one reward (see `posttrain rewards`).")
    elif base_dir is not None:
        for spec in eval_args.scorers:
            try:
                parse_reward_spec(spec, base_dir=base_dir)
            except ValueError as err:
                errors.append(str(err))
    try:
        load_inference_hook(eval_args.inference)
    except ValueError as err:
        errors.append(str(err))
    if not data_args.dataset_name:
        errors.append("dataset_name is required (a registered dataset, a local file or a datasets source).")
    else:
        if base_dir is not None:
            data_args.dataset_name = resolve_data_path(data_args.dataset_name, base_dir)
        try:
            check_dataset_reference(data_args.dataset_name)
        except (DataError, FileNotFoundError) as err:
            errors.append(str(err))
    if errors:
        raise RecipeError(f"{where} cannot run:\n  " + "\n  ".join(errors))
    return eval_args, data_args, builder[0] if builder else None


def run_eval(
    args: EvalArguments,
    data: DataArguments,
    builder_args: Any = None,
    base_dir: Path | None = None,
    engine: Any = None,
    *,
    distributed: bool = True,
) -> dict[str, dict]:
    """Evaluate every model named by ``args`` on the dataset described by ``data`` and its data builder's
    fields ``builder_args``.

    ``engine`` replaces loading each model (one model only): the training callback passes the live policy, and
    this process then evaluates every prompt. Otherwise the processes of ``RANK``/``WORLD_SIZE`` split the
    prompts; ``distributed=False`` keeps every prompt here (one process of a larger job evaluating alone).
    """
    specs = model_specs(args)
    if engine is not None and len(specs) > 1:
        raise ValueError("An engine passed in serves one model; name one model.")
    if not args.scorers:
        raise ValueError("Name at least one scorer (a reward from `posttrain rewards`).")
    scorers, _ = load_reward_functions(list(args.scorers), base_dir=base_dir, on_error="raise")
    if data.image_column:  # the engines take text prompts only: the model would answer without the image
        raise ValueError("posttrain eval does not feed images yet; remove image_column from the evaluation.")
    splits = load_dataset_for(data, builder_args)
    split = data.dataset_test_split
    if split not in splits:
        raise ValueError(f"Dataset {data.dataset_name!r} has no split {split!r}; it has {sorted(splits)}.")
    dataset = splits[split]
    needed = template_columns(data.prompt_template) or {"prompt"}
    if args.group_by:
        needed.add(args.group_by)
    for fn in scorers:
        needed |= reward_required_columns(fn)
    require_columns(dataset, sorted(needed), what="the prompt template and scorers")
    if args.max_samples is not None and args.max_samples < len(dataset):
        dataset = dataset.shuffle(seed=0).select(range(args.max_samples))
    dataset = apply_inference_prompts(format_split(dataset, data), load_inference_hook(args.inference))

    out = Path(args.output_dir)
    results = {}
    with rank_group(args.rank_timeout_minutes, distributed=distributed and engine is None) as ranks:
        for spec in specs:
            target = out / spec.label if len(specs) > 1 else out
            results[spec.label] = evaluate_model(
                spec, args, dataset, scorers, target, engine=engine, ranks=ranks
            )
    if len(specs) > 1 and all(v is not None for v in results.values()):
        write_comparison(results, out)
    return results
