"""A learned reward: a saved regression reward model (method ``reward_model``) scoring (prompt, answer) pairs.

Named in a recipe or an evaluation like any reward: ``{name: reward_model, kwargs: {path: outputs/my-rm}}``. The
pair is rendered exactly as the reward model was trained on it (:func:`posttrain.models.conversation_text`),
and the model's scalar output is the reward. ``path`` may also name a published reward model (a folder or a model
hub id whose checkpoint is a sequence classifier with one output, e.g. ``Skywork/Skywork-Reward-Llama-3.1-8B-v0.2``):
pairs then go through its tokenizer's chat template, cut at ``max_length`` (default 2,048) tokens. Models are loaded once per process and path; torch and transformers
are imported then too, so that listing or resolving rewards does not load them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posttrain.models import REWARD_MODEL_MARKER, conversation_text
from rewards.registry import register_reward

_MODELS: dict[str, tuple[Any, Any, int]] = {}
_lock = threading.Lock()
PUBLISHED_MAX_LENGTH = 2048


def _published_reward_model(path: str) -> bool:
    """Whether ``path`` (a folder or a hub id) holds a sequence classifier with one output: a reward model
    trained elsewhere."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return False
    classifier = any(name.endswith("ForSequenceClassification") for name in config.architectures or [])
    return classifier and config.num_labels == 1


def load_reward_model(path: str) -> tuple[Any, Any, int]:
    """The reward model saved at ``path``, its tokenizer and the token limit it was trained with, loaded once;
    a folder that is not a reward model is refused."""
    if path in _MODELS:  # scored on every reward call: the checks below (a config read) run once
        return _MODELS[path]
    marker = Path(path) / REWARD_MODEL_MARKER
    if not marker.is_file() and not _published_reward_model(path):
        raise ValueError(
            f"reward_model path {path!r} holds no reward model ({REWARD_MODEL_MARKER} is missing and it is not a "
            "sequence classifier with one output): train one with method: reward_model and name its output_dir, "
            "or name a published reward model."
        )
    with _lock:
        if path not in _MODELS:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path)
            tokenizer.truncation_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForSequenceClassification.from_pretrained(path).eval()
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tokenizer.pad_token_id
            trained_length = (
                json.loads(marker.read_text()).get("max_length", 512)
                if marker.is_file()
                else PUBLISHED_MAX_LENGTH
            )
            _MODELS[path] = (model, tokenizer, trained_length)
    return _MODELS[path]


@register_reward("reward_model")
def reward_model(
    completions: Sequence[Any],
    prompts: Sequence[Any],
    *,
    path: str,
    batch_size: int = 16,
    max_length: int | None = None,
    **kwargs: Any,
) -> list[float]:
    """The score a saved reward model (``path``: its folder) gives each (prompt, completion) pair."""
    import torch

    model, tokenizer, trained_length = load_reward_model(path)
    limit = max_length or trained_length
    texts = [conversation_text(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
    scores: list[float] = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=limit,
                add_special_tokens=False,
            ).to(device)
            scores += model(**batch).logits[:, 0].float().tolist()
    return scores


reward_model.probe = False  # `posttrain validate` does not load the reward model to try it
