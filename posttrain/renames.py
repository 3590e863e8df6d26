"""Keys and reward names that recipes bring from open-r1 and from older TRL and transformers releases.

A recipe copied from open-r1, or written for an earlier TRL, uses keys that were renamed, dropped or replaced. A
spelling match then points the wrong way (``torch_dtype`` is nearest to ``torch_compile``; it is ``dtype``), so the
recipe parser and the reward registry look here first and name the replacement. The README's "Coming from
open-r1 / TRL" section is generated from these tables (:func:`markdown_tables`).

This module imports nothing from the project: the parser and the reward registry both read it.
"""

from __future__ import annotations

from dataclasses import dataclass

COLUMN = "<column>"  # in a replacement, stands for the value the old key had (a column name)


@dataclass(frozen=True)
class Rename:
    """Old keys (or reward names) and what posttrain takes instead.

    Attributes:
        keys: the old names this row covers.
        use: what to write instead, as YAML, one item per alternative; empty when nothing replaces them.
        why: who changed it, or what posttrain does instead; short, read after the key in an error.
        source: where the old name comes from: ``open-r1``, ``TRL`` or ``transformers``.
        set_by_posttrain: the old keys are still TRL fields, but posttrain sets them from ``use``; a recipe that
            sets them is refused, since its value would be overwritten.
    """

    keys: tuple[str, ...]
    use: tuple[str, ...]
    why: str
    source: str
    set_by_posttrain: bool = False

    @property
    def targets(self) -> tuple[str, ...]:
        """The recipe keys (or reward names) the replacements set, e.g. ``rollout`` for ``rollout: hf``."""
        return tuple(dict.fromkeys(item.split(":", 1)[0].strip() for item in self.use))

    def replacement(self, value: object = None) -> str:
        """The alternatives to write, quoted; a string ``value`` (the old key's) fills in ``<column>``."""
        filled = [item.replace(COLUMN, value) if isinstance(value, str) else item for item in self.use]
        return " or ".join(repr(item) for item in filled)

    def hint(self, value: object = None) -> str:
        """What to write instead, and why (only why, when nothing replaces the old name)."""
        if not self.use:
            return self.why
        return f"it is {self.replacement(value)} in posttrain ({self.why})"


_REWARD_PARAMETER = "parameters of open-r1's {} rewards; a posttrain reward takes its own in its entry"

