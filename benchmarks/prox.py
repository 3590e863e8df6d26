"""ProX on this machine: the rule teacher's document- and line-level F1 on real data, token retention, the
pipeline's documents per second with 1 and 2 workers, the executor's own speed, and a refiner trained on the
rule teacher's programs measured beside it on held-out documents.

    python benchmarks/prox.py [--copies 40] [--out outputs/prox_bench] [--only teacher executor refiner]

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
- Refiner: ``posttrain train recipes/prox/refiner_rules_cpu.yaml`` trains the embedded
  SmolLM2-135M-Instruct on the rule teacher's programs for text_quality's training split; then, in a process of
  its own, the trained refiner (``ModelRefiner``, batched, through the shared generation service) writes programs
  for held-out documents: document-level F1 on text_quality's test split and line-level removal F1 on
  news_pages' test split, each beside the rule teacher's on the same documents, and its documents per second
  refining text_quality's test documents (document program, then chunk programs for the kept ones), which the
  executor's documents per second are divided by. Both are phases of ``benchmarks/phases.py``: a run stopped
  mid-way resumes (training from its last checkpoint), and each prints its wall time and peak memory.

Each phase prints its wall time and the process's peak resident memory; datatrove's workers report their own.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from posttrain.data import load_registered
from posttrain.methods.prox.pipeline import CorpusSource, HtmlToText, TokenCounter, refine_corpus
from posttrain.methods.prox.program import apply_programs, chunk_lines, doc_decision, number_lines
from posttrain.methods.prox.refiner import ModelRefiner
from posttrain.methods.prox.teacher import Programmer, RuleTeacher, gold_removals

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # the shared phase runner (phases.py) beside this script
from phases import Phases  # noqa: E402

logger = logging.getLogger("benchmark")
REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "prox" / "refiner_rules_cpu.yaml"
PARTS = ("teacher", "throughput", "executor", "refiner")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def f1(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": score, "tp": tp, "fp": fp, "fn": fn}


def document_level(teacher: Programmer, limit: int | None = None) -> dict:
    """F1 of dropping text_quality's junk documents (its test split, the first ``limit`` documents)."""
    rows = load_registered("text_quality")["test"].to_list()[:limit]
    programs = teacher.doc_programs([r["text"] for r in rows])
    return {**doc_scores(rows, programs), "drop_reasons": dict(getattr(teacher, "reasons", {}))}


def doc_scores(rows: list[dict], programs: list[str]) -> dict:
    """Drop-as-positive F1 of ``programs`` against the rows' junk flag, and each source's keep rate."""
    # As the executor decides: drop_doc() drops; keep_doc(), nothing or a malformed program keeps.
    dropped = [not doc_decision(p)[0] for p in programs]
    tp = sum(d and r["junk"] for d, r in zip(dropped, rows, strict=True))
    fp = sum(d and not r["junk"] for d, r in zip(dropped, rows, strict=True))
    fn = sum(not d and r["junk"] for d, r in zip(dropped, rows, strict=True))
    by_source = Counter(r["source"] for r in rows)
    kept = Counter(r["source"] for d, r in zip(dropped, rows, strict=True) if not d)
    return {
        "documents": len(rows),
        **f1(tp, fp, fn),
        "keep_rate_by_source": {s: kept[s] / n for s, n in sorted(by_source.items())},
        "programs": programs,
    }


def line_level(
    teacher: Programmer, count_tokens: TokenCounter, chunk_tokens: int = 1_500, limit: int | None = None
) -> dict:
    """F1 of removing the lines news_pages' clean text lacks (its test split, the first ``limit`` pages), with
    chunks of at most ``chunk_tokens`` tokens. A line counts as removed when the executor ran a call removing it
    (a chunk whose program it ignored removes nothing)."""
    pages = load_registered("news_pages")["test"].to_list()[:limit]
    extractor = HtmlToText()
    tp = fp = fn = lines_total = malformed = 0
    tokens_before = tokens_after = 0
    examples: list[dict] = []  # a few chunks the programmer cleaned, with the lines truly removed
    for page in pages:
        lines = extractor.extract(page["html"]).split("\n")
        truth = set(gold_removals(lines, page["clean_text"]))
        chunks = chunk_lines(lines, count_tokens, chunk_tokens)
        numbered = [number_lines(lines[c.start : c.stop], c.start) for c in chunks]
        programs = teacher.chunk_programs(numbered)
        examples += [
            {"chunk": n, "program": p, "truth": [i for i in c if i in truth]}
            for n, p, c in zip(numbered, programs, chunks, strict=True)
            if p != "keep_chunk()"
        ][: 6 - len(examples)]
        text = "\n".join(lines)
        result = apply_programs(text, "keep_doc()", chunks, programs)
        removed = {n for call in result.executed if call.startswith("remove_lines") for n in _range(call)}
        tp, fp, fn = tp + len(removed & truth), fp + len(removed - truth), fn + len(truth - removed)
        lines_total += len(lines)
        malformed += len(result.malformed)
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
        "malformed_calls": malformed,
        "examples": examples,
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


