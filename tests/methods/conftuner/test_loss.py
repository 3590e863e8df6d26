"""ConfTuner's tokenized Brier loss: its value by hand, where its gradient goes, padding, the confidence scale
chosen per tokenizer, and that gradient steps on it move a model's stated confidence towards its accuracy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from posttrain.methods.conftuner.loss import (
    ConfidenceScale,
    ConfidenceScaleError,
    confidence_forward,
    confidence_loss,
    confidence_scale,
    expected_confidence,
    last_token_positions,
    tokenized_brier_loss,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"


def test_loss_matches_a_hand_computed_value():
    # N = 2: the tokens stand for 0, 0.5 and 1.
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.log(2.0), 0.0]])
    labels = torch.tensor([1, 0])
    # Row 1: q = (1/3, 1/3, 1/3), y = 1: (1 + 0.25 + 0) / 3. Row 2: q = (0.25, 0.5, 0.25), y = 0: 0.5 * 0.25 + 0.25.
    expected = ((1.0 + 0.25) / 3 + (0.125 + 0.25)) / 2
    assert tokenized_brier_loss(logits, labels).item() == pytest.approx(expected, abs=1e-7)
    assert expected_confidence(logits).tolist() == pytest.approx([0.5, 0.5])


def test_loss_is_lowest_on_the_number_nearest_the_accuracy():
    """A proper scoring rule: fitting one distribution to answers right 70% of the time puts its mass on 6/9,
    the number of the 0..9 scale nearest 0.7, not on 9/9 as a model that always says it is sure."""
    labels = torch.tensor([1.0] * 7 + [0.0] * 3)
    logits = torch.zeros(10, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=5.0)
    for _ in range(400):
        optimizer.zero_grad()
        loss = tokenized_brier_loss(logits.expand(10, 10), labels)
        loss.backward()
        optimizer.step()
    assert int(logits.argmax()) == 6
    # Its floor is the answers' own variance, p(1 - p) = 0.21, plus (0.7 - 6/9)^2.
    assert loss.item() == pytest.approx(0.21 + (0.7 - 6 / 9) ** 2, abs=2e-3)


def test_gradient_reaches_only_the_confidence_tokens_at_the_last_real_position():
    scale = ConfidenceScale(n=2, separator=" ", token_ids=(5, 7, 9))
    logits = torch.randn(2, 6, 12, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])  # right-padded: row 0 ends at index 3
    confidence_loss(logits, mask, torch.tensor([1, 0]), scale).backward()
    touched = logits.grad.abs() > 0
    expected = torch.zeros_like(touched)
    expected[0, 3, [5, 7, 9]] = True
    expected[1, 5, [5, 7, 9]] = True
    assert torch.equal(touched, expected)


def test_last_token_positions_under_any_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0]])
    assert last_token_positions(mask).tolist() == [2, 4, 4, 2]


def test_left_and_right_padding_give_the_same_loss(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    scale = confidence_scale(tokenizer)
    texts = [
        "Q: capital of France?\nParis" + "\n" + scale.cue,
        "Q: what is 2+2? Answer briefly please.\n5" + "\n" + scale.cue,
    ]
    labels = torch.tensor([1, 0])
    losses = {}
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batch = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        assert not bool(batch["attention_mask"].all())  # the rows differ in length: one is padded
        with torch.no_grad():
            logits = confidence_forward(model, batch["input_ids"], batch["attention_mask"], scale)
        losses[side] = tokenized_brier_loss(logits, labels)
    # Each row alone, unpadded.
    alone = []
    for text in texts:
        single = tokenizer([text], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            alone.append(confidence_forward(model, single["input_ids"], single["attention_mask"], scale))
    unpadded = tokenized_brier_loss(torch.cat(alone), labels)
    assert losses["left"].item() == pytest.approx(unpadded.item(), abs=1e-5)
    assert losses["right"].item() == pytest.approx(unpadded.item(), abs=1e-5)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    scale = confidence_scale(tokenizer)
    texts = [f"Question {i}?\nAnswer {i}\n{scale.cue}" for i in range(4)]
    labels = torch.tensor([1, 0, 1, 1])
    batch = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = tokenized_brier_loss(
            confidence_forward(model, batch["input_ids"], batch["attention_mask"], scale), labels
        )
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.02
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))


# -- the scale per tokenizer ---------------------------------------------------------------------------------


def test_embedded_tokenizer_gets_the_digit_scale():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")
    scale = confidence_scale(tokenizer)
    assert (scale.n, scale.separator, scale.number_prefix) == (9, " ", "")
    assert scale.cue == "Confidence (0-9): "
    assert [tokenizer.decode([t]) for t in scale.token_ids] == [str(i) for i in range(10)]
    # The cue ends with the space token; the digit is the very next token of the text with the number.
    example = tokenizer("Paris.\n" + scale.cue + "7", add_special_tokens=False)["input_ids"]
    assert example[-1] == scale.token_ids[7]
    assert tokenizer.decode(example[-2:]) == " 7"


def word_tokenizer(pattern: str, vocabulary: list[str], digit_names: bool = False):
    """A word-level tokenizer splitting text by ``pattern``; with ``digit_names`` every digit is first written as
    its name in letters, and letters are single tokens, so no number is one token."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0}
    for word in ["Paris", ".", "\n", " ", "Confidence", "(", ")", "-", ":", *vocabulary]:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    if digit_names:
        names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.Replace(str(d), name) for d, name in enumerate(names)]
        )
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")


def test_whole_number_tokenizer_gets_the_percent_scale():
    tokenizer = word_tokenizer(r"\d+|[A-Za-z]+|\s|[^\w\s]", [str(i) for i in range(101)])
    scale = confidence_scale(tokenizer)
    assert (scale.n, scale.separator) == (100, " ")
    assert scale.cue == "Confidence (0-100): "
    assert scale.token_ids == tuple(tokenizer.convert_tokens_to_ids([str(i) for i in range(101)]))


def test_numbers_that_carry_their_space_end_the_cue_without_one():
    words = [f" {i}" for i in range(101)] + [str(i) for i in (0, 100)]  # the scale in the cue, "(0-100)"
    tokenizer = word_tokenizer(r" ?\d+|[A-Za-z]+|\s|[^\w\s]", words)
    scale = confidence_scale(tokenizer)
    assert (scale.n, scale.separator, scale.number_prefix) == (100, "", " ")
    assert scale.cue == "Confidence (0-100):"
    assert scale.token_ids[85] == tokenizer.convert_tokens_to_ids(" 85")


def test_a_scale_stops_where_numbers_stop_being_single_tokens():
    tokenizer = word_tokenizer(r"\d+|[A-Za-z]+|\s|[^\w\s]", [str(i) for i in range(5)])  # 0..4 only
    assert confidence_scale(tokenizer).n == 4
    assert confidence_scale(tokenizer, max_n=3).n == 3


def test_a_tokenizer_without_single_token_numbers_is_refused():
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokenizer = word_tokenizer(r"[A-Za-z]|\s|[^\w\s]", letters + ["C"], digit_names=True)
    assert len(tokenizer("7", add_special_tokens=False)["input_ids"]) == 5  # "seven"
    with pytest.raises(ConfidenceScaleError, match="No confidence scale fits"):
        confidence_scale(tokenizer)
    # Numbers unknown to the tokenizer all become one unknown token: not a scale either.
    unknown = word_tokenizer(r"\d+|[A-Za-z]+|\s|[^\w\s]", [])
    with pytest.raises(ConfidenceScaleError, match="even 0 and 1"):
        confidence_scale(unknown)
