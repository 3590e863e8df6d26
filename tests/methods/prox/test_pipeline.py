"""ProX's rule teacher, gold-derived line truth and the datatrove pipeline: two workers give what one gives, and a
run that failed mid-shard resumes with nothing lost or duplicated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.methods.prox.pipeline import CorpusSource, HtmlToText, refine_corpus
from posttrain.methods.prox.program import number_lines
from posttrain.methods.prox.teacher import RuleTeacher, gold_removals, numbered_lines, removal_program

PROSE = (
    "The committee met on Tuesday to discuss the budget for the coming year. Members agreed that the library and "
    "the park should receive more money, and that the new roads would have to wait. The mayor said she was happy "
    "with the result of the meeting and thanked everyone who came to speak with the members."
)


def count_words(text: str) -> int:
    return len(text.split())


def test_rule_teacher_document_rules():
    teacher = RuleTeacher()
    assert teacher.doc_reason(PROSE) == ""
    assert teacher.doc_reason("too short to keep") == "fewer than 50 words"
    assert teacher.doc_reason(" ".join(["the and 7$%9"] * 20)) == "under 80% of words hold a letter"
    random_words = " ".join(f"cannery{i} faon stinkingness paracoele" for i in range(20))
    assert teacher.doc_reason(random_words) == "fewer than two stop words"
    assert (
        teacher.doc_reason(
            "\n".join(f"- another item {i} of the shopping list with bread" for i in range(20))
        )
        == "mostly bullet lines"
    )
    assert teacher.doc_programs([PROSE, "short"]) == ["keep_doc()", "drop_doc()"]


def test_rule_teacher_line_rules_as_programs():
    lines = ["Home | News | Sport", PROSE, "", "We use cookies to improve your experience.", "Share", PROSE]
    chunk = number_lines(lines, start=10)
    assert [n for n, _ in numbered_lines(chunk)] == list(range(10, 16))
    # Lines 10, 13 and 14 go (menu, cookie notice, a one-word button); the blank line 12 stays.
    assert RuleTeacher().chunk_programs([chunk]) == [
        "remove_lines(line_start=10, line_end=10)\nremove_lines(line_start=13, line_end=14)"
    ]
    assert removal_program([]) == "keep_chunk()"


def test_gold_removals_marks_lines_missing_from_the_clean_text():
    lines = [
        "Menu",
        "The  article's first   sentence.",
        "",
        "2",
        "Title",
        "Second sentence here 2.",
        "Footer (c) 2024",
    ]
    clean = "Title\nThe article's first sentence. Second sentence here 2."
    # "2" occurs in the article but is no line of it: a short line must match a whole clean line.
    assert gold_removals(lines, clean) == [0, 3, 6]


def _read(folder: Path) -> list[dict]:
    rows = [
        json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open(encoding="utf-8")
    ]
    return sorted(rows, key=lambda row: row["id"])


def test_two_workers_give_what_one_gives(offline_cache, tmp_path):
    source = CorpusSource("text_quality", split="test")
    refine_corpus(source, tmp_path / "one", RuleTeacher(), count_words, tasks=1, workers=1, chunk_tokens=200)
    refine_corpus(source, tmp_path / "two", RuleTeacher(), count_words, tasks=2, workers=2, chunk_tokens=200)
    for part in ("kept", "dropped"):
        assert _read(tmp_path / "one" / part) == _read(tmp_path / "two" / part)
    kept, dropped = _read(tmp_path / "one" / "kept"), _read(tmp_path / "one" / "dropped")
    assert len(kept) + len(dropped) == 50  # the fixture's test split
    assert all(not row["metadata"]["junk"] for row in kept)  # every junk document is dropped
    assert kept and all(row["metadata"]["prox"]["executed"][0] == "keep_doc()" for row in kept)
    # Each shard wrote its own file.
    assert {p.name for p in (tmp_path / "two" / "kept").glob("*.jsonl")} == {"00000.jsonl", "00001.jsonl"}


class FailingTeacher(RuleTeacher):
    """Fails on the shard holding a given document, as a worker killed mid-shard would."""

    def __init__(self, poison: str):
        super().__init__()
        object.__setattr__(self, "poison", poison)

    def doc_programs(self, texts):
        if any(self.poison in text for text in texts):
            raise RuntimeError("worker killed")
        return super().doc_programs(texts)


def test_a_failed_shard_runs_again_with_nothing_lost_or_duplicated(offline_cache, tmp_path):
    source = CorpusSource("text_quality", split="test")
    refine_corpus(source, tmp_path / "clean", RuleTeacher(), count_words, tasks=2, workers=2, batch_size=4)
    victim = _read(tmp_path / "clean" / "kept")[-1]
    out = tmp_path / "resumed"
    with pytest.raises(Exception):  # noqa: B017 - datatrove re-raises the worker's error in its own form
        refine_corpus(
            source, out, FailingTeacher(victim["text"][:200]), count_words, tasks=2, workers=2, batch_size=4
        )
    done = sorted(p.name for p in (out / "logs" / "completions").glob("*"))
    assert len(done) == 1  # the other shard finished and is marked complete
    finished = out / "kept" / f"{int(done[0]):05d}.jsonl"
    before = finished.stat().st_mtime_ns
    refine_corpus(source, out, RuleTeacher(), count_words, tasks=2, workers=2, batch_size=4)
    assert finished.stat().st_mtime_ns == before  # the finished shard was not run again
    for part in ("kept", "dropped"):
        assert _read(out / part) == _read(tmp_path / "clean" / part)


def test_html_pages_become_text_lines(offline_cache):
    from posttrain.data import load_registered

    page = load_registered("news_pages")["test"][0]
    text = HtmlToText().extract(page["html"])
    lines = text.split("\n")
    assert len(lines) > 10 and "<div" not in text
    # Most of the article's words survive extraction; the page holds more than the article.
    article = set(page["clean_text"].split())
    assert len(article & set(text.split())) > 0.8 * len(article)
    assert len(gold_removals(lines, page["clean_text"])) > 0


def test_refine_command_runs_a_yaml_and_refuses_bad_keys(offline_cache, tmp_path):
    from posttrain.methods.prox.refine import main, parse_refine, run_refine
    from posttrain.parsing import RecipeError

    config = tmp_path / "refine.yaml"
    config.write_text(
        f"source: text_quality\nsplit: test\noutput_dir: {tmp_path / 'out'}\nchunk_tokens: 200\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: text_quality\noutput_dir: x\nworkerz: 2\n")
    with pytest.raises(RecipeError, match="did you mean 'workers'"):
        parse_refine([str(bad)])
    assert main([str(bad)]) == 2  # a clean error, no traceback
    args = parse_refine(
        [str(config), "--tokenizer", str(Path(__file__).parents[2] / "fixtures" / "tokenizer")]
    )
    summary = run_refine(args)
    assert summary["documents_in"] == 50 and 0 < summary["documents_kept"] < 50
    assert 0 < summary["words_kept"] < summary["words_in"]
    assert (
        json.loads((tmp_path / "out" / "summary.json").read_text())["documents_kept"]
        == summary["documents_kept"]
    )
