"""Confidence without training: how probable the model finds its own answer, from its token probabilities.

The baseline ConfTuner is compared with ("logit-based" confidence): the answer (the completion before any stated
confidence) is scored teacher-forced after its prompt, and each answer token's probability is combined into one
number in [0, 1], either their mean or their product (the answer's joint probability).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rewards.qa import answer_part

#: How the answer tokens' probabilities become one confidence.
COMBINATIONS = ("mean", "product")


def answer_text(completion: str) -> str:
    """The answer a confidence is about: the completion before any confidence label, right-stripped."""
    return answer_part(completion).rstrip()


@torch.no_grad()
def answer_token_probabilities(
    model, tokenizer, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 8
) -> list[list[float]]:
    """Each answer token's probability under ``model`` after its rendered prompt, teacher-forced.

    The answer's tokens are those of ``prompt + answer`` after the prompt's own tokens; an empty answer has
    none. Sequences are left-padded (positions count real tokens only), so every answer ends at the last position
    and the output projection runs over the last few positions only (``logits_to_keep``), not over the prompts."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts for {len(answers)} answers.")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results: list[list[float]] = []
    for start in range(0, len(prompts), batch_size):
        batch_prompts, batch_answers = (
            prompts[start : start + batch_size],
            answers[start : start + batch_size],
        )
        full = tokenizer(
            [p + a for p, a in zip(batch_prompts, batch_answers, strict=True)], add_special_tokens=False
        )
        alone = tokenizer(list(batch_prompts), add_special_tokens=False)
        ids = full["input_ids"]
        answer_lengths = []
        for sequence, prompt_ids in zip(ids, alone["input_ids"], strict=True):
            shared = 0
            while shared < min(len(sequence), len(prompt_ids)) and sequence[shared] == prompt_ids[shared]:
                shared += 1
            # The first token has nothing before it to be predicted from.
            answer_lengths.append(len(sequence) - max(shared, 1))
        longest = max(len(s) for s in ids)
        input_ids = torch.full((len(ids), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for row, sequence in enumerate(ids):
            input_ids[row, longest - len(sequence) :] = torch.tensor(sequence)
            mask[row, longest - len(sequence) :] = 1
        keep = max(answer_lengths) + 1
        logits = model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0).to(device),
            logits_to_keep=keep,
        ).logits.float()  # the last `keep` positions
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)  # position j predicts the token after it
        targets = input_ids[:, longest - keep + 1 :].to(device)
        token_log_probs = log_probs.gather(2, targets.unsqueeze(-1)).squeeze(-1).cpu()
        for row, length in enumerate(answer_lengths):
            results.append(token_log_probs[row, keep - 1 - length :].exp().tolist() if length else [])
    return results


def combine(probabilities: Sequence[float], how: str) -> float | None:
    """One confidence from an answer's token probabilities: their mean, or their product; None for no tokens."""
    if how not in COMBINATIONS:
        raise ValueError(f"how must be one of {COMBINATIONS}, got {how!r}.")
    if not probabilities:
        return None
    if how == "mean":
        return float(sum(probabilities) / len(probabilities))
    return float(math.exp(sum(math.log(max(p, 1e-300)) for p in probabilities)))
