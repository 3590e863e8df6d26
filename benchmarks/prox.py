"""ProX on this machine: the rule teacher's document- and line-level F1 on real data, token retention, the
pipeline's documents per second with 1 and 2 workers, and the executor's own speed.

    python benchmarks/prox.py [--copies 10] [--out outputs/prox_bench]

- Document level, on text_quality's test split: a document is low quality when it comes from one of the two
  junk generators (random characters, random dictionary words); F1 of ``drop_doc`` against that, with the
  keep rate of every source beside it (short quotes and code are real text that prose rules drop).
- Line level, on news_pages' test split: each page's HTML becomes text lines (inscriptis); a line is truly
  removed when the page's clean article text does not hold it; F1 of the teacher's ``remove_lines`` against that,
  beside the F1 of removing every line and the F1 with kept lines as the positive class.
- Throughput: the whole pipeline (read, refine, write) on ``--copies`` copies of text_quality (both splits),
  as one task on one worker and as two tasks on two workers; start-up apart from steady state is not
  separable inside datatrove, so both include it.
- Executor: document and chunk programs parsed and applied per second on the refined documents' own programs.

Each phase prints its wall time and the process's peak resident memory; datatrove's workers report their own.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import time
from collections import Counter
from pathlib import Path

from posttrain.data import load_registered
from posttrain.methods.prox.pipeline import CorpusSource, HtmlToText, TokenCounter, refine_corpus
from posttrain.methods.prox.program import apply_programs, chunk_lines, number_lines
from posttrain.methods.prox.teacher import RuleTeacher, gold_removals

logger = logging.getLogger("benchmark")
REPO = Path(__file__).resolve().parent.parent


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def f1(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": score, "tp": tp, "fp": fp, "fn": fn}


def document_level(teacher: RuleTeacher) -> dict:
    rows = load_registered("text_quality")["test"].to_list()
    programs = teacher.doc_programs([r["text"] for r in rows])
    dropped = [p == "drop_doc()" for p in programs]
    tp = sum(d and r["junk"] for d, r in zip(dropped, rows, strict=True))
    fp = sum(d and not r["junk"] for d, r in zip(dropped, rows, strict=True))
    fn = sum(not d and r["junk"] for d, r in zip(dropped, rows, strict=True))
    by_source = Counter(r["source"] for r in rows)
    kept = Counter(r["source"] for d, r in zip(dropped, rows, strict=True) if not d)
    return {
        "documents": len(rows),
        **f1(tp, fp, fn),
        "keep_rate_by_source": {s: kept[s] / n for s, n in sorted(by_source.items())},
        "drop_reasons": dict(teacher.reasons),
    }


def line_level(teacher: RuleTeacher, count_tokens: TokenCounter) -> dict:
    pages = load_registered("news_pages")["test"].to_list()
    extractor = HtmlToText()
    tp = fp = fn = lines_total = 0
    tokens_before = tokens_after = 0
    for page in pages:
        lines = extractor.extract(page["html"]).split("\n")
        truth = set(gold_removals(lines, page["clean_text"]))
        chunks = chunk_lines(lines, count_tokens)
        programs = teacher.chunk_programs([number_lines(lines[c.start : c.stop], c.start) for c in chunks])
        removed = {
            n for program in programs for call in program.split("\n") if call.startswith("remove_lines")
            for n in _range(call)
        }  # fmt: skip
        tp, fp, fn = tp + len(removed & truth), fp + len(removed - truth), fn + len(truth - removed)
        lines_total += len(lines)
        text = "\n".join(lines)
        result = apply_programs(text, "keep_doc()", chunks, programs)
        tokens_before += count_tokens(text)
        tokens_after += count_tokens(result.text or "")
    kept_right = lines_total - tp - fp - fn  # lines both the truth and the teacher keep
    return {
        "pages": len(pages),
        "lines": lines_total,
        **f1(tp, fp, fn),
        # Most lines of a news page are boilerplate: removing every line scores this F1 (removal as positive).
        "remove_all_f1": f1(tp + fn, lines_total - tp - fn, 0)["f1"],
        # The same decisions with kept lines as the positive class, where boilerplate does not dominate.
        "keep_f1": f1(kept_right, fn, fp),
        "token_retention": tokens_after / tokens_before,
    }


def _range(call: str) -> range:
    numbers = [int(part.split("=")[1]) for part in call[len("remove_lines(") : -1].split(", ")]
    return range(numbers[0], numbers[1] + 1)


def corpus(copies: int, out: Path) -> Path:
    rows = [r for split in ("train", "test") for r in load_registered("text_quality")[split].to_list()]
    path = out / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for copy in range(copies):
            for index, row in enumerate(rows):
                handle.write(json.dumps({"id": f"{copy}-{index}", **row}, ensure_ascii=False) + "\n")
    return path


def throughput(path: Path, out: Path, workers: int, count_tokens: TokenCounter, documents: int) -> dict:
    target = out / f"refined-{workers}w"
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    refine_corpus(
        CorpusSource(str(path)), target, RuleTeacher(), count_tokens, tasks=workers, workers=workers
    )
    seconds = time.perf_counter() - start
    kept = sum(1 for f in (target / "kept").glob("*.jsonl") for _ in f.open(encoding="utf-8"))
    return {"workers": workers, "seconds": seconds, "docs_per_s": documents / seconds, "kept": kept}


def executor_speed(count_tokens: TokenCounter, repeats: int = 5) -> dict:
    """The rule teacher writes every text_quality document's programs (timed apart); the executor then parses
    and applies them ``repeats`` times."""
    rows = [
        r["text"] for split in ("train", "test") for r in load_registered("text_quality")[split].to_list()
    ]
    teacher = RuleTeacher()
    start = time.perf_counter()
    jobs = []
    for text, doc_program in zip(rows, teacher.doc_programs(rows), strict=True):
        lines = text.split("\n")
        chunks = chunk_lines(lines, count_tokens) if doc_program == "keep_doc()" else []
        programs = teacher.chunk_programs([number_lines(lines[c.start : c.stop], c.start) for c in chunks])
        jobs.append((text, doc_program, chunks, programs))
    teacher_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        for job in jobs:
            apply_programs(*job)
    seconds = time.perf_counter() - start
    return {
        "documents": len(jobs) * repeats,
        "executor_s": seconds,
        "executor_docs_per_s": len(jobs) * repeats / seconds,
        "teacher_and_chunking_docs_per_s": len(jobs) / teacher_s,
    }


def phase(name: str, fn, *args) -> dict:
    start = time.perf_counter()
    result = fn(*args)
    logger.info("phase %s: %.1f s, peak %.0f MB", name, time.perf_counter() - start, peak_mb())
    return {"wall_s": time.perf_counter() - start, "peak_mb": peak_mb(), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--copies", type=int, default=10, help="copies of text_quality in the throughput corpus"
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "prox_bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    count_tokens = TokenCounter("smollm2-135m-instruct")
    results = {
        "document_level": phase("document level (text_quality test)", document_level, RuleTeacher()),
        "line_level": phase("line level (news_pages test)", line_level, RuleTeacher(), count_tokens),
    }
    path = corpus(args.copies, args.out)
    documents = sum(1 for _ in path.open(encoding="utf-8"))
    for workers in (1, 2):
        results[f"pipeline_{workers}w"] = phase(
            f"pipeline, {workers} worker(s)", throughput, path, args.out, workers, count_tokens, documents
        )
    one, two = results["pipeline_1w"]["docs_per_s"], results["pipeline_2w"]["docs_per_s"]
    results["speedup_2w"] = two / one
    results["executor"] = phase("executor alone", executor_speed, count_tokens)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    logger.info("\n%s", json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
