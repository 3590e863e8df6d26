"""The `posttrain` command line.

posttrain train RECIPE.yaml [--field value ...]     train (also under `accelerate launch -m posttrain`)
posttrain validate RECIPE.yaml [--field value ...]  every check `train` runs before it loads a model
posttrain stage RECIPE.yaml [--field value ...]     run the method's data stages only (resumable, sharded)
posttrain eval [EVAL.yaml] [--field value ...]      batch evaluation
posttrain prepare [--model NAME] [--dataset NAME]   build the offline caches (embedded model, datasets)
posttrain refine CONFIG.yaml [--field value ...]    refine a corpus with ProX (rule teacher or trained refiner)
posttrain datasets | rewards | methods | builders   list what is registered

`posttrain train --help` (with a recipe or --method, that method's) lists every recipe field with its help;
`posttrain eval --help` every evaluation field.

The CLI is the top layer: it imports each command's modules when the command runs, so --help, `datasets`,
`rewards`, `methods` and `builders` start without loading the training stack (method records name their
trainer classes, imported when a recipe uses them). Logging is set up by :mod:`posttrain.logs`, which also filters the training stack's start-up
messages that ask nothing of the user.

Errors: bad input (a :class:`posttrain.errors.UserError`, a missing file, a checkpoint that cannot be resumed, a
reward that breaks its contract) ends in one ``error: <message>`` line, sometimes a ``hint:`` line, and exit
status 2. Anything else is a bug and keeps its traceback. ``posttrain --debug COMMAND ...`` (or
``POSTTRAIN_DEBUG=1``) shows the traceback of bad input too.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time

from posttrain.logs import setup_logging

logger = logging.getLogger("posttrain")

RECIPE_COMMANDS = ("train", "validate", "stage")
DEBUG_ENV = "POSTTRAIN_DEBUG"
# Exit status of a command stopped by bad input (argparse uses 2 for a bad command line too).
BAD_INPUT = 2


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    from posttrain.recipe import load_recipe
    from posttrain.train import train

    train(load_recipe(args.recipe, overrides))
    return 0


def _validate(args: argparse.Namespace, overrides: list[str]) -> int:
    from posttrain.checkpoints import resolve_checkpoint
    from posttrain.recipe import load_recipe
    from posttrain.train import preflight

    recipe = load_recipe(args.recipe, overrides)
    resolve_checkpoint(recipe.trainer, recipe)  # another run's folder, a damaged checkpoint; writes nothing
    if args.with_data:
        checks = preflight(recipe)
        logger.info(
            "%s: OK (method %s, %d training rows%s)",
            args.recipe,
            recipe.method.name,
            len(checks.train["train"]),
            f", {len(checks.test)} held-out rows" if checks.test is not None else "",
        )
    else:
        logger.info(
            "%s: recipe OK (method %s); data not checked (--no-data)", args.recipe, recipe.method.name
        )
    return 0


def _stage(args: argparse.Namespace, overrides: list[str]) -> int:
    from posttrain.recipe import load_recipe
    from posttrain.stages import run_stages

    recipe = load_recipe(args.recipe, overrides)
    if not recipe.method.stages:
        from posttrain.parsing import RecipeError

        raise RecipeError(f"Method {recipe.method.name!r} has no data stages; nothing to run.")
    run_stages(recipe)
    return 0


def _prepare(args: argparse.Namespace, overrides: list[str]) -> int:
    from posttrain.data import load_registered
    from posttrain.errors import UserError
    from posttrain.models import EMBEDDED_MODELS, ensure_embedded_model

    unknown = [name for name in args.model or [] if name not in EMBEDDED_MODELS]
    if unknown:
        raise UserError(
            f"Not an embedded model: {', '.join(unknown)}. Embedded: {', '.join(EMBEDDED_MODELS)}."
        )
    for name in args.model or []:
        logger.info("Model %s ready at %s", name, ensure_embedded_model(name))
    for name in args.dataset or []:
        splits = load_registered(name)
        logger.info("Dataset %s ready: %s", name, {k: len(v) for k, v in splits.items()})
    return 0


def _model_errors(eval_args) -> list[str]:
    """What is wrong with the models an evaluation names, found without loading them."""
    from pathlib import Path

    from eval.runner import model_specs
    from posttrain.recipe import model_reference_errors

    try:
        specs = model_specs(eval_args)
    except ValueError as err:
        return [str(err)]
    errors = []
    for spec in specs:
        errors += model_reference_errors(spec.model, "model")
        if spec.adapter is not None and not Path(spec.adapter).expanduser().is_dir():
            errors.append(f"adapter {spec.adapter!r} does not exist.")
    return errors


def _eval(args: argparse.Namespace, overrides: list[str]) -> int:
    from pathlib import Path

    from eval.runner import parse_evaluation, run_eval
    from posttrain.methods import discover_methods
    from posttrain.parsing import RecipeError, read_yaml

    discover_methods()  # methods register their data builders
    path = Path(args.config) if args.config else None
    config = read_yaml(path) if path else {}
    where = str(path) if path else "the command line"
    base_dir = path.parent if path else Path.cwd()
    eval_args, data_args, builder_args = parse_evaluation(config, overrides, where, base_dir=base_dir)
    errors = _model_errors(eval_args)
    if errors:
        raise RecipeError(f"{where} cannot run:\n  " + "\n  ".join(errors))
    run_eval(eval_args, data_args, builder_args, base_dir=path.parent if path else None)
    return 0


def _refine(args: argparse.Namespace, overrides: list[str]) -> int:
    from posttrain.methods.prox.refine import parse_refine, run_refine

    run_refine(parse_refine([args.config, *overrides]))
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
    elif args.command == "builders":
        from posttrain.data import registered_data_builders
        from posttrain.methods import discover_methods

        discover_methods()
        for name, builder in sorted(registered_data_builders().items()):
            sys.stdout.write(f"{name:24s} {builder.description}\n")
    else:
        from posttrain.methods import registered_methods

        for name, method in sorted(registered_methods().items()):
            sys.stdout.write(f"{name:24s} [{method.kind}] {method.description}\n")
    return 0


def field_help(command: str, config_path: str | None, overrides: list[str]) -> str:
    """Every field a recipe (or an evaluation) of this command takes, with its help string, by section."""
    from pathlib import Path

    from transformers import HfArgumentParser

    from posttrain.configs import ModelConfig, RecipeArguments
    from posttrain.methods import get_method
    from posttrain.parsing import data_sections, peek, read_yaml

    config = read_yaml(Path(config_path)) if config_path else {}
    if command == "refine":
        from posttrain.methods.prox.refine import RefineArguments

        types = (RefineArguments,)
        title = "posttrain refine CONFIG.yaml [--field value ...]"
    elif command == "eval":
        from eval.runner import EvalArguments
        from posttrain.methods import discover_methods

        discover_methods()
        types = (EvalArguments, *data_sections(config, overrides, None))
        title = "posttrain eval [EVAL.yaml] [--field value ...]"
    else:
        method = get_method(str(peek(config, overrides, "method", "grpo")))
        types = (RecipeArguments, ModelConfig, *data_sections(config, overrides, method.data_builder))
        types += (method.config_class,)
        title = f"posttrain {command} RECIPE.yaml [--field value ...]  (fields of method {method.name!r})"
    parser = HfArgumentParser(types, prog=title, add_help=False)
    for action in parser._actions:
        if action.help:
            action.help = argparse_help(action.help)
    return parser.format_help()


def argparse_help(text: str) -> str:
    """``text`` as argparse must receive a help string: argparse %-formats it, so a lone ``%`` (``5% of rows``)
    becomes ``%%``. A ``%%`` (transformers and TRL write their own help so) and a ``%(name)s`` are kept."""
    return re.sub(r"%%|%\(|%", lambda m: m.group() if len(m.group()) == 2 else "%%", text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posttrain", description="Post-training recipes for LLMs.")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"Show the full traceback of bad input too (also {DEBUG_ENV}=1); bugs always show theirs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "train", help="Train a recipe; any recipe field can follow as --field value.", add_help=False
    )
    p.add_argument("recipe")
    p.set_defaults(func=_train)
    p = sub.add_parser(
        "validate",
        help="Run every check `train` runs before loading a model (recipe, rewards, data).",
        add_help=False,
    )
    p.add_argument("recipe")
    p.add_argument("--no-data", dest="with_data", action="store_false", help="Skip loading the dataset.")
    p.set_defaults(func=_validate)
    p = sub.add_parser(
        "stage", help="Run a method's data stages (resumable, sharded by rank).", add_help=False
    )
    p.add_argument("recipe")
    p.set_defaults(func=_stage)
    p = sub.add_parser("eval", help="Evaluate models in bulk; any eval field can follow as --field value.")
    p.add_argument("config", nargs="?", help="Evaluation YAML (optional: fields may all come as flags).")
    p.set_defaults(func=_eval)
    p = sub.add_parser(
        "refine",
        help="Refine a corpus with ProX (recipes/refine/*.yaml); any field can follow as --field value.",
        add_help=False,
    )
    p.add_argument("config", help="Refinement YAML: source, output_dir, programmer (rules or a refiner).")
    p.set_defaults(func=_refine)
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
    for name in ("datasets", "rewards", "methods", "builders"):
        sub.add_parser(name, help=f"List registered {name}.").set_defaults(func=_list)
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean bad input rather than a bug.

    Read from the modules that define them only when those are loaded: a module never imported cannot
    have raised its error, and importing it here would load the training stack for nothing.
    """
    from posttrain.errors import UserError

    types: list[type[BaseException]] = [UserError, FileNotFoundError]
    for module, name in (("rewards.contract", "RewardContractError"),):
        if module in sys.modules:
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def _rank_specific(err: BaseException) -> bool:
    """Whether an error can differ between the processes of one launch (it comes from a rank's own samples).

    Every other user error comes from input every process reads alike, the recipe, its data and its
    references, so the processes of one machine all meet the same one."""
    contract = sys.modules.get("rewards.contract")
    return contract is not None and isinstance(err, contract.RewardContractError)


