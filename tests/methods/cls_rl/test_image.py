"""CLS-RL on images: an imagefolder dataset of rendered digits goes through the classification builder and the
prompt formatting, then trains for a few GRPO and SFT steps on a tiny random LLaVA (and a tiny Qwen2-VL where
torchvision is installed: its processor needs it).

scikit-learn (and its 8x8 digits) is not installed here, so the digits are drawn from a hard-coded 5x7 font,
shifted and noised per image so no two images of a class are the same.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from PIL import Image
from transformers import AutoProcessor
from transformers.utils import is_torchvision_available

from posttrain.configs import DataArguments
from posttrain.data import load_any, load_dataset_for
from posttrain.formatting import format_dataset, format_split
from posttrain.methods.cls_rl.config import ClassificationArguments
from posttrain.methods.cls_rl.data import build_classification
from posttrain.recipe import load_recipe
from posttrain.train import train
from rewards.classification import cls_contains, cls_equality

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GLYPHS = (
    ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
)
PROMPT = "Which digit is shown? Answer with one of: {classes}"
# A reward that varies between completions of a random model, so GRPO's advantages (and gradients) are not zero.
LENGTH_REWARD = {
    "name": f"{Path(__file__).parents[2] / 'fixtures' / 'plugin_rewards.py'}:length_reward",
    "weight": 0.01,
}


def digit_image(digit: int, rng: np.random.Generator) -> Image.Image:
    """The digit's glyph at a random place on an 8x8 canvas, with pixel noise, upsampled to a 28x28 RGB image."""
    canvas = rng.uniform(0.0, 0.25, size=(8, 8))
    top, left = rng.integers(0, 2), rng.integers(0, 4)
    glyph = np.array([[int(c) for c in row] for row in GLYPHS[digit]], dtype=float)
    canvas[top : top + 7, left : left + 5] += 0.75 * glyph
    gray = Image.fromarray((np.clip(canvas, 0.0, 1.0) * 255).astype(np.uint8))
    return gray.resize((28, 28), Image.Resampling.NEAREST).convert("RGB")


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    """``train/<class>/*.png`` (3 per class) and ``test/<class>/*.png`` (2 per class): the imagefolder layout."""
    root = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 3), ("test", 2)):
        for digit, name in enumerate(DIGIT_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                digit_image(digit, rng).save(folder / f"{i}.png")
    return root


def digits_data(digits_dir: Path, **fields) -> DataArguments:
    return DataArguments(
        dataset_name=str(digits_dir),
        data_builder="classification",
        image_column="image",
        prompt_template=PROMPT,
        **fields,
    )


def digits_classes(**fields) -> ClassificationArguments:
    return ClassificationArguments(label_column="label", **fields)


def test_imagefolder_labels_become_class_names_with_candidates(digits_dir):
    raw = load_any(str(digits_dir))["train"]
    assert isinstance(raw.features["label"], datasets.ClassLabel)  # ints on disk, names in the feature

    splits = load_dataset_for(digits_data(digits_dir), digits_classes())
    train_split = splits["train"]
    assert len(train_split) == 30 and len(splits["test"]) == 20
    assert train_split["label"] == [raw.features["label"].int2str(i) for i in raw["label"]]
    assert set(train_split["label"]) == set(DIGIT_NAMES)
    for row in train_split:
        names = row["classes"].split(", ")
        assert row["label"] in names and sorted(names) == sorted(DIGIT_NAMES)
        assert isinstance(row["image"], Image.Image)
    # Images of one class get different candidate orders: the order must not give the class away.
    assert len({r["classes"] for r in train_split if r["label"] == "three"}) == 3

    few = load_dataset_for(digits_data(digits_dir), digits_classes(shots_per_class=2))["train"]
    assert sorted(few["label"]) == sorted(DIGIT_NAMES * 2)


def test_class_label_ints_become_names_and_unlabelled_rows_are_refused():
    features = datasets.Features({"label": datasets.ClassLabel(names=["golden_retriever", "tabby_cat"])})
    data = ClassificationArguments(label_column="label")
    built = build_classification(
        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"label": [1, 0]}, features=features)}),
        data,
    )
    assert sorted(built["train"]["label"]) == ["golden retriever", "tabby cat"]
    unlabelled = datasets.Dataset.from_dict({"label": [0, 1, -1]}, features=features)
    with pytest.raises(ValueError, match="unlabelled rows"):
        build_classification(datasets.DatasetDict({"train": unlabelled}), data)


