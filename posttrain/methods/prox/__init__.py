"""ProX ("Programming Every Example: Lifting Pre-training Data Quality like Experts at Scale", Zhou et al., 2024).

A small model writes a program for every document (keep or drop it; remove lines, normalise strings chunk by
chunk) and a strict executor applies it to refine a corpus. ``program`` is the language and its executor,
``teacher`` the programmers (rule teacher, gold-derived truth, a model refiner), ``pipeline`` the corpus
pipeline on datatrove.
"""
