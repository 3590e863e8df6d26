"""`posttrain train`: run one recipe end to end.

The order is fixed: seed, logging, checkpoint, data stages, preflight (rewards, metric, evaluation, data),
tokenizer, model, trainer, train, save, held-out check, evaluation. Everything that can fail on bad input
fails before the model loads, in :func:`preflight`, which ``posttrain validate`` runs too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import set_seed

from eval.callback import CheckpointEvalCallback
from eval.heldout import score_heldout
from eval.runner import EvalArguments, parse_evaluation, run_eval
from posttrain.checkpoints import checkpoint_step, record_run, resolve_checkpoint
from posttrain.configs import DataArguments
from posttrain.data import load_recipe_splits, require_columns
from posttrain.formatting import (
    fit_prompt_lengths,
    format_split,
    prefixed_chat_template,
    required_columns,
)
from posttrain.parsing import RecipeError, read_yaml
from posttrain.plots import plot_training_curves
from posttrain.recipe import Recipe
from posttrain.stages import on_stage_output, run_stages, with_stage_columns
from posttrain.trainers import restore_finished_run
from rewards.contract import probe_reward
from rewards.registry import load_reward_functions, reward_required_columns

logger = logging.getLogger("posttrain")


def setup_logging(args) -> None:
    """Libraries log at TRL's per-process level; posttrain's own progress shows on the main process."""
    level = args.get_process_log_level()
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        level=level,
        stream=sys.stdout,
    )
    logging.getLogger("posttrain").setLevel(logging.INFO if args.process_index == 0 else level)
    logging.getLogger("eval").setLevel(logging.INFO if args.process_index == 0 else level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def load_splits(recipe: Recipe) -> datasets.DatasetDict:
    """Train and test splits of the recipe's dataset, through its data builder, not yet formatted."""
    return load_recipe_splits(recipe.data, recipe.builder, seed=recipe.trainer.seed)


@dataclass
class Preflight:
    """Everything a run needs that can be checked without a model: rewards, metric, evaluation and data."""

    rewards: list
    metric: Any
    evaluation: tuple[EvalArguments, DataArguments, Any] | None
    train: datasets.DatasetDict
    test: datasets.Dataset | None
    #: False when the tokenizer was not on this machine: prompt lengths are fitted once it loads.
    prompts_fitted: bool = True


def preflight(recipe: Recipe) -> Preflight:
    """The checks ``posttrain train`` runs before it loads a model, and ``posttrain validate`` runs alone.

    Loads and checks the rewards, the held-out metric and the evaluation file, loads the data through the data
    builder, and formats the training split (and the held-out rows) against every column the templates, the
    rewards and the metric read, then counts their tokens against the model's context and the trainer's limits.
    Any error here costs seconds, not a model load.
    """
    try:
        return _preflight(recipe)
    except (ValueError, FileNotFoundError) as err:
        where = recipe.path or "the recipe"
        raise RecipeError(f"{where} cannot run: {err}", hint=getattr(err, "hint", None)) from err


def _preflight(recipe: Recipe) -> Preflight:
    family = recipe.method.family
    rewards, needed = family.rewards(recipe)
    metric = None
    if recipe.recipe.heldout_metric and recipe.recipe.heldout_samples > 0:
        (metric,), _ = load_reward_functions([recipe.recipe.heldout_metric], base_dir=recipe.base_dir)
    evaluation = load_evaluation(recipe)
    # Before the method's stages have run, their columns are filled in with example values.
    raw = with_stage_columns(recipe, load_splits(recipe))
    train_data = family.format(
        datasets.DatasetDict({"train": raw["train"]}), recipe, needed, what="the rewards and templates"
    )
    test_data = None
    if metric is not None:
        if "test" not in raw:
            raise ValueError(
                f"heldout_metric needs a {recipe.data.dataset_test_split!r} split in the dataset."
            )
        # A fixed shuffle: test files are often ordered by class, and every run must score the same rows.
        test = raw["test"].shuffle(seed=0).select(range(min(recipe.recipe.heldout_samples, len(raw["test"]))))
        needed_by_metric = required_columns(recipe.data, completion=False) | reward_required_columns(metric)
        require_columns(
            test, sorted(needed_by_metric), what="heldout_metric and the prompt template (split 'test')"
        )
        test_data = format_split(test, recipe.data)
    fitted = fit_prompt_lengths(recipe, train_data["train"], test_data)
    if fitted is not None:
        train_data["train"], test_data = fitted
    probe_rows = train_data["train"].select(range(min(2, len(train_data["train"])))).to_list()
    for reward in rewards:
        probe_reward(reward, probe_rows)
    if metric is not None:
        probe_reward(metric, test_data.select(range(min(2, len(test_data)))).to_list())
    return Preflight(
        rewards=rewards,
        metric=metric,
        evaluation=evaluation,
        train=train_data,
        test=test_data,
        prompts_fitted=fitted is not None,
    )


def load_evaluation(recipe: Recipe) -> tuple[EvalArguments, DataArguments, Any] | None:
    """The recipe's evaluation YAML, parsed and checked now so a broken one fails before training."""
    if not recipe.recipe.evaluation:
        return None
    path = recipe.base_dir / recipe.recipe.evaluation
    eval_args, data_args, builder_args = parse_evaluation(
        read_yaml(path), [], str(path), base_dir=path.parent
    )
    load_reward_functions(list(eval_args.scorers), base_dir=path.parent)
    return eval_args, data_args, builder_args


