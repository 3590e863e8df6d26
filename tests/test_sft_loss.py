"""SFT's loss on a CPU: the model's own cross-entropy stands in for TRL's fused LM head, with the same loss, the same
gradients and the same logged metrics."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from posttrain.trainers import PosttrainSFTTrainer


def rows(n: int = 6) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus {i}? Say it in words, please."}],
            "completion": [{"role": "assistant", "content": f"It is {2 * i}, twice {i}." + " Yes." * i}],
        }
        for i in range(n)
    ]


def sft_trainer(tiny_model, tmp_path, **fields) -> PosttrainSFTTrainer:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    args = SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=6,
        use_cpu=True,
        report_to="none",
        bf16=False,
        **fields,
    )
    return PosttrainSFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows()), processing_class=tokenizer
    )


def step(trainer, compute_loss) -> tuple[float, list[torch.Tensor], dict]:
    """One loss and backward through ``compute_loss``; the loss, the gradients and the metrics it logged."""
    trainer.model.zero_grad(set_to_none=True)
    trainer._metrics["train"].clear()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    count = (batch["labels"][:, 1:] != -100).sum()
    loss = compute_loss(trainer, trainer.model, dict(batch), num_items_in_batch=count)
    loss.backward()
    grads = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
    return loss.item(), grads, {k: list(v) for k, v in trainer._metrics["train"].items()}


def test_the_cpu_loss_equals_trls_fused_head_in_value_gradients_and_metrics(tiny_model, tmp_path):
    trainer = sft_trainer(tiny_model, tmp_path)
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    assert trainer._plain_lm_loss(batch), "a plain SFT batch on the CPU takes the model's own loss"
    ours, our_grads, our_metrics = step(trainer, PosttrainSFTTrainer.compute_loss)
    trls, trl_grads, trl_metrics = step(trainer, SFTTrainer.compute_loss)
    assert ours == pytest.approx(trls, rel=1e-5)
    assert len(our_grads) == len(trl_grads) > 0
    for mine, theirs in zip(our_grads, trl_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    for name in ("entropy", "mean_token_accuracy"):
        assert our_metrics[name] == pytest.approx(trl_metrics[name], rel=1e-4), name
    assert our_metrics["num_tokens"][0] > 0


def test_a_loss_beyond_the_plain_one_keeps_trls_path(tiny_model, tmp_path):
    trainer = sft_trainer(tiny_model, tmp_path, loss_type="dft")
    batch = next(iter(trainer.get_train_dataloader()))
    assert not trainer._plain_lm_loss(batch)
    trainer.model.train()
    ours, _, _ = step(trainer, PosttrainSFTTrainer.compute_loss)
    trls, _, _ = step(trainer, SFTTrainer.compute_loss)
    assert ours == trls
