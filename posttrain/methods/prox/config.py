"""ProX's recipe fields: how a corpus becomes refiner training examples (the ``prox_programs`` data builder)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ProxProgramArguments:
    """Refiner training examples: each document's request and the program a teacher writes for it."""

    prox_teacher: str = field(
        default="rules",
        metadata={
            "help": "Who writes the target programs: 'rules' (the rule teacher: Gopher-style document rules, "
            "C4-style line rules) or 'gold' (keep every document; remove the lines prox_clean_column lacks)."
        },
    )
    prox_text_column: str = field(default="text", metadata={"help": "Column holding each document's text."})
    prox_html_column: str | None = field(
        default=None, metadata={"help": "Column holding raw HTML, turned into text lines first (inscriptis)."}
    )
    prox_clean_column: str | None = field(
        default=None, metadata={"help": "Column holding a document's known clean text (prox_teacher: gold)."}
    )
    prox_chunk_tokens: int = field(
        default=512, metadata={"help": "Most tokens of numbered lines a chunk request shows."}
    )
    prox_doc_chars: int = field(
        default=2_000, metadata={"help": "Characters of a document its document-level request shows."}
    )
    prox_tokenizer: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "Tokenizer that sizes the chunks: the refiner's (a registered name or a path)."},
    )

    def __post_init__(self):
        if self.prox_teacher not in ("rules", "gold"):
            raise ValueError(f"prox_teacher must be 'rules' or 'gold', got {self.prox_teacher!r}.")
        if self.prox_teacher == "gold" and not self.prox_clean_column:
            raise ValueError("prox_teacher: gold needs prox_clean_column, the column holding the clean text.")
        if self.prox_chunk_tokens <= 0 or self.prox_doc_chars <= 0:
            raise ValueError("prox_chunk_tokens and prox_doc_chars must be positive.")
