"""Which checkpoint a run resumes from, and whether it may.

- **What a run is** (:func:`run_identity`): the method, the model and its adapter settings, the data and its
  builder, the rewards and the seed. It is written to ``<output_dir>/run.json`` when a run has passed its
  checks (:func:`record_run`), and a
  recipe whose identity differs is refused in that folder, with the differences listed: resuming it would
  continue another run's checkpoint and overwrite its results, curves, model and completion log. Other
  settings (learning rate, batch size...) may change on a resume; the changes are logged.
- **Which checkpoint** (:func:`resolve_checkpoint`): ``auto`` takes the newest *complete* checkpoint. One
  that a kill left half-written (no or torn ``trainer_state.json``, which the trainer writes last) or whose
  files are damaged is skipped with a warning naming the file, and the one before it is used.
- **Damaged files** (:func:`verify_checkpoint`): the header and size of every safetensors file, the shards
  of a sharded index, and the zip directory of every torch pickle (optimizer, scheduler, RNG, DeepSpeed
  states) are read before anything loads, so a truncated file is named at once, not hours later by the
  loader.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.recipe import Recipe

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHT_FILES = (
    "model.safetensors",
    "adapter_model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
)
# Settings that do not change what is learned, or that a resume is expected to change: not compared.
_UNCOMPARED = re.compile(
    r"^(output_dir|logging_dir|run_name|resume_from_checkpoint|overwrite_output_dir|max_steps|num_train_epochs"
    r"|report_to|push_to_hub|hub_.*|logging_.*|save_.*|eval_.*|evaluation_.*|dataloader_.*|disable_tqdm"
    r"|log_.*|do_.*|per_device_eval_batch_size|local_rank|ddp_.*|deepspeed|accelerator_config"
    r"|completions_jsonl|vllm_.*|rollout.*|use_vllm|reward_errors)$"
)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be resumed from; nothing is deleted, the message says what to do."""


def _normalised(value: Any) -> Any:
    """The value as it reads back from JSON, so a recorded identity compares equal to a recomputed one."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def run_identity(recipe: Recipe) -> dict[str, Any]:
    """What makes two runs the same run: method, model, data, data builder, rewards and seed."""
    trainer = recipe.trainer
    model = {k: v for k, v in dataclasses.asdict(recipe.model).items() if k.startswith(("model_", "lora_"))}
    model.update({k: getattr(recipe.model, k, None) for k in ("use_peft", "load_in_4bit", "load_in_8bit")})
    data = {k: v for k, v in dataclasses.asdict(recipe.data).items() if k != "dataset_test_split"}
    identity = {
        "method": recipe.method.name,
        "model": model,
        "data": data,
        "builder": dataclasses.asdict(recipe.builder) if recipe.builder is not None else None,
        "rewards": getattr(trainer, "reward_funcs", None),
        "reward_weights": getattr(trainer, "reward_weights", None),
        "seed": trainer.seed,
    }
    return _normalised(identity)


def run_settings(recipe: Recipe) -> dict[str, Any]:
    """The trainer's other settings: a resume may change them, and the changes are logged."""
    settings = recipe.trainer.to_dict()
    return _normalised({k: v for k, v in settings.items() if not _UNCOMPARED.match(k) and k != "seed"})


def _differences(before: Any, after: Any, prefix: str = "") -> list[str]:
    """What differs between a recorded value and this recipe's. Keys on one side only are not compared: a
    field added (or removed) by a newer version of posttrain must not make a run another run."""
    if isinstance(before, dict) and isinstance(after, dict):
        lines = []
        for key in sorted(set(before) & set(after)):
            lines += _differences(before[key], after[key], f"{prefix}{key}.")
        return lines
    if before != after:
        return [f"{prefix.rstrip('.')}: {before!r} there, {after!r} in this recipe"]
    return []


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def check_run_identity(recipe: Recipe, output_dir: Path) -> None:
    """Refuse a recipe that is not the run recorded in ``output_dir``. Reads only; :func:`record_run` writes the
    record once the recipe has passed its checks."""
    record = output_dir / RUN_FILE
    if not record.exists():
        if checkpoints(output_dir):
            logger.warning(
                "%s holds checkpoints but no %s (written by an earlier version): cannot check that they belong "
                "to this recipe; it is recorded as their run.",
                output_dir,
                RUN_FILE,
            )
        return
    try:
        recorded = json.loads(record.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{record} is corrupt ({err}); it records which run owns {output_dir}. Restore it, or choose a "
            "new output_dir."
        ) from err
    differences = _differences(recorded.get("identity"), run_identity(recipe))
    if differences:
        listed = "\n  ".join(differences)
        raise CheckpointError(
            f"{output_dir} belongs to a different run (recorded in {record}):\n  {listed}\n"
            "Resuming would continue that run's checkpoints and overwrite its results, model and completion "
            "log. Choose a new output_dir for this recipe; to start from that run's weights, set "
            "model_name_or_path to one of its checkpoints."
        )
    changed = _differences(recorded.get("settings"), run_settings(recipe))
    if changed:
        logger.warning("Resuming %s with changed settings:\n  %s", output_dir, "\n  ".join(changed))