KEY_RENAMES: tuple[Rename, ...] = (
    Rename(("torch_dtype",), ("dtype",), "transformers renamed it", "transformers"),
    Rename(
        ("dataset_prompt_column",),
        (f'prompt_template: "{{{COLUMN}}}"',),
        "a format string over the row's columns makes the user turn, and can add text around them",
        "open-r1",
    ),
    Rename(
        ("warmup_ratio",),
        ("warmup_steps",),
        "transformers 5 merged them: a warmup_steps below 1 is a fraction of the training steps",
        "transformers",
    ),
    Rename(
        ("overwrite_output_dir",),
        (),
        "transformers 5 dropped it, and posttrain never overwrites a run: resume_from_checkpoint: auto continues "
        "it, a new output_dir starts afresh",
        "transformers",
    ),
    Rename(("evaluation_strategy",), ("eval_strategy",), "transformers renamed it", "transformers"),
    Rename(("no_cuda",), ("use_cpu",), "transformers renamed it", "transformers"),
    Rename(
        ("logging_dir",),
        ("env: {TENSORBOARD_LOGGING_DIR: <folder>}",),
        "transformers 5 dropped it; TensorBoard reads its folder from this variable, by default under output_dir",
        "transformers",
    ),
    Rename(("max_seq_length",), ("max_length",), "TRL's SFTConfig renamed it", "TRL"),
    Rename(("use_liger_loss",), ("use_liger_kernel",), "TRL's GRPOConfig renamed it", "TRL"),
    Rename(("vllm_max_model_len",), ("vllm_max_model_length",), "TRL renamed it", "TRL"),
    Rename(
        ("vllm_device",),
        ("rollout: vllm_colocate", "rollout: vllm_server"),
        "TRL dropped it: vLLM runs inside each training process, or as a server on GPUs of its own, started with "
        "`posttrain serve`",
        "TRL",
    ),
    Rename(
        ("use_vllm", "vllm_mode"),
        ("rollout: vllm_colocate", "rollout: vllm_server"),
        "posttrain sets TRL's use_vllm and vllm_mode from rollout; rollout: hf generates with the policy itself",
        "TRL",
        set_by_posttrain=True,
    ),
    Rename(
        ("vllm_gpu_memory_utilization",),
        ("rollout_memory_share",),
        "posttrain sets TRL's field from it; on CPUs it is the share of RAM for vLLM's KV cache",
        "TRL",
        set_by_posttrain=True,
    ),
    Rename(
        ("chat_template",),
        (),
        "prompts are rendered with the tokenizer's own chat template. To change it, save the tokenizer with yours "
        "in a local model folder; response_prefix (e.g. `<think>`) starts every answer with fixed text, the usual "
        "reason to edit a template; SFT recipes also take TRL's chat_template_path",
        "open-r1",
    ),
    Rename(
        ("callbacks",),
        (),
        "open-r1's callback pushes each checkpoint to a hub branch and starts its benchmarks there; here "
        "push_to_hub with hub_strategy pushes checkpoints, and evaluation_on_save evaluates each one",
        "open-r1",
    ),
    Rename(
        ("benchmarks",),
        ("evaluation: <eval.yaml>",),
        "an evaluation file (see recipes/eval/) runs on the trained model, and with evaluation_on_save on every "
        "checkpoint",
        "open-r1",
    ),
    Rename(
        ("hub_model_revision",),
        ("hub_revision",),
        "transformers' own field for the branch to push to",
        "open-r1",
    ),
    Rename(
        ("push_to_hub_revision",),
        ("push_to_hub: true",),
        "TRL pushes to the branch hub_revision names",
        "open-r1",
    ),
    Rename(
        ("overwrite_hub_revision",),
        (),
        "each push is a new commit on hub_revision; nothing is overwritten",
        "open-r1",
    ),
    Rename(
        ("wandb_entity", "wandb_project", "wandb_run_group"),
        ("env: {WANDB_ENTITY: …, WANDB_PROJECT: …, WANDB_RUN_GROUP: …}",),
        "open-r1 copies them into these environment variables; a recipe's env mapping sets them itself",
        "open-r1",
    ),
    Rename(
        ("wandb_log_unique_prompts",),
        (),
        "every completion, with its prompt and scores, is logged to completions/completions.jsonl in output_dir",
        "open-r1",
    ),
    Rename(
        ("dataset_mixture",),
        (),
        "write the mixture to a local folder (train.jsonl, test.jsonl) and name the folder in dataset_name",
        "open-r1",
    ),
    Rename(
        (
            "cosine_min_value_wrong",
            "cosine_max_value_wrong",
            "cosine_min_value_correct",
            "cosine_max_value_correct",
            "cosine_max_len",
            "repetition_n_grams",
            "repetition_max_penalty",
            "max_completion_len",
            "soft_punish_cache",
        ),
        ("reward_funcs: [{name: …, kwargs: {…}}]",),
        _REWARD_PARAMETER.format("cosine, repetition and overlong"),
        "open-r1",
    ),
    Rename(
        (
            "code_language",
            "code_eval_test_batch_size",
            "code_eval_scoring_mode",
            "code_provider",
            "ioi_provider",
            "e2b_router_url",
            "morph_router_url",
            "parallel_code_exec_per_proc",
        ),
        ("reward_funcs: [{name: code_unit_tests, kwargs: {…}}]",),
        _REWARD_PARAMETER.format("code")
        + ": code_unit_tests runs Python against the row's tests in a local sandbox (wall_time, memory_mb, workers)",
        "open-r1",
    ),
)

