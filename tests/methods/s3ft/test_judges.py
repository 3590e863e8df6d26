"""S3FT's judges on hand-made cases: the LLM judge (verdict parsing, prompts, plumbing through the generation
service with a tiny model), and the code judge inside the data stage against hostile programs, each contained,
rejected with its reason logged, while the stage goes on."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import rewards.llm_judge as llm
from posttrain.methods.s3ft.data import TARGET_STAGE
from posttrain.recipe import load_recipe
from posttrain.sandbox import namespace_support
from posttrain.stages import StageContext, _fingerprint, run_stage
from rewards.judges import load_judge

REPO = Path(__file__).parents[3]
YES, NO = re.compile(r"\byes\b", re.IGNORECASE), re.compile(r"\bno\b", re.IGNORECASE)


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        ("Yes.", True),
        ("no, it names another language", False),
        ("No. Yes would be wrong.", False),  # the earlier match decides
        ("Yes, not no.", True),
        ("The answer is Spanish.", None),
        ("yesterday", None),  # whole words only
    ],
)
def test_verdicts_are_parsed_by_their_first_match(verdict, expected):
    assert llm.parse_verdict(verdict, YES, NO) is expected


class Scripted:
    """An engine stand-in that answers 'yes' when the candidate answer holds the reference, else 'no'."""

    tokenizer = None

    def __init__(self):
        self.prompts: list[str] = []

    def generate(self, prompts, sampling, desc=None):
        self.prompts += prompts
        out = []
        for text in prompts:
            reference = text.split("Reference answer: ")[1].split("\n")[0]
            answer = text.split("Candidate answer: ")[1].split("\n")[0]
            out.append(["Yes." if reference.lower() in answer.lower() else "No."])
        return out


def test_the_llm_judge_asks_with_question_reference_and_answer(monkeypatch):
    engine = Scripted()
    monkeypatch.setattr(llm, "judge_engine", lambda model, name, dtype: engine)
    monkeypatch.setattr(llm, "render_prompt", lambda tokenizer, chat: chat[-1]["content"])
    judge = load_judge({"name": "rewards.llm_judge:llm_judge", "kwargs": {"model": "judge-model"}})
    assert judge.columns == {"answer"}
    prompts = [[{"role": "user", "content": "The language of Peru is"}]] * 3
    verdicts = judge(
        prompts,
        ["It is Spanish.", "Quechua", "anything"],
        [{"answer": "Spanish"}, {"answer": "Spanish"}, {"answer": None}],
    )
    assert verdicts == [True, False, None]  # no reference: the judge does not apply, and is not asked
    assert len(engine.prompts) == 2
    assert engine.prompts[0].startswith("Question: The language of Peru is\nReference answer: Spanish\n")


def test_the_llm_judge_refuses_a_template_without_its_placeholders():
    with pytest.raises(ValueError, match=r"prompt_template must contain \{reference\}"):
        llm.llm_judge(
            ["a"],
            [[{"role": "user", "content": "q"}]],
            ["g"],
            model="m",
            prompt_template="{question} {answer}",
        )


def test_the_llm_judge_runs_a_model_through_the_generation_service(tiny_model, caplog):
    """Plumbing with a tiny random model: its verdicts are noise, which match neither pattern and count as
    rejections, said in the log; an accept pattern matching everything accepts everything."""
    kwargs = {"model": str(tiny_model), "engine": "hf", "dtype": "float32", "max_new_tokens": 3}
    prompts = [[{"role": "user", "content": f"Question {i}"}] for i in range(3)]
    strict = llm.llm_judge(
        ["x"] * 3, prompts, ["y"] * 3, accept_pattern="^VERDICT-YES$", reject_pattern="^VERDICT-NO$", **kwargs
    )
    assert strict == [0.0, 0.0, 0.0]
    assert "3 of 3 verdicts matched neither" in caplog.text
    assert llm.llm_judge(
        ["x"] * 3, prompts, ["y"] * 3, accept_pattern="", reject_pattern="^VERDICT-NO$", **kwargs
    ) == [1.0, 1.0, 1.0]


HOSTILE = {
    "loops forever": "while True:\n    pass",
    "allocates too much memory": "x = bytearray(1 << 34)",
    "opens a socket": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
    "writes outside its directory": "open({escaped!r}, 'w').write('out')",
    "forks many processes": "import os\nwhile True:\n    os.fork()",
}


@dataclass
class ScriptedModel(StageContext):
    """Answers each task prompt with the hostile program of its row; shown the reference, repeats it."""

    scripted: dict[str, str] = field(default_factory=dict)

    def generate(self, prompts, sampling, expected_rows=None):
        out = []
        for prompt in prompts:
            text = prompt[-1]["content"]
            if "A reference answer: " in text:
                out.append([text.split("A reference answer: ")[1].split("\n\nWrite your own response")[0]])
            else:
                out.append([f"```python\n{self.scripted[text]}\n```"])
        return out


@pytest.mark.skipif(namespace_support() is not None, reason=f"no namespaces here: {namespace_support()}")
def test_hostile_programs_are_rejected_with_their_reason_and_the_stage_goes_on(tiny_model, tmp_path, caplog):
    problem = json.loads((REPO / "tests/fixtures/data/humaneval/train.jsonl").read_text().splitlines()[0])
    escaped = tmp_path / "escaped"
    rows = [
        {
            "task": f"Task {i}: {problem['prompt']}",
            "code": problem["prompt"] + problem["canonical_solution"],
            "test": problem["test"],
            "entry_point": problem["entry_point"],
        }
        for i in range(len(HOSTILE))
    ]
    data = tmp_path / "code.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = {
        "method": "s3ft",
        "model_name_or_path": str(tiny_model),
        "dataset_name": str(data),
        "prompt_template": "{task}",
        "gold_template": "```python\n{code}```",
        "judge": "code_unit_tests",
        "judge_kwargs": {"wall_time": 3.0, "memory_mb": 256},
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "report_to": "none",
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(config))
    recipe = load_recipe(tmp_path / "recipe.yaml")
    programs = [code.format(escaped=str(escaped)) for code in HOSTILE.values()]
    scripted = {row["task"]: code for row, code in zip(rows, programs, strict=True)}
    from posttrain.data import load_recipe_splits

    train = load_recipe_splits(recipe.data, recipe.builder, seed=recipe.trainer.seed)["train"]
    folder = tmp_path / "targets"
    with caplog.at_level(logging.DEBUG, logger="rewards.code"):
        run_stage(
            TARGET_STAGE,
            train,
            folder,
            ScriptedModel(recipe=recipe, scripted=scripted),
            _fingerprint(recipe, TARGET_STAGE),
        )
    built = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert len(built) == len(HOSTILE)
    by_task = {row["task"]: row for row in built}
    for row, code in zip(rows, programs, strict=True):
        out = by_task[row["task"]]
        assert out["own_answer"] == f"```python\n{code}\n```" and out["own_correct"] == 0
        # The stage went on: the rewrite (the canonical solution) passed and became the target.
        assert out["target_source"] == "paraphrase" and out["paraphrase_correct"] == 1
    assert not escaped.exists()
    reasons = [r.getMessage() for r in caplog.records if r.name == "rewards.code"]
    assert sum(": timeout (" in m for m in reasons) >= 1  # the endless loop, stopped at the wall clock
    assert sum(": memory (" in m for m in reasons) >= 1  # the allocation, stopped at the memory limit
    assert sum(": failed (" in m for m in reasons) >= 2  # the socket and the write outside, refused
    assert sum(": passed (" in m for m in reasons) == len(HOSTILE)
