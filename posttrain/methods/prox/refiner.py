"""ProX's model refiner: a language model writing each document's programs through the shared generation service,
asked exactly as the refiner's training examples ask (:func:`posttrain.methods.prox.teacher.doc_request`). A LoRA
refiner's folder (an adapter) is merged into its base model once, so that any engine loads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from posttrain.generation import Sampling, make_engine, render_prompt
from posttrain.methods.prox.teacher import chunk_request, doc_request
from posttrain.models import full_checkpoint


@dataclass(frozen=True)
class ModelRefiner:
    """A language model (a refiner trained on teacher programs, or any model) writing the programs, greedily, in
    batches, through the shared generation service, asked as :func:`doc_request` and :func:`chunk_request` ask.
    The engine starts in the worker on first use."""

    model_name_or_path: str
    engine: str = "auto"
    max_new_tokens: int = 96
    doc_chars: int = 2_000
    _state: dict = field(default_factory=dict, compare=False, repr=False)

    def _generate(self, requests: Sequence[str]) -> list[str]:
        if "engine" not in self._state:
            budget = len(requests) * self.max_new_tokens
            model = full_checkpoint(self.model_name_or_path)
            self._state["engine"] = make_engine(self.engine, model, expected_tokens=budget)
        engine = self._state["engine"]
        prompts = [render_prompt(engine.tokenizer, [{"role": "user", "content": r}]) for r in requests]
        greedy = Sampling(n=1, temperature=0.0, max_new_tokens=self.max_new_tokens, seed=0)
        return [samples[0] for samples in engine.generate(prompts, greedy)]

    def doc_programs(self, texts: Sequence[str]) -> list[str]:
        return self._generate([doc_request(t, self.doc_chars) for t in texts])

    def chunk_programs(self, chunks: Sequence[str]) -> list[str]:
        return self._generate([chunk_request(c) for c in chunks])