def record_run(recipe: Recipe) -> None:
    """Write ``<output_dir>/run.json`` (main process), unless the folder already records this run."""
    output_dir = Path(recipe.trainer.output_dir)
    record = output_dir / RUN_FILE
    if record.exists() or not _is_main_process():
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    temporary = record.with_suffix(".json.tmp")
    temporary.write_text(
        json.dumps({"identity": run_identity(recipe), "settings": run_settings(recipe)}, indent=2)
    )
    os.replace(temporary, record)


def checkpoints(output_dir: Path) -> list[Path]:
    """The ``checkpoint-<step>`` folders in ``output_dir``, newest (highest step) first."""
    if not output_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    ]
    return [p for _, p in sorted(found, reverse=True)]


def _verify_safetensors(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is truncated: {size} bytes, not even a safetensors header.")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise CheckpointError(
                f"{path} is truncated: its header needs {length} bytes, the file has {size}."
            )
        try:
            header = json.loads(f.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path} has a corrupt safetensors header ({err}).") from err
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        raise CheckpointError(
            f"{path} is {'truncated' if size < expected else 'damaged'}: its header describes {expected} bytes, "
            f"the file has {size}."
        )


def _verify_torch_file(path: Path) -> None:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty.")
    with path.open("rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    if not zipped:
        return  # a legacy (non-zip) torch file: only its presence can be checked cheaply
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except zipfile.BadZipFile as err:
        raise CheckpointError(f"{path} is truncated or damaged ({err}).") from err


def verify_checkpoint(path: Path) -> int:
    """Check a checkpoint's files before anything loads; returns its step. Raises naming the bad file."""
    state = path / "trainer_state.json"
    if not state.exists():
        raise CheckpointError(f"Checkpoint {path} has no trainer_state.json (an interrupted save?).")
    try:
        step = int(json.loads(state.read_text())["global_step"])
    except (json.JSONDecodeError, KeyError, ValueError) as err:
        raise CheckpointError(f"Checkpoint {path}: {state.name} is corrupt ({err!r}).") from err
    has_weights = any((path / f).exists() for f in _WEIGHT_FILES) or any(path.glob("global_step*"))
    if not has_weights:
        raise CheckpointError(f"Checkpoint {path} holds no model or adapter weights.")
    for index in path.glob("*.safetensors.index.json"):
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (path / s).exists())
        if missing:
            raise CheckpointError(f"{index} names shards that are missing: {', '.join(missing)}.")
    for file in sorted(path.rglob("*")):
        if file.suffix == ".safetensors":
            _verify_safetensors(file)
        elif file.suffix in (".pt", ".pth", ".bin"):
            _verify_torch_file(file)
    return step


def resolve_checkpoint(args, recipe: Recipe | None = None) -> str | None:
    """The checkpoint to resume from: ``auto`` picks the newest complete one in output_dir, a path is used as
    given. With ``recipe``, a folder that holds a different run is refused first (:func:`check_run_identity`).

    A run that would silently start over on top of existing checkpoints is refused instead, so earlier work
    is never overwritten by accident.
    """
    output_dir = Path(args.output_dir)
    found = checkpoints(output_dir)
    wanted = args.resume_from_checkpoint
    if wanted is None and found:
        raise CheckpointError(
            f"{output_dir} already holds checkpoints (latest {found[0].name}). Set resume_from_checkpoint: "
            "auto to continue that run, or choose a new output_dir."
        )
    if recipe is not None:
        check_run_identity(recipe, output_dir)
    if wanted is None:
        return None
    if wanted == "auto":
        damaged = []
        for candidate in found:
            try:
                verify_checkpoint(candidate)
            except CheckpointError as err:
                logger.warning("Skipping %s: %s", candidate.name, err)
                damaged.append(f"{candidate.name}: {err}")
                continue
            logger.info("Resuming from %s", candidate)
            return str(candidate)
        if found:
            raise CheckpointError(
                f"No checkpoint in {output_dir} is complete: " + "; ".join(damaged),
                hint="move the damaged checkpoints aside to start over, or point resume_from_checkpoint at a good copy.",
            )
        logger.info("resume_from_checkpoint=auto: no checkpoint in %s, starting fresh", output_dir)
        return None
    try:
        verify_checkpoint(Path(wanted))
    except CheckpointError as err:
        raise CheckpointError(
            f"{err} Point resume_from_checkpoint at an earlier checkpoint, or move this one aside."
        ) from err
    logger.info("Resuming from %s", wanted)
    return str(wanted)


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    """The global step a checkpoint was saved at."""
    return int(json.loads(Path(checkpoint, "trainer_state.json").read_text())["global_step"])
