"""ConfTuner's trainer: the shared SFT trainer with the tokenized Brier loss in ``compute_loss``.

Each training row (a prompt, the model's own answer as ``completion``, and ``correct``) becomes one sequence:
the rendered prompt, the answer, and the cue ``Confidence (0-N):`` on a line of its own, where it ends. The
confidence token is predicted at the last real token of every row (see :mod:`.loss`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset

from posttrain.errors import UserError
from posttrain.generation import render_prompt
from posttrain.methods.conftuner.data import LABEL_COLUMN
from posttrain.methods.conftuner.loss import (
    ConfidenceScale,
    confidence_forward,
    confidence_scale,
    expected_confidence,
    gather_confidence_logits,
    last_token_positions,
    tokenized_brier_loss,
)
from posttrain.trainers import PosttrainSFTTrainer
from rewards.contract import completion_text

logger = logging.getLogger(__name__)


class ConfTunerDataError(UserError, ValueError):
    """Training rows ConfTuner cannot learn from (no verdict, a sequence too long for max_length)."""


def confidence_examples(
    dataset: Dataset, tokenizer, scale: ConfidenceScale, max_length: int | None = None
) -> Dataset:
    """Tokenized examples: prompt + own answer + cue, ``labels`` on the answer and cue tokens (for the optional
    language-model loss) and the row's ``correct`` verdict, 0 or 1."""

    def encode(row: dict[str, Any], index: int) -> dict[str, Any]:
        label = row[LABEL_COLUMN]
        if label not in (0, 1):  # True and 1.0 are 1
            raise ConfTunerDataError(
                f"Row {index}: '{LABEL_COLUMN}' must be 0 or 1 (is the answer right), got {label!r}."
            )
        prompt = render_prompt(tokenizer, row["prompt"])
        text = prompt + scale.example_tail(completion_text(row["completion"]))
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        start = 0
        while start < min(len(ids), len(prompt_ids)) and ids[start] == prompt_ids[start]:
            start += 1
        if max_length is not None and len(ids) > max_length:
            raise ConfTunerDataError(
                f"Row {index} is {len(ids)} tokens with its answer and the confidence cue, over max_length "
                f"{max_length}: the cue would be cut off. Raise max_length, or shorten the prompts "
                "(max_prompt_length) or the answers (answer_max_new_tokens)."
            )
        return {
            "input_ids": ids,
            "labels": [-100] * start + ids[start:],
            LABEL_COLUMN: int(label),
        }

    return dataset.map(
        encode,
        with_indices=True,
        remove_columns=[c for c in dataset.column_names if c != LABEL_COLUMN],
        desc="Tokenizing ConfTuner examples",
    )


class ConfTunerTrainer(PosttrainSFTTrainer):
    """SFT whose loss is the tokenized Brier score of the confidence after the model's own answer, plus
    ``answer_lm_loss_weight`` times the next-token loss on the answer and the cue."""

    def __init__(self, *args, train_dataset=None, processing_class=None, **kwargs):
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        training_args = kwargs["args"]
        if training_args.packing or training_args.padding_free:
            raise ConfTunerDataError(
                "ConfTuner reads the confidence at the end of each sequence: set packing and padding_free to false."
            )
        self.confidence_scale = confidence_scale(tokenizer, training_args.confidence_max_scale)
        if train_dataset is not None and "input_ids" not in train_dataset.column_names:
            train_dataset = confidence_examples(
                train_dataset, tokenizer, self.confidence_scale, training_args.max_length
            )
        kwargs.setdefault("row_columns", (LABEL_COLUMN,))
        super().__init__(*args, train_dataset=train_dataset, processing_class=processing_class, **kwargs)
        # The loss is a mean over the batch's rows: the trainer divides it over gradient accumulation steps.
        self.loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        rows = inputs.pop("row_columns")
        lm_labels = inputs.pop("labels")
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        correct = torch.tensor(rows[LABEL_COLUMN], dtype=torch.float32, device=input_ids.device)
        weight = self.args.answer_lm_loss_weight
        if weight:
            position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
            outputs = model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            )
            logits = outputs.logits
            confidence_logits = gather_confidence_logits(
                logits, last_token_positions(attention_mask), self.confidence_scale.token_ids
            )
            lm_loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), lm_labels[:, 1:].flatten(), ignore_index=-100
            )
        else:
            confidence_logits = confidence_forward(model, input_ids, attention_mask, self.confidence_scale)
            lm_loss = None
        brier = tokenized_brier_loss(confidence_logits, correct)
        loss = brier + weight * lm_loss if lm_loss is not None else brier
        with torch.no_grad():
            stated = expected_confidence(confidence_logits)
            local = torch.stack([brier.detach(), stated.mean(), correct.mean()])
            if lm_loss is not None:
                local = torch.cat([local, lm_loss.detach().reshape(1)])
            mean = self.accelerator.gather_for_metrics(local.unsqueeze(0)).mean(dim=0).tolist()
        names = ["brier", "confidence/expected", "confidence/label_mean", "lm_loss"]
        for name, value in zip(names, mean, strict=False):
            self._metrics[mode][name].append(value)
        if return_outputs:
            return loss, {"confidence_logits": confidence_logits}
        return loss
