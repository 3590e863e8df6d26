"""vLLM rollout on this CPU: the weight sync really moves the engine to the updated policy (tied or untied
embeddings), a partial sync raises, and GRPO runs end to end with the engine colocated in the trainer, with
full weights and with a LoRA adapter."""

from __future__ import annotations

import gc
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


@pytest.fixture(scope="class")
def engine_for():
    """``engine_for(model_dir)``: a vLLM engine in this process, reused by the tests of a class.

    One at a time: in-process engines share vLLM's process-wide parallel state, and shutting one down tears it
    down for all, so the previous engine is shut down before the next starts, and the last one when the class
    is done (before the trainers start their own).
    """
    from vllm import LLM

    from posttrain.rollout import configure_cpu_engine

    current: dict = {}

    def shut_down() -> None:
        if (llm := current.pop("llm", None)) is not None:
            llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()

    def engine_for(model_dir):
        if current.get("model_dir") != model_dir:
            shut_down()
            configure_cpu_engine(0.05)
            current.update(model_dir=model_dir, llm=LLM(model=str(model_dir), seed=0, max_model_len=256))
        return current["llm"]

    yield engine_for
    shut_down()


def probe(model_dir):
    """The tokenizer, the policy as saved, and a fixed prompt + completion with the prompt's length."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompt = tokenizer("What is 12+7?")["input_ids"]
    return model, prompt + tokenizer(" 12 + 7 = 19.")["input_ids"], len(prompt)


def optimizer_step(model, ids: list[int], prompt_len: int) -> None:
    """One SGD step that makes the fixed completion much more likely."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    labels = torch.tensor([[-100] * prompt_len + ids[prompt_len:]])
    model(torch.tensor([ids]), labels=labels).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def pushed(model, drop: str | None = None) -> list[tuple[str, torch.Tensor]]:
    """What the trainer pushes: ``named_parameters()``, which names a tied weight once (no ``lm_head.weight``)."""
    return [(name, p.detach()) for name, p in model.named_parameters() if drop is None or drop not in name]


def close(engine_logprob: float, trainer_logprob: float) -> bool:
    return engine_logprob == pytest.approx(trainer_logprob, abs=0.05 + 0.01 * abs(trainer_logprob))


class TestWeightSync:
    """Each test starts from the weights on disk; the untied model goes first so the tied one starts once."""

    @pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
    def test_weight_sync_makes_vllm_follow_an_optimizer_step(self, request, engine_for, tied):
        from posttrain.rollout import reload_engine_weights

        model_dir = request.getfixturevalue("tiny_model" if tied else "tiny_untied_model")
        llm = engine_for(model_dir)
        model, ids, prompt_len = probe(model_dir)
        assert model.config.tie_word_embeddings is tied
        assert ("lm_head.weight" in dict(model.named_parameters())) is not tied

        hf_before = hf_completion_logprob(model, ids, prompt_len)
        assert vllm_completion_logprob(llm, ids, prompt_len) == pytest.approx(hf_before, abs=0.05)

        optimizer_step(model, ids, prompt_len)
        hf_after = hf_completion_logprob(model, ids, prompt_len)
        assert hf_after > hf_before + 5.0  # the step really changed the policy
        stale = vllm_completion_logprob(llm, ids, prompt_len)
        assert stale == pytest.approx(hf_before, abs=0.05)

        tensors = pushed(model)
        # Read every layer through its kernels: the whole check, not this sync's share.
        report = reload_engine_weights(llm, tensors, kernel_reads=None)
        synced = vllm_completion_logprob(llm, ids, prompt_len)
        assert close(synced, hf_after)
        assert abs(synced - hf_before) > 5.0
        # The self-check compared every pushed tensor with what the engine computes with.
        assert report["checked"] == len(tensors) and not report["deferred"] and not report["unchecked"]
        assert report["tied"] == (["lm_head", "model.embed_tokens"] if tied else [])

    def test_partial_sync_raises(self, engine_for, tiny_model):
        from posttrain.rollout import WeightSyncError, reload_engine_weights

        llm = engine_for(tiny_model)
        model, ids, prompt_len = probe(tiny_model)
        on_disk = [(name, tensor.clone()) for name, tensor in pushed(model)]
        optimizer_step(model, ids, prompt_len)
        hf_after = hf_completion_logprob(model, ids, prompt_len)

        # A push that leaves out a layer, or the (tied) embedding, leaves the engine on other weights than the
        # policy's: the sync raises instead of letting generation go on.
        for drop, missing in [
            (".layers.1.", "model.layers.1."),
            ("embed_tokens", "model.embed_tokens.weight"),
        ]:
            reload_engine_weights(llm, on_disk)
            with pytest.raises(WeightSyncError, match=f"missing: {missing}"):
                reload_engine_weights(llm, pushed(model, drop=drop))
            assert not close(vllm_completion_logprob(llm, ids, prompt_len), hf_after)

        reload_engine_weights(llm, pushed(model))
        assert close(vllm_completion_logprob(llm, ids, prompt_len), hf_after)

    def test_stale_output_projection_never_passes_silently(self, engine_for, tiny_model, monkeypatch):
        """Without the refresh of tied layers (the engine runs in this process, so patching reaches it), the output
        projection of a tied model computes with old weights wherever its kernels keep a packed copy; the check
        must then raise. Where the kernels read the shared weight directly, the engine follows anyway."""
        from posttrain import rollout

        llm = engine_for(tiny_model)
        model, ids, prompt_len = probe(tiny_model)
        rollout.reload_engine_weights(llm, pushed(model))
        optimizer_step(model, ids, prompt_len)
        hf_after = hf_completion_logprob(model, ids, prompt_len)

        monkeypatch.setattr(rollout, "_tied_modules", lambda model: {})
        try:
            rollout.reload_engine_weights(llm, pushed(model))
        except rollout.WeightSyncError as err:
            assert "stale: lm_head" in str(err)
            assert not close(vllm_completion_logprob(llm, ids, prompt_len), hf_after)
        else:
            assert close(vllm_completion_logprob(llm, ids, prompt_len), hf_after)
        monkeypatch.undo()
        rollout.reload_engine_weights(llm, pushed(model))
        assert close(vllm_completion_logprob(llm, ids, prompt_len), hf_after)


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
