"""Evaluate checkpoints during training with the same machinery as `posttrain eval`.

At every save the live policy is evaluated with the HF engine in the policy's own dtype (no reload, no second
copy of the weights, no cast of the model being trained), by this process alone; the summary lands in
``<output_dir>/eval/checkpoint-N/`` and its headline numbers in the trainer's log.

A run killed while a checkpoint was being evaluated resumes from that checkpoint (it is complete before its
evaluation starts): the evaluation is finished first, continuing the samples already written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

from transformers import TrainerCallback

from eval.runner import EvalArguments, run_eval
from posttrain.generation import make_engine

logger = logging.getLogger(__name__)


class CheckpointEvalCallback(TrainerCallback):
    def __init__(self, eval_args: EvalArguments, data_args, builder_args=None, base_dir: Path | None = None):
        self.eval_args = eval_args
        self.data_args = data_args
        self.builder_args = builder_args
        self.base_dir = base_dir

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs) -> None:
        if not state.is_world_process_zero or state.global_step == 0:
            return
        # Resumed from checkpoint-N: its evaluation ran after its state was saved, so the log lacks it, and a
        # kill may have cut it short. Read it back, or finish it.
        summary = Path(args.output_dir) / "eval" / f"checkpoint-{state.global_step}" / "summary.json"
        if summary.exists():
            self._record(state, json.loads(summary.read_text()))
        else:
            logger.info(
                "Finishing the evaluation of checkpoint-%d, interrupted with the run", state.global_step
            )
            self.on_save(args, state, control, model=model, processing_class=processing_class)

    def on_save(self, args, state, control, model=None, processing_class=None, **kwargs) -> None:
        if not state.is_world_process_zero or model is None:
            return
        name = f"checkpoint-{state.global_step}"
        eval_args = dataclasses.replace(
            self.eval_args,
            model_name_or_path=str(Path(args.output_dir) / name),
            adapter_path=None,
            models=[],
            engine="hf",
            output_dir=str(Path(args.output_dir) / "eval" / name),
        )
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        engine = make_engine("hf", model=model, tokenizer=tokenizer)
        (summary,) = run_eval(
            eval_args, self.data_args, self.builder_args, base_dir=self.base_dir, engine=engine
        ).values()
        self._record(state, summary)

    @staticmethod
    def _record(state, summary: dict) -> None:
        headline = {
            f"eval/{k}": v
            for k, v in summary.items()
            if isinstance(v, float) and not math.isnan(v) and not k.startswith("reliability")
        }
        state.log_history.append({"step": state.global_step, **headline})
        logger.info(
            "Checkpoint-%d: %s", state.global_step, ", ".join(f"{k}={v:.3f}" for k, v in headline.items())
        )
