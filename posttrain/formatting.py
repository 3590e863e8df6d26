"""Turn dataset rows into what TRL trainers read: a ``prompt`` (and for SFT a ``completion``).

Templates are Python format strings over the row's columns; chat recipes get conversational messages that
the tokenizer's chat template renders, raw recipes get plain strings. With ``image_column`` the row's image
travels as TRL's ``image`` column (``images`` for a column of image lists), which TRL's GRPO and SFT trainers
insert into the first user turn for a vision-language model's processor. Column checks happen here, before
any model loads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict
from transformers import AutoConfig, AutoTokenizer

from posttrain.configs import DataArguments
from posttrain.data import DataError, require_columns
from posttrain.generation import render_prompt, render_prompts
from posttrain.models import EMBEDDED_MODELS, conversation_text, embedded_model_dir
from posttrain.templates import template_columns

logger = logging.getLogger(__name__)

# The columns TRL's trainers read images from, next to a conversational prompt.
IMAGE_FIELDS = ("image", "images")


def required_columns(data: DataArguments, completion: bool) -> set[str]:
    """Columns the templates need; a dataset without templates must bring its own prompt (and, when the
    trainer learns from targets, its completion)."""
    needed = template_columns(data.prompt_template) | template_columns(data.completion_template)
    if not data.prompt_template:
        needed.add("prompt")
    if completion and not data.completion_template:
        needed.add("completion")
    return needed


def check_image_prompts(data: DataArguments) -> None:
    """Images reach the model only inside conversational prompts; refuse raw prompts with an image column."""
    if data.image_column and data.prompt_format == "raw":
        raise ValueError(
            f"image_column {data.image_column!r} needs prompt_format: chat. TRL hands images to a vision-language "
            "model only inside conversational prompts, whose chat template places the image; a raw text prompt "
            "has no image slot. Set prompt_format: chat, or drop image_column for a text-only run."
        )


def image_field(dataset: Dataset, column: str) -> str:
    """The TRL column ``column`` becomes: ``images`` for a column of image lists, ``image`` for one per row."""
    feature = dataset.features.get(column)
    many = isinstance(feature, (list, datasets.Sequence, datasets.LargeList))
    return "images" if many else "image"


def _expose_image(dataset: Dataset, column: str) -> Dataset:
    target = image_field(dataset, column)
    # TRL reads ``images`` before ``image``: any other image column would shadow or confuse the chosen one.
    others = [c for c in IMAGE_FIELDS if c in dataset.column_names and c != column]
    if others:
        logger.warning("Dropping column(s) %s: image_column is %r.", others, column)
        dataset = dataset.remove_columns(others)
    return dataset if column == target else dataset.rename_column(column, target)


def _user_turn(data: DataArguments, text: str):
    if data.prompt_format == "raw":
        return (data.system_prompt + "\n\n" + text) if data.system_prompt else text
    messages = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    return messages + [{"role": "user", "content": text}]


def row_prompt(data: DataArguments, row: dict[str, Any]) -> Any:
    """The prompt of one unformatted row as :func:`format_split` builds it (without a response prefix): the
    ``prompt_template`` over the row's columns, or the row's own ``prompt`` column."""
    if not data.prompt_template:
        return row["prompt"]
    values = {name: row[name] for name in template_columns(data.prompt_template)}
    return _user_turn(data, data.prompt_template.format(**values))


def format_split(
    dataset: Dataset,
    data: DataArguments,
    *,
    completion: bool = False,
    keep: Iterable[str] | None = None,
) -> Dataset:
    """Add ``prompt`` (and, with ``completion``, a ``completion``) column.

    Without ``completion`` (methods that generate their answers, evaluation) every other column stays, for
    rewards and judges. With it (a trainer learning from targets), the split is cut to prompt, completion, the
    image column and the columns named in ``keep`` (a method's per-row targets, e.g. a label its loss reads);
    ``None`` keeps every column.

    With ``image_column`` set, that column is exposed as ``image`` (or ``images``); raw prompts are refused.
    With ``response_prefix`` set, each row gets it as a ``response_prefix`` column (rewards put it back in
    front of the completion); a raw prompt ends with it, a chat prompt gets it from the chat template
    (:func:`prefixed_chat_template`) or from the generation service's ``render_prompt``.
    """
    check_image_prompts(data)
    if data.response_prefix and completion:
        raise ValueError(
            "response_prefix is for methods that generate their answers; for SFT, start completion_template "
            "with it instead."
        )
    templated = bool(
        data.prompt_template or (completion and data.completion_template) or data.response_prefix
    )
    # Read only the templates' columns: ``format(**row)`` would decode every image of the split for nothing.
    reads = template_columns(data.prompt_template) | template_columns(data.completion_template)

    def build(row):
        values = {name: row[name] for name in reads}
        out = {}
        if data.prompt_template:
            out["prompt"] = _user_turn(data, data.prompt_template.format(**values))
        if data.response_prefix:
            out["response_prefix"] = data.response_prefix
            if data.prompt_format == "raw":
                out["prompt"] = out.get("prompt", row.get("prompt", "")) + data.response_prefix
        if completion and data.completion_template:
            text = data.completion_template.format(**values)
            out["completion"] = (
                text if data.prompt_format == "raw" else [{"role": "assistant", "content": text}]
            )
        return out

    formatted = dataset.map(build, desc="Formatting prompts") if templated else dataset
    image = None
    if data.image_column:
        image = image_field(formatted, data.image_column)
        formatted = _expose_image(formatted, data.image_column)
    # A target-learning trainer tokenizes what it is given; keep what it trains on and what the method asks for.
    if templated and completion and keep is not None:
        wanted = ["prompt", "completion"] + ([image] if image else [])
        extra = [c for c in keep if c not in wanted]
        missing = [c for c in extra if c not in formatted.column_names]
        if missing:
            raise ValueError(f"The method needs column(s) {missing}, which the dataset does not have.")
        formatted = formatted.select_columns(wanted + extra)
    return formatted


def format_dataset(
    dataset: DatasetDict,
    data: DataArguments,
    *,
    completion: bool = False,
    keep: Iterable[str] | None = None,
    extra_columns: Iterable[str] = (),
    what: str = "",
) -> DatasetDict:
    """Check every split has the columns the templates and ``extra_columns`` (rewards) need, then format
    (see :func:`format_split`)."""
    check_image_prompts(data)
    needed = required_columns(data, completion) | set(extra_columns) | set(keep or ())
    for name, split in dataset.items():
        if data.image_column:
            require_columns(split, [data.image_column], what=f"image_column (split {name!r})")
        require_columns(split, sorted(needed), what=f"{what or 'the recipe'} (split {name!r})")
    return DatasetDict(
        {name: format_split(split, data, completion=completion, keep=keep) for name, split in dataset.items()}
    )


_PROBE_CONVERSATION = [{"role": "user", "content": "Which intent is this request?"}]


def prefixed_chat_template(processing_class, prefix: str) -> str:
    """The processing class's chat template, with every assistant turn it opens starting with ``prefix``.

    ``add_generation_prompt`` then renders exactly what ``continue_final_message`` would render for a last
    assistant message holding ``prefix``; this is checked on a probe conversation, and a template it does not
    hold for is refused with an error naming ``response_prefix``.
    """
    template = getattr(processing_class, "chat_template", None)
    if not isinstance(template, str) or not template:
        raise ValueError(
            "response_prefix with chat prompts needs a single chat template on the tokenizer; this one has "
            f"{'none' if not template else 'several'}. Use prompt_format: raw, or a model with a chat template."
        )
    if "{% endraw %}" in prefix:
        raise ValueError("response_prefix cannot contain '{% endraw %}'.")
    extended = template + "{% if add_generation_prompt %}{% raw %}" + prefix + "{% endraw %}{% endif %}"
    render = processing_class.apply_chat_template
    expected = render(
        _PROBE_CONVERSATION + [{"role": "assistant", "content": prefix}],
        tokenize=False,
        continue_final_message=True,
    )
    got = render(_PROBE_CONVERSATION, tokenize=False, add_generation_prompt=True, chat_template=extended)
    if got != expected:
        raise ValueError(
            f"response_prefix {prefix!r}: this model's chat template does not end its generation prompt where "
            f"the assistant's answer starts (rendered {got[-80:]!r}, expected {expected[-80:]!r}). Use "
            "prompt_format: raw and write the prompt's markup yourself."
        )
    return extended


def _local_config(model_name_or_path: str, revision: str) -> tuple[str, Any] | None:
    """The folder (or hub id) of the model's files and its config, read only from files already on this machine;
    None when reading it would convert the embedded model or reach the hub."""
    source = model_name_or_path
    if source in EMBEDDED_MODELS:
        source = str(embedded_model_dir(source))
        if not Path(source, "config.json").is_file():
            return None
    try:
        return source, AutoConfig.from_pretrained(source, revision=revision, local_files_only=True)
    except (OSError, ValueError):
        return None


def _context(config: Any) -> int | None:
    context = getattr(config, "max_position_embeddings", None)
    return int(context) if context else None


def local_context(model_name_or_path: str, revision: str = "main") -> int | None:
    """The model's context length (``max_position_embeddings``) from a config already on this machine; None when
    the config is not here or names no length."""
    found = _local_config(model_name_or_path, revision)
    return _context(found[1]) if found is not None else None


def local_tokenizer_and_context(
    model_name_or_path: str, revision: str = "main"
) -> tuple[Any, int | None] | None:
    """The model's tokenizer and context length (``max_position_embeddings``), read only from files already on
    this machine; None when getting them would convert the embedded model or reach the hub.

    Counting prompt tokens needs the tokenizer, not the model, so it can run before anything expensive."""
    found = _local_config(model_name_or_path, revision)
    if found is None:
        return None
    source, config = found
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, local_files_only=True)
    except (OSError, ValueError):
        return None
    return tokenizer, _context(config)


def prompt_token_lengths(tokenizer, split: Dataset, *, with_completion: bool = False) -> list[int]:
    """Tokens of each row's prompt as the trainer renders it (chat template and generation prompt, with the
    row's response prefix), or of the whole prompt and completion with ``with_completion``."""
    if with_completion:
        texts = [
            conversation_text(tokenizer, p, c)
            for p, c in zip(split["prompt"], split["completion"], strict=True)
        ]
    else:
        texts = render_prompts(tokenizer, split)
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _over(lengths: list[int], limit: int) -> tuple[int, int, int]:
    """How many lengths exceed ``limit``, the longest, and the row it is in."""
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    return sum(n > limit for n in lengths), lengths[longest], longest


def check_prompt_lengths(
    tokenizer,
    split: Dataset,
    *,
    context: int | None,
    new_tokens: int | None = None,
    max_length: int | None = None,
    what: str = "training",
) -> list[str]:
    """Errors for rows that cannot run as they are; logs a warning, with a count, for rows that will be cut.

    Rows whose answer is generated (``new_tokens``: GRPO's ``max_completion_length``, the held-out check's
    ``heldout_max_new_tokens``) must fit the model's context with that many new tokens: TRL does not truncate
    GRPO prompts, and generation past the context fails. Rows that learn a target (``max_length``: SFT) are cut
    by TRL to their first ``max_length`` tokens: a row whose prompt alone fills ``max_length`` has nothing left
    to learn and is refused; a row that only loses the end of its completion is counted in a warning. Either
    kind of row longer than the context (when ``max_length`` does not cut it first) is refused.
    """
    if len(split) == 0 or "prompt" not in split.column_names:
        return []
    errors = []
    prompts = prompt_token_lengths(tokenizer, split)
    limits = [f"model context {context}" if context else "model context unknown"]
    limits += [f"{new_tokens} new tokens"] if new_tokens is not None else [f"max_length {max_length}"]
    logger.info("%d %s prompts: longest %d tokens (%s)", len(prompts), what, max(prompts), ", ".join(limits))
    if new_tokens is not None and context:
        count, longest, row = _over([n + new_tokens for n in prompts], context)
        if count:
            errors.append(
                f"{count} of {len(prompts)} {what} prompts do not fit the model's context of {context} tokens with "
                f"{new_tokens} new tokens (longest: row {row}, {longest - new_tokens} prompt tokens). Generation "
                "cannot go past the context, and prompts are not cut unless a recipe asks: set max_prompt_length "
                f"to at most {context - new_tokens} with long_prompts: drop or truncate, shorten the template, or "
                "generate fewer tokens."
            )
    if new_tokens is not None or "completion" not in split.column_names:
        return errors
    if max_length is not None:
        count, longest, row = _over(prompts, max_length - 1)
        if count:
            errors.append(
                f"{count} of {len(prompts)} {what} prompts fill max_length={max_length} on their own (longest: row "
                f"{row}, {longest} tokens): TRL keeps the first max_length tokens of a row, so their completions "
                "would be cut off entirely. Raise max_length, or set max_prompt_length below it with long_prompts: "
                "drop or truncate."
            )
    totals = prompt_token_lengths(tokenizer, split, with_completion=True)
    if max_length is not None:
        count, longest, _ = _over(totals, max_length)
        if count:
            logger.warning(
                "%d of %d %s rows are longer than max_length=%d tokens (longest %d): TRL keeps their first %d "
                "tokens, cutting the end of the completion.",
                count,
                len(totals),
                what,
                max_length,
                longest,
                max_length,
            )
    if context and (max_length is None or max_length > context):
        count, longest, row = _over(totals, context)
        if count:
            errors.append(
                f"{count} of {len(totals)} {what} rows are longer than the model's context of {context} tokens "
                f"(longest: row {row}, {longest} tokens), and max_length={max_length} does not cut them to it: set "
                f"max_length to at most {context}, or shorten or filter the rows."
            )
    return errors


def truncate_prompt(tokenizer, prompt: Any, limit: int, response_prefix: str | None = None) -> Any:
    """``prompt`` cut to ``limit`` tokens as rendered (see :func:`prompt_token_lengths`), keeping its end.

    A raw prompt keeps its last ``limit`` tokens, as TRL's former ``max_prompt_length`` did. A chat prompt keeps
    the template's markup and its system message (the recipe's instructions, the same in every row); its other
    messages lose their earliest text first, and may end up empty. Cuts fall on token boundaries, so the result
    has exactly ``limit`` tokens, or fewer where the tokenizer merges the text differently across the cut.
    ValueError when the markup and the system message alone are longer than ``limit``.
    """

    def length(candidate: Any) -> int:
        rendered = render_prompt(tokenizer, candidate, response_prefix)
        return len(tokenizer(rendered, add_special_tokens=False)["input_ids"])

    if isinstance(prompt, str):
        return _keep_end(tokenizer, prompt, length, limit)
    messages = [dict(message) for message in prompt]
    for message in messages:
        if length(messages) <= limit:
            break
        if message["role"] == "system":
            continue
        if not isinstance(message["content"], str):
            raise ValueError("a message's content is not text")

        def with_content(text: str, message: dict = message) -> int:
            message["content"] = text
            return length(messages)

        message["content"] = _keep_end(tokenizer, message["content"], with_content, limit)
    rest = length(messages)
    if rest > limit:
        raise ValueError(f"its chat markup and system message alone are {rest} tokens")
    return messages


def _keep_end(tokenizer, text: str, length: Any, limit: int) -> str:
    """The longest end of ``text``, cut at a token boundary, for which ``length(end) <= limit`` ("" when none)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]

    def end(keep: int) -> str:
        return tokenizer.decode(ids[len(ids) - keep :], clean_up_tokenization_spaces=False) if keep else ""

    # Each token of text kept is about one token of the rendered prompt: start from that estimate and correct it.
    keep = max(0, len(ids) - (length(text) - limit))
    while keep > 0 and (over := length(end(keep)) - limit) > 0:
        keep = max(0, keep - over)
    while keep < len(ids) and length(end(keep + 1)) <= limit:
        keep += 1
    return end(keep)


def cap_prompt_lengths(
    tokenizer, split: Dataset, *, limit: int, mode: str = "refuse", what: str = "training"
) -> tuple[Dataset, list[str]]:
    """Apply ``max_prompt_length``: rows whose prompt is longer than ``limit`` tokens (as the trainer renders it)
    are refused (the error is returned), dropped, or truncated to their last ``limit`` tokens
    (:func:`truncate_prompt`). Dropped and truncated rows are logged with their count and the longest."""
    if len(split) == 0 or "prompt" not in split.column_names:
        return split, []
    lengths = prompt_token_lengths(tokenizer, split)
    count, longest, row = _over(lengths, limit)
    total = len(lengths)
    if not count:
        logger.info(
            "All %d %s prompts are within max_prompt_length=%d tokens (longest %d).",
            total,
            what,
            limit,
            longest,
        )
        return split, []
    longest_row = f"longest: row {row}, {longest} tokens"
    if mode == "refuse":
        return split, [
            f"{count} of {total} {what} prompts are longer than max_prompt_length={limit} tokens ({longest_row}). "
            f"Set long_prompts: drop to leave them out, or long_prompts: truncate to keep their last {limit} tokens; "
            "or raise max_prompt_length."
        ]
    if mode == "drop":
        if count == total:
            return split, [
                f"All {total} {what} prompts are longer than max_prompt_length={limit} tokens ({longest_row}): "
                "long_prompts: drop would leave none. Raise max_prompt_length, or use long_prompts: truncate."
            ]
        logger.warning(
            "Dropped %d of %d %s prompts longer than max_prompt_length=%d tokens (%s); %d left.",
            count,
            total,
            what,
            limit,
            longest_row,
            total - count,
        )
        return split.select([i for i, n in enumerate(lengths) if n <= limit]), []
    prompts = split["prompt"]
    prefixes = split["response_prefix"] if "response_prefix" in split.column_names else [None] * total
    cut = {}
    for i, n in enumerate(lengths):
        if n > limit:
            try:
                cut[i] = truncate_prompt(tokenizer, prompts[i], limit, prefixes[i])
            except ValueError as err:
                return split, [
                    f"Cannot truncate {what} row {i} to max_prompt_length={limit} tokens: {err}. Raise "
                    "max_prompt_length, or use long_prompts: drop."
                ]
    logger.warning(
        "Truncated %d of %d %s prompts to their last %d tokens (max_prompt_length; %s).",
        count,
        total,
        what,
        limit,
        longest_row,
    )
    truncated = split.map(
        lambda row, i: {"prompt": cut.get(i, row["prompt"])}, with_indices=True, desc="Truncating prompts"
    )
    return truncated, []


def prompt_cap_errors(recipe: Any, context: int | None, heldout: bool) -> list[str]:
    """Errors for a ``max_prompt_length`` that leaves no room for the answer: a prompt at the cap plus the tokens
    the trainer generates (``max_completion_length``; ``heldout_max_new_tokens`` with ``heldout``) must fit the
    model's context, and an SFT prompt at the cap must leave some of ``max_length`` (and of the context) to its
    completion. A limit that is not known yet (``context`` None) is not checked."""
    from trl import SFTConfig

    cap = recipe.data.max_prompt_length
    if cap is None:
        return []
    args = recipe.trainer
    errors = []
    generated = []
    if recipe.method.family.generates:
        generated.append(("max_completion_length", args.max_completion_length))
    elif isinstance(args, SFTConfig):
        bounds = [
            (n, name) for n, name in ((args.max_length, "max_length"), (context, "the model's context")) if n
        ]
        if bounds:
            bound, name = min(bounds)
            if cap >= bound:
                errors.append(
                    f"max_prompt_length={cap} leaves no room for the completion within {name} of {bound} tokens: "
                    f"set max_prompt_length below {bound}."
                )
    if heldout:
        generated.append(("heldout_max_new_tokens", recipe.recipe.heldout_max_new_tokens))
    for key, new_tokens in generated:
        if context and new_tokens is not None and cap + new_tokens > context:
            errors.append(
                f"max_prompt_length={cap} with {key}={new_tokens} needs {cap + new_tokens} tokens, more than the "
                f"model's context of {context}: set max_prompt_length to at most {context - new_tokens}, or "
                "generate fewer tokens."
            )
    return errors


def fit_prompt_lengths(
    recipe: Any, train: Dataset, test: Dataset | None, tokenizer: Any = None
) -> tuple[Dataset, Dataset | None] | None:
    """A recipe's formatted training split and held-out rows, with ``max_prompt_length`` applied as
    ``long_prompts`` says (:func:`cap_prompt_lengths`) and every row checked (:func:`check_prompt_lengths`)
    against the limits its trainer applies: ``max_completion_length`` for a generating trainer, ``max_length``
    for TRL's SFT trainer (other trainers cut rows their own way and are not checked), ``heldout_max_new_tokens``
    for the held-out check. Raises a :class:`DataError` listing every problem.

    Without ``tokenizer``, the tokenizer is read from files already on this machine; when they are not there
    yet, only what needs no tokenizer is checked, and None is returned (it is logged): ``train`` calls this again
    with the tokenizer it loads. Vision-language recipes are not counted (their prompts' length depends on the
    images); their splits are returned as they are.
    """
    from trl import SFTConfig

    model = recipe.model.model_name_or_path
    if recipe.data.image_column:
        logger.info("Prompt lengths not checked: a vision-language prompt's length depends on its images.")
        return train, test
    if tokenizer is None:
        found = local_tokenizer_and_context(model, recipe.model.model_revision)
        if found is None:
            errors = prompt_cap_errors(recipe, None, heldout=test is not None)
            if errors:
                raise DataError("\n  ".join(errors))
            logger.info(
                "Prompt lengths not checked yet: the tokenizer of %s is not on this machine (a model still to convert "
                "or download; `posttrain prepare --model NAME` converts an embedded one). They are checked%s once the "
                "tokenizer loads, before the model.",
                model,
                ", and max_prompt_length applied," if recipe.data.max_prompt_length is not None else "",
            )
            return None
        tokenizer, context = found
    else:
        context = local_context(model, recipe.model.model_revision)
    errors = prompt_cap_errors(recipe, context, heldout=test is not None)
    if errors:
        raise DataError("\n  ".join(errors))
    cap, mode = recipe.data.max_prompt_length, recipe.data.long_prompts
    if cap is not None:
        train, errors = cap_prompt_lengths(tokenizer, train, limit=cap, mode=mode)
        if test is not None:
            test, held_out_errors = cap_prompt_lengths(tokenizer, test, limit=cap, mode=mode, what="held-out")
            errors += held_out_errors
        if errors:
            raise DataError("\n  ".join(errors))
    args = recipe.trainer
    if recipe.method.family.generates:
        errors += check_prompt_lengths(
            tokenizer, train, context=context, new_tokens=args.max_completion_length
        )
    elif isinstance(args, SFTConfig):
        errors += check_prompt_lengths(tokenizer, train, context=context, max_length=args.max_length)
    if test is not None:
        new_tokens = recipe.recipe.heldout_max_new_tokens
        errors += check_prompt_lengths(
            tokenizer, test, context=context, new_tokens=new_tokens, what="held-out"
        )
    if errors:
        raise DataError("\n  ".join(errors))
    return train, test