def test_formatting_gives_a_conversational_prompt_and_the_image(digits_dir):
    from trl.data_utils import prepare_multimodal_messages

    data = digits_data(digits_dir)
    splits = load_dataset_for(data, digits_classes())
    formatted = format_dataset(splits, data, extra_columns={"label", "classes"})["train"]
    row = formatted[0]
    assert row["prompt"] == [{"role": "user", "content": PROMPT.format(classes=row["classes"])}]
    assert isinstance(row["image"], Image.Image)
    assert {"label", "classes", "class_group"} <= set(formatted.column_names)
    # What TRL's trainers do with the pair: the image goes first into the user turn.
    (message,) = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
    assert [part["type"] for part in message["content"]] == ["image", "text"]

    sft = format_dataset(
        splits, dataclasses.replace(data, completion_template="{label}"), completion=True, keep=()
    )["train"]
    assert sft.column_names == ["prompt", "completion", "image"]
    (completion,) = sft[0]["completion"]
    assert completion["role"] == "assistant" and completion["content"] in DIGIT_NAMES


def test_image_column_of_another_name_or_of_lists():
    picture = Image.new("RGB", (8, 8))
    features = datasets.Features(
        {"text": datasets.Value("string"), "picture": datasets.Image(), "image": datasets.Value("string")}
    )
    single = datasets.Dataset.from_dict(
        {"text": ["a"], "picture": [picture], "image": ["stale"]}, features=features
    )
    data = DataArguments(dataset_name="x", prompt_template="{text}", image_column="picture")
    formatted = format_split(single, data)
    assert "picture" not in formatted.column_names and isinstance(formatted[0]["image"], Image.Image)

    many = datasets.Dataset.from_dict(
        {"text": ["a"], "pictures": [[picture, picture]]},
        features=datasets.Features(
            {"text": datasets.Value("string"), "pictures": datasets.List(datasets.Image())}
        ),
    )
    data = DataArguments(dataset_name="x", prompt_template="{text}", image_column="pictures")
    assert len(format_split(many, data)[0]["images"]) == 2


def test_image_recipes_refuse_raw_prompts_and_missing_columns(digits_dir):
    splits = load_dataset_for(digits_data(digits_dir), digits_classes())
    with pytest.raises(ValueError, match="needs prompt_format: chat"):
        format_dataset(splits, digits_data(digits_dir, prompt_format="raw"))
    with pytest.raises(ValueError, match="'photo' needed by image_column"):
        format_dataset(splits, dataclasses.replace(digits_data(digits_dir), image_column="photo"))


def vision_weights_changed(before: Path, after: Path) -> bool:
    """Whether training moved the vision tower: some weight of it differs between two checkpoints."""
    import torch
    from safetensors.torch import load_file

    old, new = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    tower = [k for k in old if "vision_tower" in k or k.startswith("visual.")]  # LLaVA, Qwen2-VL
    assert tower and set(tower) <= set(new)
    return any(not torch.equal(old[k], new[k]) for k in tower)


