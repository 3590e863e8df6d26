"""Cut small test fixtures out of the converted offline datasets.

Converts every registered dataset (downloading it once if the cache is empty) and writes a few dozen
to a few hundred rows of each split to ``tests/fixtures/data/<name>/`` together with its
``meta.json``, so tests can seed a cache with `posttrain.data.seed_cache_from` and never touch the
network. Rows are picked deterministically (the first rows of each template or label, or an even
stride through the split), so rerunning the script reproduces the same files.

    python scripts/make_data_fixtures.py [--out tests/fixtures/data] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing posttrain

from posttrain.data import prepare_registered, registered_datasets  # noqa: E402

logger = logging.getLogger("make_data_fixtures")

Row = dict[str, Any]

# name -> (how rows are picked, count per split): "group:<column>" keeps the first n rows of every value
# of <column> (all templates / all labels stay represented); "stride" spreads n rows over the split; "small"
# keeps the n smallest rows (whole web pages run to megabytes).
PLAN: dict[str, tuple[str, dict[str, int]]] = {
    "gsm_symbolic": ("group:template_id", {"train": 2, "test": 2}),
    "humaneval": ("stride", {"train": 20, "test": 8}),
    "qa_wikidata": ("stride", {"train": 150, "test": 60}),
    "intent_recognition": ("group:label", {"train": 10, "test": 6}),
    "amazon_reviews": ("stride", {"train": 100, "test": 50}),
    "news_pages": ("small", {"train": 3, "test": 2}),
}
DEFAULT_PLAN = ("stride", {"train": 100, "test": 50})


def pick(rows: list[Row], how: str, n: int) -> list[Row]:
    """Choose rows for a fixture, preserving their order in the split."""
    if how.startswith("group:"):
        column = how.split(":", 1)[1]
        taken: dict[Any, int] = defaultdict(int)
        chosen = []
        for row in rows:
            if taken[row[column]] < n:
                taken[row[column]] += 1
                chosen.append(row)
        return chosen
    if len(rows) <= n:
        return list(rows)
    if how == "small":
        smallest = sorted(range(len(rows)), key=lambda i: len(json.dumps(rows[i], ensure_ascii=False)))[:n]
        return [rows[i] for i in sorted(smallest)]
    return [rows[i * len(rows) // n] for i in range(n)]


def read_jsonl(path: Path) -> list[Row]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_fixture(name: str, out: Path) -> None:
    source_dir = prepare_registered(name)
    meta = json.loads((source_dir / "meta.json").read_text(encoding="utf-8"))
    how, counts = PLAN.get(name, DEFAULT_PLAN)
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    rows = {}
    for split in ("train", "test"):
        rows[split] = pick(read_jsonl(source_dir / f"{split}.jsonl"), how, counts[split])
        with (target / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows[split]:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    # Keep the full conversion's counts: tests and readers can tell the fixture is a subset.
    meta["fixture_of_rows"] = meta["rows"]
    meta["rows"] = {split: len(r) for split, r in rows.items()}
    (target / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in target.iterdir())
    logger.info("%s: %s rows, %.0f KB", name, meta["rows"], size / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="datasets to cut (default: all registered)")
    parser.add_argument("--out", type=Path, default=REPO / "tests/fixtures/data")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.names or registered_datasets():
        write_fixture(name, args.out)


if __name__ == "__main__":
    main()
