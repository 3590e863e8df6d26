"""DeconfoundLM: rewards learned from observational outcomes with known confounders removed.

``simulate`` builds semi-synthetic outcomes on real texts with a known effect of the text and a confounder
entangled with other text features; ``estimators`` fits ``Y = h(text) + g(confounders)`` by four variants and keeps
``h``. The reward-model stage, the learned reward and the alignment recipes build on these.
"""