# open-r1's reward names, and posttrain's rewards that score the same thing.
REWARD_RENAMES: tuple[Rename, ...] = (
    Rename(
        ("accuracy",),
        ("numeric_answer", "cls_accuracy"),
        "math: numeric_answer compares the final number with the answer column; classification: cls_accuracy "
        "compares the `<answer>` block with the label column",
        "open-r1",
    ),
    Rename(
        ("format",),
        ("cls_format", "numeric_answer_format"),
        "cls_format is the same `<think>…</think><answer>…</answer>` check; numeric_answer_format asks for a final "
        "`#### <number>` instead",
        "open-r1",
    ),
    Rename(
        ("tag_count",),
        ("cls_tags",),
        "a quarter for each of the four tags that occurs once, in order; the newlines around the tags are not "
        "required",
        "open-r1",
    ),
    Rename(
        ("code", "binary_code"),
        ("code_unit_tests",),
        "runs the completion's Python against the row's unit tests (HumanEval's test and entry_point columns) in a "
        "local sandbox; it scores 1 only when every test passes, like binary_code",
        "open-r1",
    ),
    Rename(
        (
            "reasoning_steps",
            "cosine",
            "repetition_penalty",
            "length",
            "code_format",
            "ioi_code",
            "cf_code",
            "soft_overlong_punishment",
        ),
        (),
        "open-r1's own, not shipped here: write it as a plug-in, `path/to/file.py:function` with TRL's reward "
        "contract (see the README's Rewards section)",
        "open-r1",
    ),
)

# Keys that keep their name, and what to know about them.
KEPT: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("model_name_or_path",),
        "an embedded model (smollm2-135m-instruct), a local folder, or a hub id; a hub id needs the network",
    ),
    (
        ("dataset_name",),
        "a registered offline dataset (`posttrain datasets`), a local file or folder, or a hub id. A hub id needs "
        "the network: offline, save the dataset where the hub is reachable (save_to_disk, or train/test JSONL "
        "files), copy the folder over and name it here",
    ),
    (
        ("dataset_config", "dataset_train_split", "dataset_test_split"),
        "the same; the test split is the held-out split, scored by the held-out check and by evaluation",
    ),
    (("system_prompt",), "the same: a system turn before every prompt"),
    (
        ("max_prompt_length",),
        "caps the rendered prompt at N tokens, for every method. open-r1 cut longer prompts; posttrain refuses them "
        "unless `long_prompts: truncate` (keep the last N tokens, as open-r1 did) or `long_prompts: drop` says "
        "otherwise, and logs how many rows it cut or dropped",
    ),
    (
        ("reward_funcs", "reward_weights"),
        "the same keys; the reward names differ (see the reward table), and an entry may carry its own weight "
        "and kwargs",
    ),
    (
        ("beta", "loss_type", "scale_rewards", "num_generations"),
        "TRL's, but a GRPO recipe must set each one: TRL changes their defaults between releases",
    ),
    (
        ("do_eval", "eval_strategy", "per_device_eval_batch_size"),
        "TRL's, but the trainer gets no eval set: heldout_metric scores the test split before and after training",
    ),
    (("push_to_hub", "hub_model_id", "hub_strategy"), "TRL's own; they need the network and a hub login"),
    (("report_to",), "TRL's own; wandb needs the package and a login, none and tensorboard work offline"),
    (("bf16",), "the same; on a machine without a GPU it is false unless the recipe sets it"),
    (
        (
            "learning_rate",
            "num_train_epochs",
            "max_steps",
            "max_completion_length",
            "temperature",
            "log_completions",
        ),
        "TRL's and transformers' own, unchanged, as is every other field the installed TRL knows",
    ),
)

_KEYS = {key: rename for rename in KEY_RENAMES for key in rename.keys}
_REWARDS = {name: rename for rename in REWARD_RENAMES for name in rename.keys}


def key_rename(key: str) -> Rename | None:
    """What replaces a recipe key from open-r1 or an older TRL or transformers, if it is a known one."""
    return _KEYS.get(key)


def reward_rename(name: str) -> Rename | None:
    """What replaces one of open-r1's reward names, if it is one."""
    return _REWARDS.get(name)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _code(names: tuple[str, ...], joiner: str = ", ") -> str:
    return joiner.join(f"`{name}`" for name in names)


def markdown_tables() -> str:
    """The README's tables of renamed keys, renamed rewards and kept keys, in this order, a blank line apart."""
    keys = _table(
        ("key", "from", "in posttrain", "why"),
        [(_code(r.keys), r.source, _code(r.use, " or ") or "(none)", r.why) for r in KEY_RENAMES],
    )
    rewards = _table(
        ("open-r1 reward", "in posttrain", "what it scores"),
        [(_code(r.keys), _code(r.use, " or ") or "(none)", r.why) for r in REWARD_RENAMES],
    )
    kept = _table(("kept key", "what to know"), [(_code(names), note) for names, note in KEPT])
    return "\n\n".join("\n".join(table) for table in (keys, rewards, kept))
