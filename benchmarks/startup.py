"""Start-up time of the posttrain CLI, this tree against a baseline commit, side by side.

    python benchmarks/startup.py --base a82f967                 # 5 rounds
    python benchmarks/startup.py --base main --repeats 9 --recipe recipes/quickstart/sft_intent_cpu.yaml

Times, in fresh processes, ``posttrain --help``, the listing commands (``datasets``, ``rewards``, ``methods``,
``builders``) and ``posttrain validate`` on a shipped recipe (its data included: the dataset cache and the
embedded model's tokenizer should be in place, e.g. after ``posttrain prepare``). The baseline is exported with
``git archive`` into a temporary folder, so the repository is left as it is; both trees run under this
interpreter, each from its own folder on PYTHONPATH. One untimed round warms the file cache and writes the
baseline's bytecode; then every round runs each command on both trees back to back, the order alternating
between rounds, so load from other processes falls on both alike. The table gives the median seconds of each,
their range and the ratio this tree / baseline, with the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("posttrain", "rewards", "eval")


def export_tree(ref: str, target: Path) -> str:
    """Write the files of commit ``ref`` into ``target``; returns the commit's short hash."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return commit


def this_tree() -> str:
    """The short hash of HEAD, marked when the working tree has changes."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return head + ("+changes" if dirty else "")


def environment(tree: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(tree), TOKENIZERS_PARALLELISM="false")


def check_imports_from(tree: Path, workdir: Path) -> None:
    """Fail unless the project's packages import from ``tree`` (an editable install must not win)."""
    code = (
        "import sys, importlib; print('\\n'.join(importlib.import_module(p).__file__ for p in sys.argv[1:]))"
    )
    files = subprocess.run(
        [sys.executable, "-c", code, *PACKAGES],
        cwd=workdir,
        env=environment(tree),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    wrong = [f for f in files if not Path(f).resolve().is_relative_to(tree.resolve())]
    if wrong:
        raise SystemExit(f"{tree}: the packages import from elsewhere: {wrong}")


def run_once(tree: Path, args: list[str], workdir: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "posttrain", *args],
        cwd=workdir,
        env=environment(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"posttrain {' '.join(args)} failed in {tree}:\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="Baseline commit (any git revision).")
    parser.add_argument("--repeats", type=int, default=5, help="Timed rounds (each runs both trees).")
    parser.add_argument(
        "--recipe", default="recipes/gsm_symbolic/sft_cpu.yaml", help="Shipped recipe for validate."
    )
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="startup-bench-") as scratch:
        base_tree, workdir = Path(scratch, "base"), Path(scratch, "run")
        base_tree.mkdir()
        workdir.mkdir()  # validate resolves the recipe's output_dir here: empty, in both trees
        base = export_tree(options.base, base_tree)
        trees = {"baseline": base_tree, "this tree": REPO}
        for tree in trees.values():
            check_imports_from(tree, workdir)
        commands = {
            "--help": lambda tree: ["--help"],
            "datasets": lambda tree: ["datasets"],
            "rewards": lambda tree: ["rewards"],
            "methods": lambda tree: ["methods"],
            "builders": lambda tree: ["builders"],
            f"validate {options.recipe}": lambda tree: ["validate", str(tree / options.recipe)],
        }
        load_before = os.getloadavg()
        times: dict[str, dict[str, list[float]]] = {c: {t: [] for t in trees} for c in commands}
        for round_ in range(options.repeats + 1):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for command, argv in commands.items():
                for name in order:
                    seconds = run_once(trees[name], argv(trees[name]), workdir)
                    if round_ > 0:  # round 0 warms up
                        times[command][name].append(seconds)
            print(f"round {round_}/{options.repeats} done", file=sys.stderr, flush=True)
        load_after = os.getloadavg()

    print(
        f"posttrain start-up, seconds per command in a fresh process: median of {options.repeats} interleaved "
        f"runs (range). Baseline {base}, this tree {this_tree()}; {os.cpu_count()} CPUs, load average "
        f"(1/5/15 min) {' '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{' '.join(f'{x:.2f}' for x in load_after)} after."
    )
    print()
    print("| command | baseline s | this tree s | this tree / baseline |")
    print("|---|---|---|---|")
    for command, by_tree in times.items():
        cells = []
        for name in trees:
            values = by_tree[name]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        ratio = statistics.median(by_tree["this tree"]) / statistics.median(by_tree["baseline"])
        print(f"| `posttrain {command}` | {cells[0]} | {cells[1]} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