def final_evaluation(recipe: Recipe, evaluation: tuple[EvalArguments, DataArguments, Any]) -> dict[str, Any]:
    """Evaluate what training saved: the full model, or the base model plus the saved adapter."""
    eval_args, data_args, builder_args = evaluation
    output_dir = recipe.trainer.output_dir
    model, adapter = (
        (recipe.model.model_name_or_path, output_dir) if recipe.model.use_peft else (output_dir, None)
    )
    eval_args = dataclasses.replace(
        eval_args,
        model_name_or_path=model,
        adapter_path=adapter,
        models=[],
        output_dir=str(Path(output_dir, "eval", "final")),
    )
    # Only the main process evaluates the saved model, whatever WORLD_SIZE the training launcher set.
    (summary,) = run_eval(
        eval_args, data_args, builder_args, base_dir=recipe.base_dir, distributed=False
    ).values()
    return summary


def _heldout(recipe: Recipe, model, tokenizer, checks: Preflight, desc: str, step: int = 0) -> dict[str, Any]:
    r = recipe.recipe
    return score_heldout(
        model,
        tokenizer,
        checks.test,
        checks.metric,
        max_new_tokens=r.heldout_max_new_tokens,
        batch_size=r.heldout_batch_size,
        desc=desc,
        step=step,
    )


def train(recipe: Recipe) -> dict[str, Any]:
    """Run the recipe; returns the held-out scores (before/after) and the training metrics.

    With ``image_column`` the model is vision-language and ``tokenizer`` is its processor. The held-out check
    is then skipped with a warning: it generates from text prompts only and would score the model blind.
    """
    args = recipe.trainer
    method = recipe.method
    family = method.family
    set_seed(args.seed)
    setup_logging(args)
    logger.info(
        "Method %s, model %s, data %s", method.name, recipe.model.model_name_or_path, recipe.data.dataset_name
    )
    checkpoint = resolve_checkpoint(args, recipe)
    run = recipe
    if method.stages:
        recipe = on_stage_output(recipe, run_stages(recipe))
    checks = preflight(recipe)
    record_run(run)

    tokenizer = family.load_tokenizer(recipe)
    if not checks.prompts_fitted:  # the tokenizer was not on this machine for the preflight
        checks.train["train"], checks.test = fit_prompt_lengths(
            recipe, checks.train["train"], checks.test, tokenizer
        )
    prefixed_template = None
    if recipe.data.response_prefix and recipe.data.prompt_format == "chat":
        prefixed_template = prefixed_chat_template(tokenizer, recipe.data.response_prefix)
    model = family.load_model(recipe)

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    run_heldout = checks.test is not None and family.heldout
    if run_heldout and recipe.data.image_column:
        logger.warning(
            "Held-out check skipped: it generates without the images; evaluate the model separately."
        )
        run_heldout = False
    if run_heldout and world_size > 1:
        logger.warning(
            "Held-out check skipped with %d processes; evaluate the saved model separately.", world_size
        )
        run_heldout = False
    results_file = Path(args.output_dir, "results.json")
    results: dict[str, Any] = {}
    if run_heldout and checkpoint is None:
        results["before"] = _heldout(recipe, model, tokenizer, checks, "Held-out check (before)")
        # Written now, so that a run killed later and resumed still reports where it started.
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=2, default=str))
    elif checkpoint is not None and results_file.exists():
        results.update({k: v for k, v in json.loads(results_file.read_text()).items() if k == "before"})

    trainer = method.trainer_class(
        model=model,
        args=args,
        train_dataset=checks.train["train"],
        processing_class=tokenizer,
        **family.trainer_kwargs(recipe, checks.rewards),
    )
    if prefixed_template is not None:
        # TRL renders chat prompts with `trainer.chat_template` when set; the tokenizer saved with the
        # model keeps its own template.
        if not hasattr(trainer, "chat_template"):
            raise RuntimeError(f"{type(trainer).__name__} has no chat_template to open answers with.")
        trainer.chat_template = prefixed_template
    if checks.evaluation is not None and recipe.recipe.evaluation_on_save:
        if world_size == 1:
            trainer.add_callback(CheckpointEvalCallback(*checks.evaluation, base_dir=recipe.base_dir))
        else:
            logger.warning("evaluation_on_save runs with one process only; evaluate checkpoints afterwards.")
    if checkpoint is not None and 0 < args.max_steps <= checkpoint_step(checkpoint):
        train_result = restore_finished_run(trainer, checkpoint)
    else:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
    results["train"] = {k: v for k, v in train_result.metrics.items() if isinstance(v, (int, float))}
    results["log_history"] = trainer.state.log_history
    if world_size > 1:
        # What follows runs on the main process alone. Every rank closes its process group here, together:
        # a rank that exits with the group still open can abort in its communication threads
        # ("terminate called without an active exception") and fail the whole launch after a good run.
        trainer.accelerator.wait_for_everyone()
        trainer.accelerator.end_training()

    if run_heldout:
        results["after"] = _heldout(
            recipe, trainer.model, tokenizer, checks, "Held-out check (after)", trainer.state.global_step
        )
    if checks.evaluation is not None and trainer.accelerator.is_main_process:
        results["evaluation"] = final_evaluation(recipe, checks.evaluation)
    if trainer.accelerator.is_main_process:
        results_file.write_text(json.dumps(results, indent=2, default=str))
        plot_training_curves(
            results["log_history"],
            Path(args.output_dir, "training_curves.png"),
            title=f"{method.name}: {args.output_dir}",
        )
        if "after" in results:
            before = results.get("before", {}).get("mean", float("nan"))
            after = results["after"]["mean"]
            logger.info(
                "Held-out %s on %d test prompts: before %.3f -> after %.3f",
                results["after"]["metric"],
                results["after"]["samples"],
                before,
                after,
            )
    return results
