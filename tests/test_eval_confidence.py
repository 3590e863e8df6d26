"""Confidence in `posttrain eval` beyond what an answer states: the probability the model gives its own answer
(the logit-based baseline), checked against the model's own loss, and a confidence cue written after each answer
for the model to continue."""

from __future__ import annotations

import json
import math

import pytest
import torch

from eval.answer_confidence import answer_text, answer_token_probabilities, combine
from eval.runner import EvalArguments, run_eval
from posttrain.configs import DataArguments


def test_combine_by_hand():
    assert combine([0.5, 0.25], "mean") == pytest.approx(0.375)
    assert combine([0.5, 0.25], "product") == pytest.approx(0.125)
    assert combine([], "mean") is None
    with pytest.raises(ValueError, match="mean"):
        combine([0.5], "median")


def test_answer_text_stops_before_a_stated_confidence():
    assert answer_text("Paris.\nConfidence: 90%") == "Paris."
    assert answer_text("Paris  \n") == "Paris"


def test_answer_probabilities_match_the_models_own_loss_whatever_the_batch(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in ("The capital of France is", "Name a colour, any colour at all, please.")
    ]
    answers = ["Paris, the city of light", "Blue"]
    batched = answer_token_probabilities(model, tokenizer, prompts, answers, batch_size=2)
    for prompt, answer, probabilities in zip(prompts, answers, batched, strict=True):
        ids = tokenizer(prompt + answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
        start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        labels = ids.clone()
        labels[:, :start] = -100
        with torch.no_grad():
            loss = model(
                input_ids=ids, labels=labels
            ).loss.item()  # mean negative log-likelihood of the answer
        assert len(probabilities) == ids.shape[1] - start
        assert combine(probabilities, "product") == pytest.approx(
            math.exp(-loss * len(probabilities)), rel=1e-4
        )
    alone = [
        answer_token_probabilities(model, tokenizer, [p], [a])[0]
        for p, a in zip(prompts, answers, strict=True)
    ]
    for one, other in zip(batched, alone, strict=True):
        assert one == pytest.approx(other, abs=1e-5)
    assert answer_token_probabilities(model, tokenizer, prompts[:1], [""]) == [[]]


def test_eval_reports_the_logit_baseline_and_a_cued_confidence(tiny_model, tmp_path):
    data = tmp_path / "qa.jsonl"
    rows = [{"question": f"Question {i}?", "answer": "x"} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = EvalArguments(
        model_name_or_path=str(tiny_model),
        scorers=["qa_contains"],
        max_new_tokens=4,
        engine="hf",
        dtype="float32",
        confidence=True,
        confidence_cue="Confidence (0-9): ",
        confidence_max_new_tokens=2,
        logit_confidence="product",
        output_dir=str(tmp_path / "out"),
    )
    (summary,) = run_eval(
        args, DataArguments(dataset_name=str(data), dataset_test_split="train", prompt_template="{question}")
    ).values()
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    for row in samples:
        (cued,) = row["cued_confidences"]
        assert cued.startswith("Confidence (0-9): ")
        (logit,) = row["logit_confidences"]
        assert logit is None or 0.0 < logit <= 1.0
    assert summary["logit_confidence"] == "product"
    assert summary["logit_calibrated_samples"] == sum(r["logit_confidences"][0] is not None for r in samples)
    # Every answer is wrong (the gold 'x' is never said): Brier is the mean squared confidence.
    logits = [r["logit_confidences"][0] for r in samples if r["logit_confidences"][0] is not None]
    assert summary["logit_brier"] == pytest.approx(sum(c * c for c in logits) / len(logits))
    assert summary["logit_auroc"] is None and "logit_auroc" in summary["notes"]
    assert (tmp_path / "out" / "reliability_logit.png").exists()


def test_a_cue_needs_confidence_and_a_known_combination():
    with pytest.raises(ValueError, match="confidence: true"):
        EvalArguments(model_name_or_path="m", scorers=["x"], confidence_cue="Confidence: ")
    with pytest.raises(ValueError, match="mean, product"):
        EvalArguments(model_name_or_path="m", scorers=["x"], logit_confidence="max")
