"""ProX ("Programming Every Example: Lifting Pre-training Data Quality like Experts at Scale", Zhou et al., 2024).

A small model writes a program for every document (keep or drop it; remove lines, normalise strings chunk by
chunk) and a strict executor applies it to refine a corpus. :mod:`posttrain.methods.prox.program` holds the
program language and its executor; the method's record, its corpus pipeline and its recipes build on it.
"""
