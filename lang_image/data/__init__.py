"""Datasets, tokenizers and input pipelines.

Submodules are imported explicitly: some pull in TensorFlow, which is slow to import.
"""
