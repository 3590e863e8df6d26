"""Training-time markers ("Treasure Hunt: Real-time Targeting of the Long Tail using Training-Time Markers", Cohere,
2025).

Each SFT example is annotated with a marker list (length, language, domain, task, format, quality, ...); the list
is appended to the prompt with dataset- and sample-level dropout drawn afresh each epoch, and always starts the
completion. The model learns to infer its markers when none are given, and a user steers it by setting them.
"""

from posttrain.data import DataBuilder, register_data_builder
from posttrain.methods import Method
from posttrain.methods.markers.data import MixtureArguments, build_mixture

MIXTURE = register_data_builder(
    DataBuilder(
        name="marker_mixture",
        args_class=MixtureArguments,
        build=build_mixture,
        description="A mixture of the registered offline sets (math, code, QA, classification) with each row's "
        "task, domain, format and source.",
    )
)

# Named, not imported: listing the methods loads none of the training stack (see posttrain.methods).
METHOD = Method(
    name="markers",
    family="sft",
    config_class="posttrain.methods.markers.config:MarkersConfig",
    trainer_class="posttrain.methods.markers.trainer:MarkersTrainer",
    description="Training-time markers: SFT with a marker list appended to the prompt (with dropout) and starting "
    "the completion, to infer and steer length, format, domain and quality.",
    stages="posttrain.methods.markers.annotate:STAGES",
    keep_columns=("markers",),  # posttrain.methods.markers.annotate.MARKERS_COLUMN
    check="posttrain.methods.markers.annotate:check_markers_recipe",
)
METHODS = (METHOD,)