#: Seconds a process that does not report a launch's bad input waits before exiting (see report_user_error).
REPORT_GRACE_S = 5.0


def report_user_error(err: BaseException) -> None:
    """Log bad input as ``error: <message>`` (and ``hint: <hint>``), once per machine of a launch.

    Under ``torchrun`` or ``accelerate launch`` every process stops on the same bad recipe: the first process
    of each machine (``LOCAL_RANK`` 0) reports it, so a launch on 8 GPUs prints it once, and a file missing on
    one machine only is still reported there. An error from one rank's own samples (a reward breaking its
    contract) is reported by that rank, with its rank.

    The other processes wait ``REPORT_GRACE_S`` before they exit: the launcher stops every process as soon as one
    exits, and the reporting process, a moment behind, must still get to print the error.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank_specific = _rank_specific(err)
    if world > 1 and not rank_specific and int(os.environ.get("LOCAL_RANK", "0")) != 0:
        logger.debug("error: %s", err)
        time.sleep(REPORT_GRACE_S)
        return
    prefix = f"[rank {os.environ.get('RANK', '0')}] " if world > 1 and rank_specific else ""
    logger.error("error: %s%s", prefix, err)
    hint = getattr(err, "hint", None)
    if hint is None and rank_specific:
        hint = f"posttrain --debug (or {DEBUG_ENV}=1) shows the reward's traceback."
    if hint:
        logger.error("hint: %s", hint)


def _split_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """Take out ``--debug``: first, or anywhere without a value of its own (TRL's ``--debug OPTION`` keeps its
    value and stays a recipe field)."""
    rest, debug = [], os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")
    for i, arg in enumerate(argv):
        value_follows = i + 1 < len(argv) and not argv[i + 1].startswith("-")
        if arg == "--debug" and (i == 0 or not value_follows):
            debug = True
            continue
        rest.append(arg)
    return rest, debug


def main(argv: list[str] | None = None) -> int:
    argv, debug = _split_debug_flag(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    setup_logging()
    try:
        return _dispatch(parser, argv)
    except Exception as err:
        if debug or not isinstance(err, _user_error_types()):
            raise
        report_user_error(err)
        return BAD_INPUT


def _dispatch(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    command = argv[0] if argv else None
    wants_help = any(a in ("-h", "--help") for a in argv[1:])
    if command in (*RECIPE_COMMANDS, "eval", "refine") and wants_help:
        rest = [a for a in argv[1:] if a not in ("-h", "--help")]
        config = rest[0] if rest and not rest[0].startswith("-") else None
        sys.stdout.write(field_help(command, config, rest[1:] if config else rest))
        return 0
    # Recipe fields are parsed by the recipe layer; argparse only takes the command and its own options.
    if command == "eval":
        # Every eval field is a flag, so only a first argument that is not a flag can be the YAML file.
        has_config = len(argv) > 1 and not argv[1].startswith("-")
        args = argparse.Namespace(command="eval", config=argv[1] if has_config else None, func=_eval)
        overrides = argv[2:] if has_config else argv[1:]
    else:
        args, overrides = parser.parse_known_args(argv)
    if args.command not in (*RECIPE_COMMANDS, "serve", "eval", "refine") and overrides:
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    return args.func(args, overrides)


if __name__ == "__main__":
    sys.exit(main())