def write_recipe(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def cls_image_config(model: Path, digits_dir: Path, output_dir: Path, **overrides) -> dict:
    config = {
        "method": "cls_rl",
        "model_name_or_path": str(model),
        "dataset_name": str(digits_dir),
        "data_builder": "classification",
        "label_column": "label",
        "image_column": "image",
        "prompt_template": PROMPT,
        "reward_funcs": ["cls_equality", "cls_contains", LENGTH_REWARD],
        "loss_type": "grpo",
        "beta": 0.0,
        "scale_rewards": "group",
        "num_generations": 2,
        "per_device_train_batch_size": 2,
        "max_completion_length": 8,
        "max_steps": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "output_dir": str(output_dir),
        "use_cpu": True,
        "report_to": "none",
        "seed": 0,
    }
    config.update(overrides)
    return config


@pytest.fixture()
def vision_calls(monkeypatch) -> list[int]:
    """The number of images each call of a LLaVA or Qwen2-VL vision encoder embeds."""
    from transformers.models.llava.modeling_llava import LlavaModel
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel

    calls: list[int] = []

    def counting(original):
        def counted(self, pixel_values, *args, **kwargs):
            grid = kwargs.get("image_grid_thw", args[0] if args else None)  # Qwen2-VL: one row per image
            calls.append(len(grid) if grid is not None else len(pixel_values))
            return original(self, pixel_values, *args, **kwargs)

        return counted

    for model_class in (LlavaModel, Qwen2VLModel):
        monkeypatch.setattr(model_class, "get_image_features", counting(model_class.get_image_features))
    return calls


needs_torchvision = pytest.mark.skipif(
    not is_torchvision_available(), reason="Qwen2-VL's processor needs torchvision, which is not installed"
)


@pytest.mark.parametrize("vlm", ["tiny_vlm", pytest.param("tiny_qwen2_vl", marks=needs_torchvision)])
def test_cls_rl_grpo_trains_on_images(vlm, request, digits_dir, tmp_path, vision_calls, caplog):
    out = tmp_path / "grpo"
    model = request.getfixturevalue(vlm)
    config = cls_image_config(model, digits_dir, out, heldout_metric="cls_equality", heldout_samples=2)
    results = train(load_recipe(write_recipe(tmp_path / "grpo.yaml", config)))

    logged = [e for e in results["log_history"] if "rewards/cls_equality/mean" in e]
    assert [e["step"] for e in logged] == [1, 2]
    assert all("rewards/cls_contains/mean" in e for e in logged)
    rows = [json.loads(line) for line in (out / "completions" / "completions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2  # 2 steps x (1 prompt x 2 generations)
    for row in rows:
        assert row["label"] in DIGIT_NAMES and row["label"] in row["classes"].split(", ")
        user = row["prompt"][-1]["content"]
        assert user[0]["type"] == "image" and user[1]["text"] == PROMPT.format(classes=row["classes"])
        # The logged scores are the rewards of this completion against the row's label and candidate list.
        assert row["rewards"]["cls_equality"] == cls_equality([row["completion"]], label=[row["label"]])[0]
        expected = cls_contains([row["completion"]], label=[row["label"]], classes=[row["classes"]])[0]
        assert row["rewards"]["cls_contains"] == expected
    assert vision_calls and all(n > 0 for n in vision_calls)  # the model saw the images
    assert "before" not in results and "Held-out check skipped" in caplog.text
    assert vision_weights_changed(model, out)  # gradients reached the vision tower through the images
    assert type(AutoProcessor.from_pretrained(out)) is type(AutoProcessor.from_pretrained(model))


def test_sft_trains_on_images(tiny_vlm, digits_dir, tmp_path, vision_calls):
    out = tmp_path / "sft"
    config = {
        "method": "sft",
        "model_name_or_path": str(tiny_vlm),
        "dataset_name": str(digits_dir),
        "data_builder": "classification",
        "label_column": "label",
        "image_column": "image",
        "prompt_template": PROMPT,
        "completion_template": "{label}",
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "save_steps": 2,
        "output_dir": str(out),
        "use_cpu": True,
        "report_to": "none",
    }
    results = train(load_recipe(write_recipe(tmp_path / "sft.yaml", config)))
    losses = [e["loss"] for e in results["log_history"] if "loss" in e]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert vision_calls and all(n == 2 for n in vision_calls)  # both images of each batch
    assert vision_weights_changed(tiny_vlm, out)


def test_image_column_needs_a_vision_language_model(tiny_model, digits_dir, tmp_path, monkeypatch):
    import transformers

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the check")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    config = cls_image_config(tiny_model, digits_dir, tmp_path / "out")
    with pytest.raises(ValueError, match="needs a vision-language model"):
        train(load_recipe(write_recipe(tmp_path / "text.yaml", config)))


def test_missing_image_column_fails_before_the_model_loads(tiny_vlm, digits_dir, tmp_path, monkeypatch):
    import posttrain.methods.families

    def no_model(*args, **kwargs):
        raise AssertionError("model loaded before the data check")

    monkeypatch.setattr(posttrain.methods.families, "load_tokenizer", no_model)
    monkeypatch.setattr(posttrain.methods.families, "load_model", no_model)
    config = cls_image_config(tiny_vlm, digits_dir, tmp_path / "out", image_column="photo")
    with pytest.raises(ValueError, match="'photo' needed by image_column"):
        train(load_recipe(write_recipe(tmp_path / "photo.yaml", config)))


def test_qwen2_vl_loads_as_a_vision_language_model(tiny_qwen2_vl):
    from transformers import ProcessorMixin, Qwen2VLForConditionalGeneration

    from posttrain.configs import ModelConfig
    from posttrain.models import load_model, load_tokenizer

    model_args = ModelConfig(model_name_or_path=str(tiny_qwen2_vl))
    assert isinstance(load_model(model_args, image_column="image"), Qwen2VLForConditionalGeneration)
    if is_torchvision_available():
        processor = load_tokenizer(model_args, padding_side="left")
        assert isinstance(processor, ProcessorMixin) and processor.tokenizer.padding_side == "left"
    else:
        with pytest.raises(ImportError, match="processor of vision-language model .* needs a package"):
            load_tokenizer(model_args)
