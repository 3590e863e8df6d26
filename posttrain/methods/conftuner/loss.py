"""ConfTuner's loss ("ConfTuner: Training Large Language Models to Express Their Confidence Verbally"): the
tokenized Brier score of the confidence token that follows an answer.

A confidence scale is N+1 tokens, the numbers ``0..N``, token ``i`` meaning ``i / N``. At the position that
predicts the confidence, the logits of those N+1 tokens are softmaxed into ``q`` and the loss is
``sum_i q_i (y - i/N)^2`` for the answer's correctness ``y`` in {0, 1}: a proper scoring rule, lowest when the
probability mass sits on the number that matches how often such answers are right. :func:`confidence_scale`
picks N per tokenizer: the finest scale whose every number is one token after the cue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from posttrain.errors import UserError

logger = logging.getLogger(__name__)

#: The cue before the confidence number, with the scale written in: ``posttrain eval`` reads
#: ``Confidence (0-9): 7`` as 7/9 (see :func:`eval.calibration.parse_confidence`).
CONFIDENCE_CUE = "Confidence (0-{n}):"
#: What a cue may follow in a training example: the answer's last line, then a newline.
CUE_CONTEXT = "Paris.\n"
#: How the space between the cue and the number is tokenized, tried in this order: (text ending the example,
#: text in front of each number's token). A space of its own, as written text has it; the space inside the number's
#: token, for tokenizers with tokens such as " 7"; no space at all.
SEPARATORS = ((" ", ""), ("", " "), ("", ""))


class ConfidenceScaleError(UserError, ValueError):
    """No confidence scale fits the tokenizer: its numbers are not single tokens after the cue."""


@dataclass(frozen=True)
class ConfidenceScale:
    """The numbers ``0..n`` as single tokens: ``token_ids[i]`` is the token of ``number_prefix + str(i)`` after
    ``cue`` (which ends with ``separator``)."""

    n: int
    separator: str
    token_ids: tuple[int, ...]
    number_prefix: str = ""

    @property
    def cue(self) -> str:
        """The text that ends a training example; the confidence token comes next."""
        return CONFIDENCE_CUE.format(n=self.n) + self.separator

    def values(self, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The confidence each token stands for: ``i / n``."""
        return torch.arange(self.n + 1, device=device, dtype=dtype) / self.n

    def example_tail(self, answer: str) -> str:
        """An answer with the cue after it, on a line of its own: what the loss is computed after."""
        return answer.rstrip() + "\n" + self.cue


def _single_tokens(tokenizer, prefix: str, top: int, number_prefix: str = "") -> list[int | None]:
    """For each number ``0..top``, its one token (``number_prefix`` and the number) after ``prefix``, or None
    where that is not one token, the prefix's own tokens change when it follows, or the token does not read back
    as the number (an unknown-word token)."""
    base = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    texts = [prefix + number_prefix + str(i) for i in range(top + 1)]
    found: list[int | None] = []
    for i, ids in enumerate(tokenizer(texts, add_special_tokens=False)["input_ids"]):
        single = len(ids) == len(base) + 1 and ids[:-1] == base
        found.append(ids[-1] if single and tokenizer.decode([ids[-1]]).strip() == str(i) else None)
    return found


def _finest(tokens: list[int | None]) -> int:
    """The largest N such that ``0..N`` all have a token of their own, distinct from one another (0: none)."""
    seen: set[int] = set()
    for i, token in enumerate(tokens):
        if token is None or token in seen:
            return i - 1
        seen.add(token)
    return len(tokens) - 1


