"""The trainer layer: TRL's GRPO and SFT trainers with the few hooks every posttrain method shares.

- GRPO writes every completion, with its per-reward scores, to ``<output_dir>/completions/*.jsonl`` whatever
  tracker ``report_to`` names, and logs how many samples each reward failed to score.
- SFT is TRL's trainer; a method with its own loss subclasses it and overrides ``compute_loss``. On a CPU the plain
  next-token loss is the model's own cross-entropy rather than TRL's fused LM head, which is slower there.
- A reward model is a regression head trained with transformers' Trainer on (prompt, answer, outcome) rows.
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers import DataCollatorWithPadding, Trainer, TrainerState
from transformers.trainer_utils import TrainOutput
from trl import GRPOTrainer, SFTTrainer

from posttrain.checkpoints import checkpoint_step
from posttrain.errors import UserError
from posttrain.formatting import conversation_text
from posttrain.jsonl import append_jsonl, read_jsonl, rewrite_jsonl
from posttrain.models import REWARD_MODEL_MARKER
from posttrain.rollout import configure_cpu_engine, cpu_server_client, enable_cpu_weight_sync, on_cpu
from rewards.contract import CheckedReward
from rewards.registry import pop_error_counts

logger = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if type(value).__module__.startswith("PIL."):  # an image in a multimodal prompt: its size, not its pixels
        return f"<image {value.width}x{value.height}>"
    return str(value)


class CompletionLog:
    """Appends one JSON line per completion, synced every batch so a crash loses at most one batch."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def rewind(self, step: int) -> None:
        """Keep the rows of steps up to ``step`` only: a run resumed from the checkpoint of that step generates
        the later ones again, so each is in the log once."""
        rows = read_jsonl(self.path)
        kept = [row for row in rows if row.get("step", 0) <= step]
        if len(kept) < len(rows):
            logger.info(
                "%s: dropping %d rows logged after step %d, which the resumed run generates again",
                self.path,
                len(rows) - len(kept),
                step,
            )
            rewrite_jsonl(self.path, kept)

    def write(self, rows: list[dict[str, Any]]) -> None:
        append_jsonl(self.path, [_jsonable(row) for row in rows])


class PosttrainGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that logs completions locally and counts reward failures."""

    def __init__(self, *args, **kwargs):
        training_args = kwargs["args"]
        cpu_colocate = (
            training_args.use_vllm and training_args.vllm_mode == "colocate" and on_cpu(training_args)
        )
        cpu_server = training_args.use_vllm and training_args.vllm_mode == "server" and on_cpu(training_args)
        if cpu_colocate:
            configure_cpu_engine(training_args.rollout_memory_share)
        with cpu_server_client() if cpu_server else nullcontext():
            super().__init__(*args, **kwargs)
        if cpu_colocate:
            enable_cpu_weight_sync(self.vllm_generation)
        self.completion_log: CompletionLog | None = None
        if getattr(self.args, "completions_jsonl", True) and self.accelerator.is_main_process:
            self.completion_log = CompletionLog(
                Path(self.args.output_dir) / "completions" / "completions.jsonl"
            )

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if self.completion_log is not None:
            # A fresh run (None) starts at step 0; transformers also accepts True, which posttrain never passes.
            fresh = not isinstance(resume_from_checkpoint, (str, Path))
            self.completion_log.rewind(0 if fresh else checkpoint_step(resume_from_checkpoint))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        mode = "train" if self.model.training else "eval"
        self._log_reward_errors(mode)
        if getattr(self.args, "completions_jsonl", True):
            self._write_completions(inputs, prompts, completions, rewards_per_func, mode)
        if mode == "train":
            self._watch_signal(rewards_per_func)
        return rewards_per_func

    def _watch_signal(self, rewards_per_func: torch.Tensor) -> None:
        """Stop when no reward scored anything for ``signal_patience`` batches in a row; warn when every group's
        rewards were all equal that long. ``rewards_per_func`` is gathered, so every rank decides alike."""
        patience = getattr(self.args, "signal_patience", 0)
        if not patience:
            return
        scored = ~torch.isnan(rewards_per_func)
        self._unscored_batches = 0 if scored.any() else getattr(self, "_unscored_batches", 0) + 1
        if self._unscored_batches >= patience:
            names = ", ".join(self.reward_func_names)
            raise NoRewardSignalError(
                f"No reward scored any completion in {patience} generation batches in a row (up to step "
                f"{self.state.global_step + 1}): {names} returned None or failed for every sample, so there is "
                "nothing to learn from. Check that the rewards apply to this data (its columns and answer "
                "format: see completions/completions.jsonl) or raise signal_patience (0: never stop)."
            )
        total = torch.where(
            scored, rewards_per_func * self.reward_weights.to(rewards_per_func.device), 0
        ).sum(1)
        groups = total.view(-1, self.num_generations)
        flat = bool((groups.amax(dim=1) == groups.amin(dim=1)).all())
        self._flat_batches = getattr(self, "_flat_batches", 0) + 1 if flat else 0
        if self._flat_batches == patience:
            logger.warning(
                "For %d generation batches in a row every group's completions got the same reward (up to step %d): "
                "the advantage is zero and the policy does not move. The task may be too hard or too easy for "
                "the model, or the rewards too coarse; see frac_reward_zero_std in the logs.",
                patience,
                self.state.global_step + 1,
            )

    def _log_reward_errors(self, mode: str) -> None:
        """Log ``rewards/<name>/errors``: the samples of this batch that each reward with ``on_error="none"`` scored
        None for an error or a timeout, summed over processes; zero included, so that the mean over a logging
        window counts every batch."""
        names = [
            f.__name__ for f in self.reward_funcs if isinstance(f, CheckedReward) and f.on_error == "none"
        ]
        if not names:
            return
        counts = pop_error_counts(names)
        local = torch.tensor([[float(counts[name]) for name in names]], device=self.accelerator.device)
        totals = self.accelerator.gather(local).sum(dim=0).tolist()  # collective: every rank calls it
        for name, total in zip(names, totals, strict=True):
            self._metrics[mode][f"rewards/{name}/errors"].append(total)

    def _write_completions(self, inputs, prompts, completions, rewards_per_func, mode: str) -> None:
        # Small scalar columns (gold answers, labels) make the log self-explaining; large ones stay out.
        columns = [
            k
            for k, v in inputs[0].items()
            if k not in ("prompt", "completion", "completion_ids") and isinstance(v, (str, int, float, bool))
        ]
        local = [
            {"prompt": p, "completion": c, **{k: row[k] for k in columns}}
            for p, c, row in zip(prompts, completions, inputs, strict=True)
        ]
        rows = gather_object(local)  # collective: every rank must call it
        if self.completion_log is None:
            return
        weights = self.reward_weights.tolist()
        scores = rewards_per_func.tolist()
        for row, per_func in zip(rows, scores, strict=True):
            row["rewards"] = dict(zip(self.reward_func_names, per_func, strict=True))
            valid = [w * s for w, s in zip(weights, per_func, strict=True) if not math.isnan(s)]
            row["reward"] = sum(valid) if valid else None
            # The step these completions train (log_history's numbering, from 1); an evaluation's rows carry the
            # step of the model evaluated.
            row["step"] = self.state.global_step + (mode == "train")
            row["mode"] = mode
        self.completion_log.write(rows)


class NoRewardSignalError(UserError, RuntimeError):
    """No reward scored any completion for ``signal_patience`` generation batches in a row."""


def restore_finished_run(trainer: Trainer, checkpoint: str) -> TrainOutput:
    """Resume a run whose ``checkpoint`` is already at ``max_steps`` (killed after its last save, e.g. during the
    final evaluation): load it and go on, without training a step.

    transformers checks ``max_steps`` only after a step, so resuming such a checkpoint would train one step more
    than the uninterrupted run. Callbacks still see the start of training (an interrupted checkpoint evaluation
    is finished there). Under DeepSpeed the checkpoint is the engine's own; it is resumed by ``train``.
    """
    if trainer.is_deepspeed_enabled:
        logger.warning(
            "%s is the run's last step; under DeepSpeed resuming it trains one step more.", checkpoint
        )
        return trainer.train(resume_from_checkpoint=checkpoint)
    logger.info("%s is at max_steps: the run is trained; going on to saving and evaluation", checkpoint)
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint, "trainer_state.json")))
    trainer.control = trainer.callback_handler.on_train_begin(trainer.args, trainer.state, trainer.control)
    return TrainOutput(trainer.state.global_step, 0.0, {})


class PosttrainSFTTrainer(SFTTrainer):
    """SFTTrainer that can carry per-row columns (a method's targets) through to ``compute_loss``.

    ``row_columns`` (the method's ``keep_columns``) survive TRL's column pruning and reach ``compute_loss`` in
    ``inputs["row_columns"]``, a dict of one list per column, batch-aligned. A method with its own loss overrides
    ``compute_loss`` and pops them; this class pops them and computes TRL's loss.
    """

    def __init__(self, *args, row_columns: tuple[str, ...] = (), data_collator=None, **kwargs):
        self.row_columns = tuple(row_columns)
        super().__init__(*args, data_collator=data_collator, **kwargs)
        if self.row_columns:
            self.data_collator = _RowColumnCollator(self.data_collator, self.row_columns)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        missing = [c for c in self.row_columns if c not in self._signature_columns]
        self._signature_columns = list(self._signature_columns) + missing

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs.pop("row_columns", None)
        if self._plain_lm_loss(inputs):
            return self._cpu_lm_loss(model, inputs, return_outputs, num_items_in_batch)
        return super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )

    def _plain_lm_loss(self, inputs: dict[str, Any]) -> bool:
        """Whether this step's loss is the plain next-token loss on a CPU, where the model's own loss is used.

        TRL computes the loss through its fused LM head, which projects the vocabulary in tiles and recomputes them
        in the backward pass. That saves memory on an accelerator, with Triton kernels. On a CPU it runs as plain
        torch operations over float32 tiles: a LoRA step of SmolLM2-135M (8 x 384 tokens, bf16 autocast) takes
        1.31x as long as the same step with the model's own cross-entropy (1.38x without LoRA dropout), which
        gives the same loss (``benchmarks/sft_step.py``). Anything beyond the plain loss (label smoothing, DFT, a
        custom loss function, MoE auxiliary losses) keeps TRL's path."""
        labels = inputs.get("labels")
        return (
            labels is not None
            and labels.device.type == "cpu"
            and self.args.loss_type == "nll"
            and self.label_smoother is None
            and self.compute_loss_func is None
            and not self.aux_loss_enabled
        )

    def _cpu_lm_loss(self, model, inputs, return_outputs, num_items_in_batch):
        """The model's own causal-LM loss, with the metrics TRL logs (entropy and token accuracy on the trained
        positions, tokens seen) computed from the same logits."""
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        outputs = model(**inputs, num_items_in_batch=num_items_in_batch)
        loss = outputs.loss
        # As TRL scales it: num_items_in_batch counts every rank's tokens, and DDP averages gradients over ranks.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        with torch.no_grad():
            labels = inputs["labels"][:, 1:]
            mask = labels != -100
            logits = outputs.logits[:, :-1][mask].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1).sum()
            correct = (logits.argmax(-1) == labels[mask]).sum()
            gather = self.accelerator.gather_for_metrics
            valid, entropy, correct = (gather(x.reshape(1)).sum() for x in (mask.sum(), entropy, correct))
        self._metrics[mode]["entropy"].append((entropy / valid).item() if valid > 0 else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
        if mode == "train":
            tokens = (
                inputs["attention_mask"].sum() if "attention_mask" in inputs else inputs["input_ids"].numel()
            )
            self._total_train_tokens += (
                int(gather(torch.as_tensor(tokens).reshape(1)).sum().item()) // self._tp_size
            )
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss


class _RowColumnCollator:
    """TRL's collator for the token columns, with the method's row columns set aside as plain lists."""

    def __init__(self, collator, columns: tuple[str, ...]):
        self.collator = collator
        self.columns = columns

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        rows = {c: [example.pop(c) for example in examples] for c in self.columns}
        batch = self.collator(examples)
        batch["row_columns"] = rows
        return batch


class RewardRegressionTrainer(Trainer):
    """transformers' Trainer for a regression reward model on (prompt, completion, outcome) rows.

    Each pair is rendered with :func:`posttrain.formatting.conversation_text`, tokenized (cut from the left to
    ``args.max_length``, so the answer's end is always seen) and paired with its outcome as a float label; the
    model's regression head gives the mean squared error. The saved folder also gets ``reward_model.json`` so
    that a reward spec can tell it is one.
    """

    def __init__(self, *, model, args, train_dataset, processing_class, eval_dataset=None, **kwargs):
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        tokenizer.truncation_side = "left"
        target = args.target_column

        def encode(row: dict[str, Any]) -> dict[str, Any]:
            text = conversation_text(tokenizer, row["prompt"], row["completion"])
            encoded = tokenizer(text, truncation=True, max_length=args.max_length, add_special_tokens=False)
            return {**encoded, "labels": float(row[target])}

        def prepare(dataset):
            if dataset is None:
                return None
            return dataset.map(encode, remove_columns=dataset.column_names, desc="Tokenizing pairs")

        super().__init__(
            model=model,
            args=args,
            train_dataset=prepare(train_dataset),
            eval_dataset=prepare(eval_dataset),
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            **kwargs,
        )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            target = Path(output_dir or self.args.output_dir)
            marker = {
                "kind": "regression_reward_model",
                "target_column": self.args.target_column,
                "max_length": self.args.max_length,
            }
            (target / REWARD_MODEL_MARKER).write_text(json.dumps(marker))
