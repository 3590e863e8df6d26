"""CLS-RL's own recipe fields: how a labelled dataset becomes few-shot classification prompts.

They belong to the ``classification`` data builder, which CLS-RL recipes use by default and any other recipe
(an SFT baseline, an evaluation) names with ``data_builder: classification``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ClassificationArguments:
    """Few-shot classification prompts from a labelled dataset (CLS-RL's data builder)."""

    label_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding each row's class. The builder writes the gold class to 'label', a shuffled "
            "candidate list (always holding the gold) to 'classes', the class group ('base' or 'new') to "
            "'class_group', and a candidate drawn at random, independent of the label, to 'random_class'. Use "
            "{classes} in prompt_template."
        },
    )
    shots_per_class: int | None = field(
        default=None, metadata={"help": "k-shot: keep k training rows per class (seeded by class_seed)."}
    )
    class_names: list[str] = field(
        default_factory=list,
        metadata={"help": "All class names, in order; by default the sorted labels found in the data."},
    )
    base_classes: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Base-to-new split: train on these classes only; test rows of every other class form the "
            "'new' group. Empty: all classes are base, unless base_to_new is set."
        },
    )
    base_to_new: bool = field(
        default=False,
        metadata={
            "help": "Base classes are the first half of class_names (the CoOp convention), the rest new."
        },
    )
    candidate_fraction: float = field(
        default=0.4,
        metadata={"help": "Share (0-1] of a group's class names listed in each prompt (CLS-RL: 0.4)."},
    )
    candidate_all_below: int = field(
        default=30, metadata={"help": "List every class name when the group has fewer classes than this."}
    )
    candidate_max: int = field(default=100, metadata={"help": "Never list more class names than this."})
    underscores_to_spaces: bool = field(
        default=True, metadata={"help": "Class-name normalisation: 'golden_retriever' -> 'golden retriever'."}
    )
    class_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the k-shot sample and the candidate lists (the same prompts in train and eval)."
        },
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.candidate_fraction <= 1.0:
            raise ValueError(f"candidate_fraction must be in (0, 1], got {self.candidate_fraction}.")
        if self.shots_per_class is not None and self.shots_per_class < 1:
            raise ValueError(f"shots_per_class must be at least 1, got {self.shots_per_class}.")
        if self.candidate_max < 2:
            raise ValueError(f"candidate_max must be at least 2, got {self.candidate_max}.")
