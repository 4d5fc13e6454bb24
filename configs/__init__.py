"""Experiment configs: one file per objective, each runnable as written in its docstring."""
