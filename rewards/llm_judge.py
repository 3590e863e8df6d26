"""An LLM judge: a language model, served through the shared generation service (:mod:`posttrain.generation`),
reads the question, the reference answer and a model's answer and says whether the answer is right.

For free-form answers that no rule can check (S3FT's judge for open QA; any method that takes a judge). It is a
judge with a reward's contract, named by ``rewards.llm_judge:llm_judge`` and configured through ``kwargs``:

    judge: rewards.llm_judge:llm_judge
    judge_kwargs: {model: path/or/name, prompt_template: "...", accept_pattern: "^\\s*yes", reject_pattern: ...}

Each answer gets one greedy verdict of up to ``max_new_tokens`` tokens. ``accept_pattern`` and ``reject_pattern``
are regular expressions searched in the verdict (case-insensitive); a verdict matching neither counts as a
rejection and is logged, so a judge model that rambles shows up in the log instead of passing answers.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

from posttrain.generation import Engine, Sampling, make_engine, render_prompt
from posttrain.models import resolve_model_path
from rewards.contract import completion_text

logger = logging.getLogger(__name__)

DEFAULT_JUDGE_PROMPT = (
    "Question: {question}\nReference answer: {reference}\nCandidate answer: {answer}\n\n"
    "Does the candidate answer give the same answer as the reference? Reply with yes or no."
)
PLACEHOLDERS = ("question", "reference", "answer")


@functools.cache
def judge_engine(model: str, engine: str, dtype: str) -> Engine:
    """The judge's engine, started once per process and model."""
    logger.info("LLM judge: starting %s (%s engine)", model, engine)
    return make_engine(engine, resolve_model_path(model), dtype=dtype)


def parse_verdict(text: str, accept: re.Pattern, reject: re.Pattern) -> bool | None:
    """True when the verdict matches ``accept`` (and not earlier ``reject``), False for ``reject``, None for
    neither. Where both match, the earlier match decides ("No, yes would be wrong" is a rejection)."""
    yes, no = accept.search(text), reject.search(text)
    if yes and no:
        return yes.start() < no.start()
    return True if yes else False if no else None


def request_text(prompt: Any) -> str:
    """The question a prompt asks: a raw prompt's text, or the content of a chat prompt's last message."""
    if isinstance(prompt, str):
        return prompt
    content = prompt[-1]["content"] if prompt else ""
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def judge_prompts(
    prompts: Sequence[Any], references: Sequence[Any], answers: Sequence[str], template: str
) -> list[list[dict[str, str]]]:
    """One chat prompt per answer: ``template`` filled with the question (the prompt's last message), the
    reference and the answer."""
    return [
        [
            {
                "role": "user",
                "content": template.format(
                    question=request_text(prompt).strip(),
                    reference=str(reference),
                    answer=answer.strip(),
                ),
            }
        ]
        for prompt, reference, answer in zip(prompts, references, answers, strict=True)
    ]


def llm_judge(
    completions: Sequence[Any],
    prompts: Sequence[Any],
    answer: Sequence[Any],
    *,
    model: str,
    prompt_template: str = DEFAULT_JUDGE_PROMPT,
    accept_pattern: str = r"\byes\b",
    reject_pattern: str = r"\bno\b",
    max_new_tokens: int = 8,
    engine: str = "auto",
    dtype: str = "auto",
    **kwargs: Any,
) -> list[float | None]:
    """1.0 where the judge model accepts the answer against the row's ``answer`` column, 0.0 where it rejects it
    or says neither; None for a row without a reference answer."""
    missing = [name for name in PLACEHOLDERS if "{" + name + "}" not in prompt_template]
    if missing:
        raise ValueError(
            f"llm_judge: prompt_template must contain {', '.join('{' + m + '}' for m in missing)}; got "
            f"{prompt_template!r}."
        )
    accept, reject = re.compile(accept_pattern, re.IGNORECASE), re.compile(reject_pattern, re.IGNORECASE)
    texts = [completion_text(c) for c in completions]
    rows = [i for i, gold in enumerate(answer) if gold is not None and str(gold).strip()]
    scores: list[float | None] = [None] * len(texts)
    if not rows:
        return scores
    service = judge_engine(model, engine, dtype)
    chats = judge_prompts(
        [prompts[i] for i in rows], [answer[i] for i in rows], [texts[i] for i in rows], prompt_template
    )
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    verdicts = service.generate([render_prompt(service.tokenizer, chat) for chat in chats], greedy)
    unclear = 0
    for index, samples in zip(rows, verdicts, strict=True):
        verdict = parse_verdict(samples[0], accept, reject)
        unclear += verdict is None
        scores[index] = 1.0 if verdict else 0.0
    if unclear:
        logger.warning(
            "llm_judge: %d of %d verdicts matched neither accept_pattern %r nor reject_pattern %r; counted as "
            "rejections (e.g. %r).",
            unclear,
            len(rows),
            accept_pattern,
            reject_pattern,
            next(s[0] for s in verdicts if parse_verdict(s[0], accept, reject) is None)[:80],
        )
    return scores


llm_judge.probe = False  # `posttrain validate` does not start the judge model to try it
