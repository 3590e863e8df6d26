"""vLLM rollout on this CPU: the weight sync really moves the engine to the updated policy, and GRPO runs
end to end with the engine colocated in the trainer, with full weights and with a LoRA adapter."""

from __future__ import annotations

import json

import pytest
import torch

from posttrain.cli import main
from tests.test_train_e2e import grpo_config, read_jsonl, write

pytestmark = pytest.mark.slow


def hf_completion_logprob(model, ids: list[int], prompt_len: int) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return logprobs[prompt_len - 1 :].sum().item()


def vllm_completion_logprob(llm, ids: list[int], prompt_len: int) -> float:
    from vllm import SamplingParams

    output = llm.generate(
        [{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False
    )
    return sum(next(iter(d.values())).logprob for d in output[0].prompt_logprobs[prompt_len:])


def test_weight_sync_makes_vllm_follow_an_optimizer_step(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM

    from posttrain.rollout import configure_cpu_engine, reload_engine_weights

    configure_cpu_engine(0.05)
    llm = LLM(model=str(tiny_model), seed=0, max_model_len=256)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    prompt = tokenizer("What is 12+7?")["input_ids"]
    ids = prompt + tokenizer(" 12 + 7 = 19.")["input_ids"]

    hf_before = hf_completion_logprob(model, ids, len(prompt))
    assert vllm_completion_logprob(llm, ids, len(prompt)) == pytest.approx(hf_before, abs=0.05)

    # One optimizer step that makes the fixed completion much more likely.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    labels = torch.tensor([[-100] * len(prompt) + ids[len(prompt) :]])
    model(torch.tensor([ids]), labels=labels).loss.backward()
    optimizer.step()
    hf_after = hf_completion_logprob(model, ids, len(prompt))
    assert hf_after > hf_before + 5.0  # the step really changed the policy

    stale = vllm_completion_logprob(llm, ids, len(prompt))
    assert stale == pytest.approx(hf_before, abs=0.05)
    reload_engine_weights(llm, [(name, p.detach()) for name, p in model.named_parameters()])
    synced = vllm_completion_logprob(llm, ids, len(prompt))
    assert synced == pytest.approx(hf_after, abs=0.05 + 0.01 * abs(hf_after))
    assert abs(synced - hf_before) > 5.0


def test_failed_sync_raises_instead_of_training_on_stale_weights():
    from posttrain.rollout import WeightSyncError, reload_engine_weights

    class BrokenEngine:
        def collective_rpc(self, method, kwargs):
            raise AttributeError("'Parameter' object has no attribute 'weight_loader'")

    with pytest.raises(WeightSyncError, match="stale weights"):
        reload_engine_weights(BrokenEngine(), [("w", torch.zeros(1))])


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_grpo_with_vllm_colocated_on_cpu(tiny_model, offline_cache, tmp_path, lora):
    out = tmp_path / "out"
    config = grpo_config(
        tiny_model, out, heldout_metric=None, rollout="vllm_colocate", rollout_memory_share=0.05
    )
    config["learning_rate"] = 1e-3  # big enough that the sync after step 1 has something to carry
    if lora:
        config.update(use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"])
    assert main(["train", str(write(tmp_path / "grpo.yaml", config))]) == 0
    rows = read_jsonl(out / "completions" / "completions.jsonl")
    assert len(rows) == 8
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "sampling/sampling_logp_difference/mean" in e]
    # vLLM generated the completions, and its log-probabilities agree with the trainer's after each sync.
    assert len(logged) == 2
    assert all(e["sampling/sampling_logp_difference/mean"] < 0.05 for e in logged)
