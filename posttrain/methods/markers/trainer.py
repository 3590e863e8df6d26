"""Training-time markers' trainer: the shared SFT trainer with a collator that serialises each row's markers.

Each batch, the collator draws the prompt-side markers of every row for the current epoch (dataset- and
sample-level dropout, seeded by the run's seed, the epoch and the row), appends them to the prompt, prepends the
full list to the completion, and tokenizes: the loss is on the completion (the list and the answer) only. The
epoch comes from a callback at the start of each epoch, so every epoch shows the model another draw.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import torch
from transformers import TrainerCallback

from posttrain.errors import UserError
from posttrain.generation import render_prompt
from posttrain.methods.markers.annotate import MARKERS_COLUMN
from posttrain.methods.markers.schema import MarkerSchema, append_to_prompt, prompt_markers, render_markers
from posttrain.models import conversation_text
from posttrain.trainers import PosttrainSFTTrainer
from rewards.contract import completion_text

logger = logging.getLogger(__name__)

ROW_KEY = "row_key"


class MarkersDataError(UserError, ValueError):
    """Training rows the markers trainer cannot use."""


def marked_completion(markers: dict[str, Any], answer: str, schema: MarkerSchema | None = None) -> str:
    """The training target: the full marker list on a line of its own, then the answer."""
    listed = render_markers(markers, schema)
    return f"{listed}\n{answer}" if listed else answer


class MarkerCollator:
    """Rows of (prompt, completion, markers, row_key) -> padded ``input_ids``, ``attention_mask`` and
    ``labels`` (-100 on the prompt and padding), with this epoch's markers in the prompt."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        schema: MarkerSchema,
        dataset_rate: float,
        sample_rate: float,
        seed: int,
        max_length: int | None = None,
    ):
        self.tokenizer = tokenizer
        self.schema = schema
        self.dataset_rate = dataset_rate
        self.sample_rate = sample_rate
        self.seed = seed
        self.max_length = max_length
        self.epoch = 0
        self.truncated = 0

    def texts(self, example: dict[str, Any]) -> tuple[str, str]:
        """The rendered prompt and the rendered prompt + completion of one row, for this epoch."""
        markers = example[MARKERS_COLUMN]
        markers = json.loads(markers) if isinstance(markers, str) else dict(markers)
        shown = prompt_markers(
            markers,
            dataset_rate=self.dataset_rate,
            sample_rate=self.sample_rate,
            seed=self.seed,
            epoch=self.epoch,
            key=example[ROW_KEY],
            schema=self.schema,
        )
        prompt = append_to_prompt(example["prompt"], render_markers(shown, self.schema))
        target = marked_completion(markers, completion_text(example["completion"]), self.schema)
        completion = (
            target if isinstance(example["completion"], str) else [{"role": "assistant", "content": target}]
        )
        return render_prompt(self.tokenizer, prompt), conversation_text(self.tokenizer, prompt, completion)

    def encode(self, example: dict[str, Any]) -> tuple[list[int], list[int]]:
        prompt, full = self.texts(example)
        ids = self.tokenizer(full, add_special_tokens=False)["input_ids"]
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        start = 0
        while start < min(len(ids), len(prompt_ids)) and ids[start] == prompt_ids[start]:
            start += 1
        labels = [-100] * start + ids[start:]
        if self.max_length is not None and len(ids) > self.max_length:
            self.truncated += 1
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        return ids, labels

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        encoded = [self.encode(example) for example in examples]
        longest = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(encoded), longest), pad, dtype=torch.long)
        labels = torch.full((len(encoded), longest), -100, dtype=torch.long)
        attention = torch.zeros((len(encoded), longest), dtype=torch.long)
        for row, (ids, target) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(target)] = torch.tensor(target)
            attention[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class MarkerEpochCallback(TrainerCallback):
    """Tells the collator which epoch starts, so its dropout draws afresh (a resumed run draws the same)."""

    def __init__(self, collator: MarkerCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = math.floor(state.epoch + 1e-6) if state.epoch else 0


class MarkersTrainer(PosttrainSFTTrainer):
    """SFT on rows whose prompt shows this epoch's markers and whose completion starts with all of them."""

    def __init__(self, *args, train_dataset=None, processing_class=None, **kwargs):
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        training_args = kwargs["args"]
        if train_dataset is not None:
            missing = [
                c for c in ("prompt", "completion", MARKERS_COLUMN) if c not in train_dataset.column_names
            ]
            if missing:
                raise MarkersDataError(
                    f"The training rows lack {missing}: method markers trains on its annotate stage's output "
                    "(prompt, completion and the markers column); run it through posttrain train."
                )
            if ROW_KEY not in train_dataset.column_names:
                train_dataset = train_dataset.add_column(ROW_KEY, list(range(len(train_dataset))))
        # Rows are tokenized in the collator, each epoch with its own markers.
        training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
        training_args.remove_unused_columns = False
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.marker_collator = MarkerCollator(
            tokenizer,
            schema=training_args.schema,
            dataset_rate=training_args.dataset_dropout,
            sample_rate=training_args.sample_dropout,
            seed=training_args.seed,
            max_length=training_args.max_length,
        )
        kwargs["row_columns"] = ()  # the collator reads the markers itself
        kwargs["data_collator"] = self.marker_collator
        super().__init__(*args, train_dataset=train_dataset, processing_class=processing_class, **kwargs)
        self.add_callback(MarkerEpochCallback(self.marker_collator))

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        if self.marker_collator.truncated:
            logger.warning(
                "%d training sequences were longer than max_length=%s and were cut (their answers' ends unseen); "
                "raise max_length.",
                self.marker_collator.truncated,
                self.args.max_length,
            )
        return result
