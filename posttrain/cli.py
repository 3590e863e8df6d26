"""The `posttrain` command line.

posttrain train RECIPE.yaml [--field value ...]     train (also under `accelerate launch -m posttrain`)
posttrain validate RECIPE.yaml [--field value ...]  parse and check a recipe and its data, load no model
posttrain prepare [--model NAME] [--dataset NAME]   build the offline caches (embedded model, datasets)
posttrain datasets | rewards | methods              list what is registered
"""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger("posttrain")


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    from posttrain.recipe import load_recipe
    from posttrain.train import train

    recipe = load_recipe(args.recipe, overrides)
    train(recipe)
    return 0


def _validate(args: argparse.Namespace, overrides: list[str]) -> int:
    import datasets

    from posttrain.formatting import format_dataset
    from posttrain.recipe import load_recipe
    from posttrain.train import load_recipe_rewards, load_splits

    recipe = load_recipe(args.recipe, overrides)
    if args.with_data:
        _, needed = load_recipe_rewards(recipe)
        raw = load_splits(recipe)
        format_dataset(datasets.DatasetDict({"train": raw["train"]}), recipe.data, recipe.method.kind, needed)
    logger.info("%s: OK (method %s)", args.recipe, recipe.method.name)
    return 0


def _prepare(args: argparse.Namespace, overrides: list[str]) -> int:
    from posttrain.data import load_registered
    from posttrain.models import ensure_embedded_model

    for name in args.model or []:
        logger.info("Model %s ready at %s", name, ensure_embedded_model(name))
    for name in args.dataset or []:
        splits = load_registered(name)
        logger.info("Dataset %s ready: %s", name, {k: len(v) for k, v in splits.items()})
    return 0


def _eval(args: argparse.Namespace, overrides: list[str]) -> int:
    from pathlib import Path

    from eval.runner import EvalArguments, run_eval
    from posttrain.configs import DataArguments
    from posttrain.recipe import parse_dataclasses, read_yaml

    path = Path(args.config) if args.config else None
    config = read_yaml(path) if path else {}
    where = str(path) if path else "the command line"
    eval_args, data_args = parse_dataclasses(config, overrides, (EvalArguments, DataArguments), where)
    run_eval(eval_args, data_args, base_dir=path.parent if path else None)
    return 0


def _serve(args: argparse.Namespace, overrides: list[str]) -> int:
    import os

    import torch

    from posttrain.models import resolve_model_path
    from posttrain.rollout import cpu_kvcache_gib, serve_command

    gpu = torch.cuda.is_available()
    env = dict(
        os.environ, VLLM_SERVER_DEV_MODE="1"
    )  # exposes /collective_rpc and /server_info to the trainer
    extra = list(overrides)
    if gpu:
        extra += ["--gpu-memory-utilization", str(args.memory_share)]
    else:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", cpu_kvcache_gib(args.memory_share))
    command = serve_command(resolve_model_path(args.model), args.host, args.port, extra, gpu=gpu)
    logger.info("Starting rollout server: %s", " ".join(command))
    os.execve(command[0], command, env)
    return 0  # not reached


def _list(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.command == "datasets":
        from posttrain.data import registered_datasets

        for name, source in sorted(registered_datasets().items()):
            sys.stdout.write(f"{name:24s} {source.package}=={source.version:10s} {source.licence}\n")
    elif args.command == "rewards":
        from rewards.registry import registered_rewards

        for name, fn in sorted(registered_rewards().items()):
            doc = (fn.__doc__ or "").strip().splitlines()
            sys.stdout.write(f"{name:24s} {doc[0] if doc else ''}\n")
    else:
        from posttrain.methods import registered_methods

        for name, method in sorted(registered_methods().items()):
            sys.stdout.write(f"{name:24s} [{method.kind}] {method.description}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posttrain", description="Post-training recipes for LLMs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="Train a recipe; any recipe field can follow as --field value.")
    p.add_argument("recipe")
    p.set_defaults(func=_train)
    p = sub.add_parser("validate", help="Check a recipe (and its dataset columns) without loading a model.")
    p.add_argument("recipe")
    p.add_argument("--no-data", dest="with_data", action="store_false", help="Skip loading the dataset.")
    p.set_defaults(func=_validate)
    p = sub.add_parser("eval", help="Evaluate models in bulk; any eval field can follow as --field value.")
    p.add_argument("config", nargs="?", help="Evaluation YAML (optional: fields may all come as flags).")
    p.set_defaults(func=_eval)
    p = sub.add_parser(
        "serve", help="Run a vLLM rollout server; extra arguments go to the vLLM OpenAI server."
    )
    p.add_argument("model", help="Embedded name, local checkpoint or hub id (the recipe's model).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--memory-share", type=float, default=0.3, help="GPU memory share, or RAM share for the CPU KV cache."
    )
    p.set_defaults(func=_serve)
    p = sub.add_parser("prepare", help="Build offline caches: the embedded model and registered datasets.")
    p.add_argument("--model", action="append", help="Embedded model name (repeatable).")
    p.add_argument("--dataset", action="append", help="Registered dataset name (repeatable).")
    p.set_defaults(func=_prepare)
    for name in ("datasets", "rewards", "methods"):
        sub.add_parser(name, help=f"List registered {name}.").set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Recipe fields are parsed by the recipe layer; argparse only takes the command and its own options.
    if argv[:1] == ["eval"]:
        # Every eval field is a flag, so only a first argument that is not a flag can be the YAML file.
        has_config = len(argv) > 1 and not argv[1].startswith("-")
        args = argparse.Namespace(command="eval", config=argv[1] if has_config else None, func=_eval)
        overrides = argv[2:] if has_config else argv[1:]
    else:
        args, overrides = parser.parse_known_args(argv)
    if args.command not in ("train", "validate", "serve", "eval") and overrides:
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    from posttrain.recipe import RecipeError

    try:
        return args.func(args, overrides)
    except RecipeError as err:
        logger.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
