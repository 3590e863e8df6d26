"""Inference with a model trained with markers, in the paper's two modes.

- inferred: the prompt carries no markers; the model writes its own marker list first. The list is stripped from
  the answer the user sees and kept, parsed, in the record.
- fixed: the user's markers are appended to the prompt as training did, steering the answer (its length, format,
  domain, quality); the list the model writes back is stripped the same way.

:func:`generate_marked` is the Python API over the shared generation service; :func:`markers_mode` is the hook
``posttrain eval`` takes (``inference: {name: posttrain.methods.markers.inference:markers_mode, kwargs: {...}}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from posttrain.generation import Engine, Sampling, render_prompt
from posttrain.methods.markers.schema import MarkerSchema, append_to_prompt, parse_output, render_markers

MODES = ("inferred", "fixed")


@dataclass(frozen=True)
class MarkedAnswer:
    """One generation: the answer a user sees, the markers the model wrote, how its list parsed, and the raw text."""

    answer: str
    markers: dict[str, str]
    status: str
    raw: str
    repeated: bool = False  # a later marker list followed the answer and was cut off


def with_markers(prompt: Any, markers: Mapping[str, Any] | None, schema: MarkerSchema | None = None) -> Any:
    """``prompt`` as fixed mode sends it: the markers appended as training appended them."""
    return append_to_prompt(prompt, render_markers(markers or {}, schema))


def read_answer(text: str) -> MarkedAnswer:
    """A model's output split into its answer and its markers; never raises on a malformed list."""
    parsed = parse_output(text)
    return MarkedAnswer(parsed.answer, parsed.markers, parsed.status, text, parsed.repeated)


def generate_marked(
    engine: Engine,
    prompts: Sequence[Any],
    markers: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    sampling: Sampling | None = None,
) -> list[list[MarkedAnswer]]:
    """Generate from a markers-trained model: inferred mode without ``markers``, fixed mode with them (one
    mapping for every prompt, or one per prompt). ``sampling.n`` answers per prompt."""
    sampling = sampling or Sampling(max_new_tokens=256)
    if markers is None or isinstance(markers, Mapping):
        per_prompt = [markers] * len(prompts)
    else:
        per_prompt = list(markers)
        if len(per_prompt) != len(prompts):
            raise ValueError(
                f"{len(per_prompt)} marker sets for {len(prompts)} prompts: give one per prompt."
            )
    rendered = [
        render_prompt(engine.tokenizer, with_markers(p, m)) for p, m in zip(prompts, per_prompt, strict=True)
    ]
    return [[read_answer(t) for t in group] for group in engine.generate(rendered, sampling)]


class MarkersMode:
    """The ``posttrain eval`` hook: prompts get the fixed markers (fixed mode), answers lose their marker list."""

    def __init__(
        self, mode: str = "inferred", markers: Mapping[str, Any] | None = None, columns: Sequence[str] = ()
    ):
        if mode not in MODES:
            raise ValueError(f"markers inference mode must be one of {', '.join(MODES)}, got {mode!r}.")
        if mode == "inferred" and (markers or columns):
            raise ValueError("inferred mode sends no markers: drop markers and columns, or set mode: fixed.")
        if mode == "fixed" and not (markers or columns):
            raise ValueError(
                "fixed mode needs markers to send: markers (a mapping, e.g. {length_bucket: short}) and/or columns "
                "(dataset columns whose values become markers of the same name, e.g. [domain])."
            )
        self.mode = mode
        self.markers = dict(markers or {})
        self.columns = list(columns)

    def prompt(self, prompt: Any, row: Mapping[str, Any]) -> Any:
        if self.mode == "inferred":
            return prompt
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise ValueError(f"fixed-mode columns {missing} are not dataset columns; it has {sorted(row)}.")
        return with_markers(prompt, {**self.markers, **{c: row[c] for c in self.columns}})

    def answer(self, text: str) -> tuple[str, dict[str, Any]]:
        marked = read_answer(text)
        record = asdict(marked)
        del record["raw"], record["answer"]
        return marked.answer, record


def markers_mode(
    mode: str = "inferred", markers: Mapping[str, Any] | None = None, columns: Sequence[str] = ()
) -> MarkersMode:
    """The eval hook of either mode (see :class:`MarkersMode`)."""
    return MarkersMode(mode, markers, columns)