def measure_refiner(args: argparse.Namespace) -> dict:
    """The trained refiner ``args.heldout`` and the rule teacher on the same held-out documents: document-level
    F1 (text_quality test), line-level F1 (news_pages test), and the refiner's documents per second refining
    text_quality's test documents whole (document programs, then chunk programs for the kept ones, through the
    executor), timed after a warm-up request that starts the engine."""
    recipe = yaml.safe_load(RECIPE.read_text())
    chunk_tokens, doc_chars = recipe["prox_chunk_tokens"], recipe["prox_doc_chars"]
    refiner = ModelRefiner(str(args.heldout), engine=args.engine, doc_chars=doc_chars)
    count_tokens = TokenCounter(str(args.heldout))
    start = time.perf_counter()
    refiner.doc_programs(["A warm-up request starts the engine."])
    startup_s = time.perf_counter() - start
    rows = load_registered("text_quality")["test"].to_list()[: args.docs]
    texts = [r["text"] for r in rows]
    start = time.perf_counter()
    doc_programs = refiner.doc_programs(texts)
    doc_s = time.perf_counter() - start
    # The refiner's speed: the first refine_docs documents refined whole (their document programs' share of the
    # time above, then the chunk programs of the kept ones, then the executor).
    whole = min(args.refine_docs, len(texts))
    start = time.perf_counter()
    ranges = [
        chunk_lines(t.split("\n"), count_tokens, chunk_tokens) if doc_decision(p)[0] else []
        for t, p in zip(texts[:whole], doc_programs, strict=False)
    ]
    chunks = [
        number_lines(t.split("\n")[r.start : r.stop], r.start)
        for t, rs in zip(texts, ranges, strict=False)
        for r in rs
    ]
    chunk_programs = iter(refiner.chunk_programs(chunks) if chunks else [])
    refined = []
    for text, doc_program, doc_ranges in zip(texts, doc_programs, ranges, strict=False):
        refined.append(
            apply_programs(text, doc_program, doc_ranges, [next(chunk_programs) for _ in doc_ranges])
        )
    refine_s = time.perf_counter() - start + doc_s * whole / len(texts)
    logger.info("refiner: %d documents refined whole in %.1f s (%d chunks)", whole, refine_s, len(chunks))
    document = doc_scores(rows, doc_programs)
    teacher_document = doc_scores(rows, RuleTeacher().doc_programs(texts))
    start = time.perf_counter()
    lines = line_level(refiner, count_tokens, chunk_tokens, args.pages)
    lines_s = time.perf_counter() - start
    teacher_lines = line_level(RuleTeacher(), count_tokens, chunk_tokens, args.pages)
    words_in = sum(r.words_before for r in refined)
    examples = [
        {
            "source": row["source"],
            "junk": row["junk"],
            "before": text,
            "after": result.text,
            **result.metadata(),
        }
        for row, text, result in zip(rows, texts, refined, strict=False)
        if result.removed_lines or not result.kept
    ]
    # Two of each source, so that the examples are not all of the first source it drops whole.
    examples = [
        e for i, e in enumerate(examples) if [x["source"] for x in examples[:i]].count(e["source"]) < 2
    ]
    return {
        "engine_startup_s": startup_s,
        "documents": len(texts),
        "documents_refined_whole": whole,
        "chunks": len(chunks),
        "document_programs_s": doc_s,
        "refine_s": refine_s,
        "refiner_docs_per_s": whole / refine_s,
        "malformed_calls": sum(len(r.malformed) for r in refined),
        "word_retention": sum(r.words_after for r in refined) / words_in,
        "document_level": {**document, "teacher": teacher_document},
        "line_level": {**lines, "seconds": lines_s, "teacher": teacher_lines},
        "examples": examples,
    }


