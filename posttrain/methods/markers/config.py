"""Training-time markers' own recipe fields: which markers to annotate and how, and the prompt-side dropout."""

from __future__ import annotations

from dataclasses import dataclass, field

from posttrain.configs import SFTRecipeConfig
from posttrain.methods.markers.schema import CATEGORY_NAMES, MarkerSchema

#: What the LLM tagger chooses from when a row's source names no domain, task or format.
DEFAULT_DOMAINS = ["Math", "Code", "General knowledge", "Virtual assistant", "Product reviews", "Other"]
DEFAULT_TASKS = ["Math reasoning", "Code generation", "Question answering", "Classification", "Other"]
DEFAULT_FORMATS = ["Worked solution", "Code block", "Short answer", "Label", "Prose"]


@dataclass
class MarkersConfig(SFTRecipeConfig):
    """TRL's SFTConfig plus the fields of training-time markers."""

    markers: list[str] = field(
        default_factory=lambda: list(CATEGORY_NAMES),
        metadata={
            "help": "Markers to annotate, by name (the paper's 13: "
            + ", ".join(CATEGORY_NAMES)
            + "). A marker "
            "without a value for a row (no code in the answer, no quality_scorer) is left out of that row's list."
        },
    )
    extra_markers: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Markers of your own, each read from the dataset column of the same name and written after "
            "the paper's (e.g. [audience] with an 'audience' column)."
        },
    )
    dataset_dropout: float = field(
        default=0.5,
        metadata={
            "help": "Share of training rows (0-1) whose prompt shows no marker at all, drawn afresh each epoch: "
            "what teaches the model to infer the markers itself. The completion always starts with every marker."
        },
    )
    sample_dropout: float = field(
        default=0.5,
        metadata={
            "help": "Chance (0-1) that each marker of the other rows is left out of the prompt, each epoch."
        },
    )
    length_bucket_edges: list[int] = field(
        default_factory=lambda: [16, 64, 256],
        metadata={
            "help": "Three increasing answer lengths in tokens that split length_bucket into tiny (< first), "
            "short, medium and long (>= last)."
        },
    )
    quality_scorer: str | None = field(
        default=None,
        metadata={
            "help": "What scores each (prompt, answer) pair for the quality markers: a registered reward, "
            "'module:function', 'path/to/file.py:function', or a mapping {name, kwargs} (e.g. {name: reward_model, "
            "kwargs: {path: ...}} for a trained reward model). quality is its score, quality_bucket the quartile "
            "(1-4) over the training set. None: no quality markers."
        },
    )
    tagger: bool = field(
        default=False,
        metadata={
            "help": "Ask the recipe's model (greedy, through the generation service) for the domain, task and "
            "format of rows whose source does not give them, choosing from tagger_domains, tagger_tasks and "
            "tagger_formats. False: such rows go without those markers."
        },
    )
    tagger_domains: list[str] = field(
        default_factory=lambda: list(DEFAULT_DOMAINS), metadata={"help": "Domains the tagger chooses from."}
    )
    tagger_tasks: list[str] = field(
        default_factory=lambda: list(DEFAULT_TASKS), metadata={"help": "Tasks the tagger chooses from."}
    )
    tagger_formats: list[str] = field(
        default_factory=lambda: list(DEFAULT_FORMATS), metadata={"help": "Formats the tagger chooses from."}
    )
    tagger_max_new_tokens: int = field(
        default=8, metadata={"help": "New tokens of each tagger answer (a category name is a few tokens)."}
    )

    def __post_init__(self):
        for name in ("dataset_dropout", "sample_dropout"):
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1, got {rate!r}.")
        unknown = [m for m in self.markers if m not in CATEGORY_NAMES]
        if unknown:
            raise ValueError(
                f"markers names unknown marker(s) {unknown}; the paper's are {', '.join(CATEGORY_NAMES)}. Put "
                "markers of your own, read from a dataset column, in extra_markers."
            )
        MarkerSchema(self.extra_markers)  # raises on a bad or repeated name
        edges = self.length_bucket_edges
        if (
            len(edges) != 3
            or any(not isinstance(e, int) or e < 1 for e in edges)
            or sorted(set(edges)) != edges
        ):
            raise ValueError(
                f"length_bucket_edges must be three increasing whole numbers of tokens, got {edges!r}."
            )
        if self.tagger_max_new_tokens < 1:
            raise ValueError(f"tagger_max_new_tokens must be at least 1, got {self.tagger_max_new_tokens}.")
        if self.packing or self.padding_free:
            raise ValueError(
                "markers tokenizes each row in its collator, with the markers drawn for the epoch: set packing "
                "and padding_free to false."
            )
        super().__post_init__()

    @property
    def schema(self) -> MarkerSchema:
        return MarkerSchema(self.extra_markers)
