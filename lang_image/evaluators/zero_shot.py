"""Zero-shot classification: images against prompt-ensembled class embeddings.

Each class embedding is the renormalised mean of its unit prompt embeddings, one prompt per
template ("a photo of a {}." with the class name filled in): prompt ensembling (Radford et al.
2021). An image's score for class c is the cosine similarity with class embedding c; top-k
accuracy and mean per-class recall follow from these scores (`classification`), ties broken
at random in expectation.
"""

from __future__ import annotations

import numpy as np

from lang_image.evaluators.classification import classification_metrics


def prompts(class_names, templates) -> list[str]:
  """All prompts, class-major: class c's prompts are [c * T, (c + 1) * T)."""
  return [t.format(name) for name in class_names for t in templates]


def class_embeddings(prompt_emb: np.ndarray, n_classes: int) -> np.ndarray:
  """[C * T, D] unit prompt embeddings (class-major) -> [C, D] unit class embeddings."""
  emb = prompt_emb.reshape(n_classes, -1, prompt_emb.shape[-1]).mean(axis=1)
  return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def zero_shot_accuracy(image_emb, class_emb, labels, ks=(1, 5), subsets=None) -> dict:
  """Top-k accuracy (overall and on named boolean subsets) and mean per-class recall, in %."""
  return classification_metrics(np.asarray(image_emb) @ np.asarray(class_emb).T, labels, ks,
                                subsets)
