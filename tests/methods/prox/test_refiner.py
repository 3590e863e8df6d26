"""The trained refiner at work: a LoRA refiner's adapter merged into its base model once, and `posttrain refine`
refining documents with the programs a model writes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest


def lora_refiner(base: Path, target: Path) -> Path:
    """A LoRA adapter on ``base`` whose update is not zero (PEFT starts lora_B at zero), saved as a LoRA recipe's
    output_dir is: the adapter and the tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(base).save_pretrained(target)
    return target


def test_a_lora_refiner_is_merged_once_into_its_base(tiny_model, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from posttrain.models import full_checkpoint

    adapter = lora_refiner(tiny_model, tmp_path / "refiner")
    assert full_checkpoint(str(tiny_model)) == str(tiny_model)  # a full checkpoint is used as it is
    merged = Path(full_checkpoint(str(adapter)))
    assert merged == adapter / "merged" and (merged / "config.json").is_file()
    tokens = torch.tensor([[1, 50, 300, 7, 900, 12]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter).eval()
    with torch.no_grad():
        expected = with_adapter(tokens).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(tokens).logits
        assert not torch.allclose(base(tokens).logits, expected, atol=1e-3)  # the adapter changes the model
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    written = (merged / "model.safetensors").stat().st_mtime_ns
    assert full_checkpoint(str(adapter)) == str(merged)
    assert (merged / "model.safetensors").stat().st_mtime_ns == written  # merged once, then reused


def refine_config(tmp_path: Path, programmer: Path, documents: list[str]) -> Path:
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(documents)))
    config = tmp_path / "refine.yaml"
    config.write_text(
        f"source: {source}\noutput_dir: {tmp_path / 'out'}\nprogrammer: {programmer}\n"
        "engine: hf\nmax_new_tokens: 8\nchunk_tokens: 64\n"
    )
    return config


DOCUMENTS = [
    "The committee met on Tuesday to discuss the budget.\nShare this article\nIt approved the plan by a wide "
    "margin after a long debate about the costs of the new library and the roads around it.",
    "Rain is expected over the weekend, with temperatures falling to five degrees by Sunday night.",
]


@pytest.mark.slow
def test_posttrain_refine_runs_a_trained_refiner(tiny_model, tmp_path):
    from posttrain.cli import main
    from posttrain.methods.prox.refiner import ModelRefiner

    adapter = lora_refiner(tiny_model, tmp_path / "refiner")
    assert main(["refine", str(refine_config(tmp_path, adapter, DOCUMENTS))]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["documents_in"] == 2
    refined = {}
    for part in ("kept", "dropped"):
        for path in (tmp_path / "out" / part).glob("*.jsonl"):
            for line in path.open(encoding="utf-8"):
                row = json.loads(line)
                refined[row["id"]] = row["metadata"]["prox"]
    # Each document's program is what the refiner writes for it (asked alike, greedily), not a rule's.
    expected = ModelRefiner(str(adapter), engine="hf", max_new_tokens=8, doc_chars=2_000).doc_programs(
        DOCUMENTS
    )
    assert [refined[str(i)]["doc_program"] for i in range(2)] == expected
    assert (adapter / "merged" / "config.json").is_file()


def test_posttrain_refine_names_a_refiner_that_is_not_there(tmp_path, caplog):
    from posttrain.cli import main

    (tmp_path / "outputs").mkdir()
    config = refine_config(tmp_path, tmp_path / "outputs" / "prox-refiner", DOCUMENTS)
    with caplog.at_level(logging.ERROR):
        assert main(["refine", str(config)]) == 2
    assert "programmer" in caplog.text and "does not exist" in caplog.text
    assert "posttrain train recipes/prox/refiner_rules_cpu.yaml" in caplog.text
    assert not (tmp_path / "out").exists()  # refused before any work
