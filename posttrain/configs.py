"""Recipe configuration: dataclasses that extend TRL's, so every field is a YAML key and a CLI flag.

A recipe fills four dataclasses: :class:`RecipeArguments` (which method, held-out check), TRL's
``ModelConfig`` (model, dtype, LoRA/QLoRA), :class:`DataArguments` (dataset and prompt format) and the
method's trainer config (:class:`GRPORecipeConfig` or :class:`SFTRecipeConfig`, subclasses of TRL's).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments
from trl import GRPOConfig, ModelConfig, SFTConfig


@dataclass
class RecipeArguments:
    """What to run, and the held-out check printed before and after training."""

    method: str = field(
        default="grpo",
        metadata={"help": "Post-training method: a name from posttrain.methods (e.g. 'grpo', 'sft')."},
    )
    heldout_metric: str | None = field(
        default=None,
        metadata={
            "help": "Reward (registry name, module:function or file.py:function) used as the held-out metric, "
            "scored on greedy completions of the test split before and after training. None skips the check."
        },
    )
    heldout_samples: int = field(
        default=64,
        metadata={
            "help": "Number of test-split prompts scored by the held-out check (a fixed, seeded subset); 0 turns "
            "the check off."
        },
    )
    heldout_max_new_tokens: int = field(
        default=64, metadata={"help": "Maximum new tokens per greedy completion in the held-out check."}
    )
    heldout_batch_size: int = field(
        default=16, metadata={"help": "Prompts per generation batch in the held-out check."}
    )
    evaluation: str | None = field(
        default=None,
        metadata={
            "help": "An evaluation YAML (see recipes/eval/, path relative to the recipe) run on the trained model "
            "after training, with its results in <output_dir>/eval/final/."
        },
    )
    stage_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the method's data stages write their datasets (one folder per stage, resumable); "
            "default <output_dir>/stages."
        },
    )
    evaluation_on_save: bool = field(
        default=False,
        metadata={"help": "Also run that evaluation on every saved checkpoint (HF engine, the live policy)."},
    )

    def __post_init__(self) -> None:
        if self.heldout_samples < 0:
            raise ValueError(
                f"heldout_samples must be 0 (no held-out check) or a number of prompts, not {self.heldout_samples}."
            )


@dataclass
class DataArguments:
    """Where the data comes from and how rows become prompts (and, for SFT, completions)."""

    dataset_name: str = field(
        default="",
        metadata={
            "help": "A registered offline dataset (see `posttrain datasets`), a local JSONL/CSV/Parquet file or "
            "folder, or any `datasets.load_dataset` source."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name, if any."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split used for training."})
    dataset_test_split: str = field(default="test", metadata={"help": "Held-out split (evaluation only)."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many training rows (after a seeded shuffle)."}
    )
    prompt_template: str | None = field(
        default=None,
        metadata={
            "help": "Python format string filled from each row's columns to make the user turn, e.g. "
            "'{question}'. Not needed when the dataset already has a 'prompt' column."
        },
    )
    completion_template: str | None = field(
        default=None,
        metadata={"help": "SFT only: format string for the target completion, e.g. '{solution}'."},
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System turn prepended to every prompt."}
    )
    prompt_format: str = field(
        default="chat",
        metadata={
            "help": "'chat': conversational messages rendered by the chat template; 'raw': plain text."
        },
    )
    response_prefix: str = field(
        default="",
        metadata={
            "help": "Text every generated answer starts with, e.g. '<think>': the model continues from it (it "
            "opens the assistant turn), and rewards, the held-out check and evaluation score it as part of the "
            "answer. Generating methods only; SFT puts it in completion_template."
        },
    )

    image_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding each row's image (vision-language models): the prompt gets an image slot "
            "and the trainer passes the image to the model's processor."
        },
    )

    max_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "Longest prompt allowed, in tokens of the prompt as the trainer renders it (chat template, system "
            "prompt, generation prompt and response_prefix included), for the training split and the held-out rows "
            "(SFT: the prompt part of each row); long_prompts says what happens to longer ones. It must leave room "
            "for the answer: at most the model's context minus the tokens generated after it (GRPO's "
            "max_completion_length; heldout_max_new_tokens in the held-out check), and below max_length for SFT. None: no cap (prompts must still fit the context). posttrain eval does "
            "not apply it."
        },
    )
    long_prompts: Literal["refuse", "drop", "truncate"] = field(
        default="refuse",
        metadata={
            "help": "What happens to prompts longer than max_prompt_length: 'refuse' stops before any model loads, "
            "with their count and the longest; 'drop' leaves those rows out; 'truncate' keeps their last "
            "max_prompt_length tokens (a chat prompt keeps its markup and system message, and its other messages "
            "lose their earliest text). 'drop' and 'truncate' log how many rows they changed."
        },
    )

    data_builder: str | None = field(
        default=None,
        metadata={
            "help": "A registered data builder that rewrites the loaded splits before prompts are formatted, with "
            "its own fields (see `posttrain builders`), e.g. 'classification' (label_column, shots_per_class, ...). "
            "A method may name a default one (cls_rl: classification)."
        },
    )

    def __post_init__(self) -> None:
        if self.prompt_format not in ("chat", "raw"):
            raise ValueError(f"prompt_format must be 'chat' or 'raw', got {self.prompt_format!r}.")
        cap = self.max_prompt_length
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"max_prompt_length must be a whole number of tokens, 1 or more; got {cap!r}.")
        if self.long_prompts not in ("refuse", "drop", "truncate"):
            raise ValueError(
                f"long_prompts must be 'refuse', 'drop' or 'truncate', got {self.long_prompts!r}."
            )
        if self.long_prompts != "refuse" and cap is None:
            raise ValueError(
                f"long_prompts: {self.long_prompts} needs max_prompt_length, the number of tokens a prompt may have."
            )
        if cap is not None and self.image_column:
            raise ValueError(
                "max_prompt_length counts text tokens, and a vision-language prompt's length depends on its images: "
                "drop max_prompt_length, or image_column."
            )


@dataclass
class GRPORecipeConfig(GRPOConfig):
    """TRL's GRPOConfig plus the reward specs and the local completion log."""

    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Rewards, each a registered name, 'module:function' or 'path/to/file.py:function'; in YAML an "
            "entry may also be a mapping {name, weight, kwargs}."
        },
    )
    reward_errors: str = field(
        default="raise",
        metadata={
            "help": "What a failing reward does: 'raise' stops with an error naming the function and sample; "
            "'none' scores that sample None (excluded from the advantage) and counts it in the logs."
        },
    )
    reward_timeout: float | None = field(
        default=600.0,
        metadata={
            "help": "Seconds one call of a reward (one batch of completions) may take; the re-run of a failed batch "
            "one sample at a time gets as long again. A call that overruns is abandoned and handled as "
            "reward_errors says: 'raise' stops naming the reward, the step and the limit, 'none' scores the call's "
            "samples None and counts them. 0 or null: no limit (rewards then run in the trainer's own thread)."
        },
    )
    signal_patience: int = field(
        default=3,
        metadata={
            "help": "Stop the run after this many consecutive generation batches in which no reward scored any "
            "completion (all None or failed: nothing to learn from), and warn after this many in which every "
            "group's rewards were all equal (zero advantage). 0 turns both checks off."
        },
    )
    completions_jsonl: bool = field(
        default=True,
        metadata={"help": "Write every completion with its per-reward scores to <output_dir>/completions/."},
    )
    rollout: str = field(
        default="hf",
        metadata={
            "help": "Who generates the completions: 'hf' (the policy's own generate), 'vllm_colocate' (a vLLM "
            "engine in each training process, synced after every optimizer step) or 'vllm_server' (a separate "
            "rollout server at vllm_server_host:vllm_server_port). Sets TRL's use_vllm and vllm_mode."
        },
    )
    rollout_memory_share: float = field(
        default=0.3,
        metadata={
            "help": "Share of device memory (0-1] the vLLM engine may take: of GPU memory on GPUs, of system RAM "
            "for the KV cache on CPUs (overridden by VLLM_CPU_KVCACHE_SPACE in GiB if set)."
        },
    )

    def __post_init__(self):
        timeout = self.reward_timeout
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not 0 <= timeout < math.inf
        ):
            raise ValueError(
                f"reward_timeout must be a number of seconds (0 or null for no limit), got {timeout!r}."
            )
        self.reward_timeout = float(timeout) if timeout else None
        if (
            isinstance(self.signal_patience, bool)
            or not isinstance(self.signal_patience, int)
            or self.signal_patience < 0
        ):
            raise ValueError(
                f"signal_patience must be a whole number of batches, 0 or more; got {self.signal_patience!r}."
            )
        if self.rollout not in ("hf", "vllm_colocate", "vllm_server"):
            raise ValueError(f"rollout must be 'hf', 'vllm_colocate' or 'vllm_server', got {self.rollout!r}.")
        if self.use_vllm and self.rollout == "hf":
            raise ValueError("Set rollout: vllm_colocate or vllm_server instead of use_vllm.")
        if not 0.0 < self.rollout_memory_share <= 1.0:
            raise ValueError(f"rollout_memory_share must be in (0, 1], got {self.rollout_memory_share}.")
        if self.rollout != "hf":
            self.use_vllm = True
            self.vllm_mode = self.rollout.removeprefix("vllm_")
            self.vllm_gpu_memory_utilization = self.rollout_memory_share
        super().__post_init__()


@dataclass
class SFTRecipeConfig(SFTConfig):
    """TRL's SFTConfig; the recipe layer adds nothing of its own yet, but methods subclass this."""


@dataclass
class RewardModelConfig(TrainingArguments):
    """transformers' TrainingArguments for a regression reward model (one scalar per prompt and answer)."""

    target_column: str = field(
        default="reward",
        metadata={"help": "Dataset column holding each row's outcome, the number the reward model learns."},
    )
    max_length: int = field(
        default=512, metadata={"help": "Tokens per (prompt, answer) text; longer ones are cut from the left."}
    )


# Fields TRL has changed defaults for between releases: a GRPO recipe must set each one itself.
GRPO_EXPLICIT_FIELDS = ("loss_type", "beta", "scale_rewards", "num_generations")

__all__ = [
    "DataArguments",
    "GRPO_EXPLICIT_FIELDS",
    "GRPORecipeConfig",
    "ModelConfig",
    "RecipeArguments",
    "RewardModelConfig",
    "SFTRecipeConfig",
]
