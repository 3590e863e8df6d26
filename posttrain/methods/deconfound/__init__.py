"""DeconfoundLM: rewards learned from observational outcomes with known confounders removed.

``simulate`` builds semi-synthetic outcomes on real texts with a known effect of the text and a confounder
entangled with other text features; ``estimators`` fits ``Y = h(text) + g(confounders)`` by four variants and keeps
``h``; ``reward`` fits ``h`` on frozen embeddings and saves it as a ``text_reward`` any GRPO recipe can name. The
benchmark and the alignment recipes build on these.
"""