def summary(results: dict) -> dict:
    """The figures worth reading, without the programs and examples the result file keeps."""
    short = {}
    for key, value in results.items():
        if isinstance(value, dict):
            value = {k: summary(v) if isinstance(v, dict) else v for k, v in value.items()}
            value = {k: v for k, v in value.items() if k not in ("programs", "examples")}
        short[key] = value
    return short


def train_refiner(record: Phases, out: Path, max_steps: int | None) -> Path:
    """The refiner recipe trained into ``out/refiner`` as a phase (resumes from its last checkpoint); ``max_steps``
    shortens it where the machine is too busy for the recipe's own."""
    target = out / "refiner"
    steps = ["--max_steps", str(max_steps)] if max_steps else []
    record.run(
        "train refiner",
        ["train", str(RECIPE), "--output_dir", str(target), *steps],
        out / "logs" / "train_refiner.log",
    )
    return target


def refiner_heldout(record: Phases, out: Path, refiner: Path, args: argparse.Namespace) -> dict:
    """The trained refiner on held-out documents beside the rule teacher, as a phase of its own process."""
    result = out / "refiner_heldout.json"
    argv = ["--heldout", str(refiner), "--out", str(out), "--engine", args.engine]
    argv += ["--docs", str(args.docs), "--refine-docs", str(args.refine_docs), "--pages", str(args.pages)]
    cost = record.run("refiner held-out", argv, out / "logs" / "refiner_heldout.log", script=Path(__file__))
    return {**json.loads(result.read_text()), "wall_s": cost["seconds"], "peak_mb": cost["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--copies",
        type=int,
        default=40,
        help="copies of text_quality in the throughput corpus (40: 16,000 documents, enough that start-up does not "
        "hide the second worker)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "prox_bench")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="the parts to run (default: all); the throughput part wants a quiet machine",
    )
    parser.add_argument("--engine", default="auto", help="generation engine of the refiner: auto, vllm or hf")
    parser.add_argument(
        "--docs", type=int, default=100, help="text_quality test documents the refiner refines"
    )
    parser.add_argument(
        "--refine-docs",
        type=int,
        default=100,
        help="of those, how many the refiner refines whole (chunk programs too) for its documents per second",
    )
    parser.add_argument("--pages", type=int, default=9, help="news_pages test pages the refiner cleans")
    parser.add_argument(
        "--max-steps",
        type=int,
        help="train the refiner this many steps instead of the recipe's (a busy machine)",
    )
    parser.add_argument("--heldout", type=Path, help=argparse.SUPPRESS)  # the refiner phase's own process
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.heldout:
        (args.out / "refiner_heldout.json").write_text(json.dumps(measure_refiner(args), indent=2))
        return
    count_tokens = TokenCounter("smollm2-135m-instruct")
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "teacher" in args.only:
        results["document_level"] = phase("document level (text_quality test)", document_level, RuleTeacher())
        results["document_level"].pop("programs")
        results["line_level"] = phase("line level (news_pages test)", line_level, RuleTeacher(), count_tokens)
    if "throughput" in args.only:
        path = corpus(args.copies, args.out)
        documents = sum(1 for _ in path.open(encoding="utf-8"))
        for workers in (1, 2):
            results[f"pipeline_{workers}w"] = phase(
                f"pipeline, {workers} worker(s)", throughput, path, args.out, workers, count_tokens, documents
            )
        one, two = results["pipeline_1w"]["docs_per_s"], results["pipeline_2w"]["docs_per_s"]
        results["speedup_2w"] = two / one
    if "executor" in args.only or "refiner" in args.only:
        results["executor"] = phase("executor alone", executor_speed, count_tokens)
    if "refiner" in args.only:
        record = Phases(args.out / "phases.json")
        refiner = train_refiner(record, args.out, args.max_steps)
        results["refiner"] = refiner_heldout(record, args.out, refiner, args)
        results["refiner"]["train"] = record.records["train refiner"]
        results["executor_over_refiner"] = (
            results["executor"]["executor_docs_per_s"] / results["refiner"]["refiner_docs_per_s"]
        )
    results_path.write_text(json.dumps(results, indent=2))
    logger.info("\n%s", json.dumps(summary(results), indent=2))


if __name__ == "__main__":
    main()
