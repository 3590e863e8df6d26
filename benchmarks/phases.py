"""What the method benchmarks share: each phase runs in a process of its own, whose wall time and peak resident
memory are recorded in ``phases.json`` as it completes, so that a benchmark run again after it was stopped skips
the finished phases (reporting their cost as measured then) and an interrupted one resumes from what it wrote."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

logger = logging.getLogger("benchmark")


class Phases:
    """Each phase's cost, kept in ``phases.json`` as it completes."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}

    def run(self, name: str, argv: list[str], log: Path, script: Path | None = None) -> dict:
        """``posttrain <argv>`` (or ``python <script> <argv>``) as the phase ``name``, unless already done."""
        if name in self.records:
            logger.info("%s: done in an earlier run (%.0f s)", name, self.records[name]["seconds"])
        else:
            self.records[name] = run_phase(name, argv, log, script)
            self.path.write_text(json.dumps(self.records, indent=2))
        return self.records[name]


def run_phase(name: str, argv: list[str], log: Path, script: Path | None = None) -> dict:
    """One ``posttrain`` command (or a script) in a process of its own: its wall time and peak resident memory.
    A stopped ``posttrain`` command resumes where it stopped (stages, checkpoints, evaluation samples)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, *([str(script)] if script else ["-m", "posttrain"]), *argv]
    logger.info("%s: %s", name, " ".join(command[1:]))
    start = time.perf_counter()
    with log.open("a") as sink:
        process = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {process.returncode}); see {log}")
    return {"phase": name, "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


def begin(out: Path) -> tuple[Path, Phases]:
    """Logging on, the output folder made, and its phase record (read back when the benchmark resumes)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out, Phases(out / "phases.json")


def cell(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def lora_model(config: dict):
    """The tokenizer and the LoRA-wrapped model (float32, in training mode, seeded) of a recipe's model section,
    as the benchmarks that time one training step build them."""
    import torch  # heavy: only the step-cost phases need it
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.models import resolve_model_path

    path = resolve_model_path(config["model_name_or_path"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    lora = LoraConfig(
        r=config["lora_r"],
        lora_alpha=config["lora_alpha"],
        lora_dropout=config["lora_dropout"],
        target_modules=config["lora_target_modules"],
        task_type="CAUSAL_LM",
    )
    return tokenizer, get_peft_model(model, lora).train()
