"""A text reward learned as a linear map of frozen embeddings (DeconfoundLM's ``h``), named like any reward:
``{name: text_reward, kwargs: {path: outputs/my-reward}}``.

The folder holds ``text_reward.json``: the embedding model, how texts are embedded (mean of the last hidden
states over at most ``max_length`` tokens), and the standardisation and weights of the linear map. The
completion's text alone is scored (the reward of an observational outcome is a property of the posted text).
Models load once per process and path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.models import resolve_model_path
from rewards.contract import completion_text
from rewards.registry import register_reward

MARKER = "text_reward.json"
_ENCODERS: dict[str, tuple[Any, Any]] = {}
_lock = threading.Lock()


def _encoder(model_name_or_path: str) -> tuple[Any, Any]:
    with _lock:
        if model_name_or_path not in _ENCODERS:
            from transformers import AutoModel, AutoTokenizer  # loaded with the first scoring, not on listing

            path = resolve_model_path(model_name_or_path)
            tokenizer = AutoTokenizer.from_pretrained(path)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            _ENCODERS[model_name_or_path] = (tokenizer, AutoModel.from_pretrained(path).eval())
    return _ENCODERS[model_name_or_path]


def embed_texts(
    model_name_or_path: str, texts: Sequence[str], *, max_length: int = 128, batch_size: int = 32
) -> np.ndarray:
    """Each text's mean last hidden state under the model (float32, padding excluded): rows x hidden size, in the
    order of ``texts``. Texts are batched by length, so that a batch pads little."""
    import torch

    tokenizer, model = _encoder(model_name_or_path)
    texts = list(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                [texts[i] for i in order[start : start + batch_size]],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_length,
            )
            hidden = model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy())
    if not rows:
        return np.zeros((0, 0))
    embedded = np.concatenate(rows)
    result = np.empty_like(embedded)
    result[order] = embedded
    return result


def save_text_reward(
    folder: str | Path, model: str, max_length: int, mean, scale, weights, **info: Any
) -> Path:
    """Write a text reward to ``folder``: what :func:`text_reward` loads."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    record = {
        "model": model,
        "max_length": max_length,
        "mean": np.asarray(mean).tolist(),
        "scale": np.asarray(scale).tolist(),
        "weights": np.asarray(weights).tolist(),
        **info,
    }
    (target / MARKER).write_text(json.dumps(record))
    return target


def load_text_reward(path: str | Path) -> dict[str, Any]:
    """A saved text reward's record; a folder without one, or with mismatched sizes, is refused."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        raise ValueError(f"text_reward path {str(path)!r} holds no {MARKER}: save one with save_text_reward.")
    record = json.loads(marker.read_text())
    sizes = {len(record[k]) for k in ("mean", "scale", "weights")}
    if len(sizes) != 1:
        raise ValueError(f"{marker} is damaged: mean, scale and weights differ in length ({sorted(sizes)}).")
    return record


@register_reward("text_reward")
def text_reward(completions: Sequence[Any], *, path: str, batch_size: int = 32, **kwargs: Any) -> list[float]:
    """The learned linear reward of each completion's text (``path``: the saved reward's folder)."""
    record = load_text_reward(path)
    texts = [completion_text(c) for c in completions]
    features = embed_texts(record["model"], texts, max_length=record["max_length"], batch_size=batch_size)
    scores = ((features - np.array(record["mean"])) / np.array(record["scale"])) @ np.array(record["weights"])
    return [float(s) for s in scores]


text_reward.probe = False  # `posttrain validate` does not load the embedding model to try it
