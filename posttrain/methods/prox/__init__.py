"""ProX ("Programming Every Example: Lifting Pre-training Data Quality like Experts at Scale", Zhou et al., 2024).

A small model writes a program for every document (keep or drop it; remove lines, normalise strings chunk by
chunk) and a strict executor applies it to refine a corpus. ``program`` is the language and its executor,
``teacher`` the programmers (rule teacher, gold-derived truth, a model refiner), ``pipeline`` the corpus
pipeline on datatrove, ``data`` the refiner's training examples. Method ``prox`` is SFT of a refiner on them.
"""

from posttrain.data import DataBuilder, register_data_builder
from posttrain.methods import Method
from posttrain.methods.prox.config import ProxProgramArguments
from posttrain.methods.prox.data import build_refiner_examples

PROX_PROGRAMS = register_data_builder(
    DataBuilder(
        name="prox_programs",
        args_class=ProxProgramArguments,
        build=build_refiner_examples,
        description="ProX refiner examples: a document or a chunk of its numbered lines, and a teacher's program.",
    )
)


def check_prox_recipe(recipe) -> list[str]:
    """A refiner trains on the builder's requests and programs."""
    if recipe.data.data_builder != "prox_programs":
        return [
            "method prox trains a refiner on teacher programs: remove data_builder or set it to prox_programs."
        ]
    return []


# Named, not imported: listing the methods loads none of the training stack (see posttrain.methods).
METHOD = Method(
    name="prox",
    family="sft",
    config_class="posttrain.configs:SFTRecipeConfig",
    trainer_class="posttrain.trainers:PosttrainSFTTrainer",
    description="ProX: SFT of a refiner that writes a cleaning program for each document and chunk.",
    data_builder="prox_programs",
    check=check_prox_recipe,
)
METHODS = (METHOD,)