def confidence_scale(tokenizer, max_n: int = 100) -> ConfidenceScale:
    """The finest scale ``0..N`` (N <= ``max_n``) whose every number is one token of its own after the cue.

    Each way of writing the space in :data:`SEPARATORS` is tried; the finer scale wins, the earlier on a tie. The
    embedded SmolLM2
    tokenizer splits numbers into digits and keeps the space before a number as a token of its own: it gets
    ``0..9`` after ``"Confidence (0-9): "``. A tokenizer without even ``0`` and ``1`` as distinct single tokens
    is refused with :class:`ConfidenceScaleError`.
    """
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1, got {max_n}.")
    best: ConfidenceScale | None = None
    for separator, number_prefix in SEPARATORS:
        n = max_n
        while n >= 1:
            # The cue names the scale, so each candidate N is checked after its own cue.
            prefix = CUE_CONTEXT + CONFIDENCE_CUE.format(n=n) + separator
            tokens = _single_tokens(tokenizer, prefix, n, number_prefix)
            found = _finest(tokens)
            if found == n:
                break
            n = min(found, n - 1)
        if n >= 1 and (best is None or n > best.n):
            best = ConfidenceScale(
                n=n, separator=separator, token_ids=tuple(tokens[: n + 1]), number_prefix=number_prefix
            )
    if best is None:
        sample = tokenizer(
            CUE_CONTEXT + CONFIDENCE_CUE.format(n=9) + " 7", add_special_tokens=False
        ).input_ids
        pieces = [tokenizer.decode([t]) for t in sample]
        raise ConfidenceScaleError(
            f"No confidence scale fits the tokenizer {type(tokenizer).__name__}: ConfTuner needs the numbers 0..N "
            "(N >= 1) each as one token of its own after the confidence cue, and here even 0 and 1 are not "
            f"(e.g. '...Confidence (0-9): 7' tokenizes as {pieces}). Use a model whose tokenizer has single-token "
            "digits."
        )
    logger.info(
        "Confidence scale 0..%d (token i means i/%d), cue %r, number tokens like %r (%s)",
        best.n,
        best.n,
        best.cue,
        best.number_prefix + str(best.n),
        "every number up to 100 is one token" if best.n == 100 else "the finest scale of single tokens",
    )
    return best


def last_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token: the position whose logits predict what comes after the sequence.

    Correct for right padding (index -1 would be a pad), left padding and no padding alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return torch.where(attention_mask.bool(), positions, -1).amax(dim=1)


def tokenized_brier_loss(confidence_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``sum_i q_i (y - i/N)^2``, ``q = softmax(confidence_logits)`` over the N+1 number tokens.

    ``confidence_logits``: [batch, N+1], the logits of the tokens ``0..N`` in order; ``labels``: [batch], 1 for a
    correct answer, 0 for a wrong one. Computed in float32 whatever the logits' dtype."""
    if confidence_logits.dim() != 2 or confidence_logits.shape[1] < 2:
        raise ValueError(
            f"confidence_logits must be [batch, N+1] with N >= 1, got {tuple(confidence_logits.shape)}."
        )
    q = F.softmax(confidence_logits.float(), dim=-1)
    n = confidence_logits.shape[1] - 1
    values = torch.arange(n + 1, device=q.device, dtype=q.dtype) / n
    y = labels.to(device=q.device, dtype=q.dtype).unsqueeze(1)
    return (q * (y - values) ** 2).sum(dim=1).mean()


def expected_confidence(confidence_logits: torch.Tensor) -> torch.Tensor:
    """The confidence each row's distribution over the number tokens implies: ``sum_i q_i i/N``, [batch]."""
    q = F.softmax(confidence_logits.float(), dim=-1)
    n = confidence_logits.shape[1] - 1
    return q @ (torch.arange(n + 1, device=q.device, dtype=q.dtype) / n)


def gather_confidence_logits(
    logits: torch.Tensor, positions: torch.Tensor, token_ids: torch.Tensor | tuple[int, ...]
) -> torch.Tensor:
    """Row ``b``'s logits at ``positions[b]``, restricted to ``token_ids``: [batch, len(token_ids)]."""
    ids = torch.as_tensor(token_ids, device=logits.device, dtype=torch.long)
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, positions][:, ids]


def confidence_loss(
    logits: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, scale: ConfidenceScale
) -> torch.Tensor:
    """The tokenized Brier loss of a batch whose every sequence ends with the cue: the confidence token is
    predicted at each row's last real token. ``logits``: [batch, length, vocab]."""
    positions = last_token_positions(attention_mask)
    return tokenized_brier_loss(gather_confidence_logits(logits, positions, scale.token_ids), labels)


def confidence_forward(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, scale: ConfidenceScale
) -> torch.Tensor:
    """The model's logits of the confidence tokens after each sequence: [batch, N+1].

    Positions count real tokens only, so a left-padded row sees the positions it would see unpadded. The output
    projection runs only at the positions that predict a confidence (``logits_to_keep``), not over every position
    and the whole vocabulary as the language-model loss does."""
    positions = last_token_positions(attention_mask)
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    keep = torch.unique(positions)  # sorted
    outputs = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=keep,
        use_cache=False,
    )
    column = torch.searchsorted(keep, positions)
    return gather_confidence_logits(outputs.logits, column, scale.token_ids)
