"""Zero-shot classification: images against prompt-ensembled class embeddings.

Each class embedding is the renormalised mean of its unit prompt embeddings (one prompt per
template). Accuracy at k is the expected top-k hit rate with ties broken at random
(`ranks.expected_hits`).
"""

from __future__ import annotations

import numpy as np

from lang_image.evaluators.ranks import expected_hits


def prompts(class_names, templates) -> list[str]:
  """All prompts, class-major: class c's prompts are [c * T, (c + 1) * T)."""
  return [t.format(name) for name in class_names for t in templates]


def class_embeddings(prompt_emb: np.ndarray, n_classes: int) -> np.ndarray:
  """[C * T, D] unit prompt embeddings (class-major) -> [C, D] unit class embeddings."""
  emb = prompt_emb.reshape(n_classes, -1, prompt_emb.shape[-1]).mean(axis=1)
  return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def zero_shot_accuracy(image_emb, class_emb, labels, ks=(1, 5), subsets=None) -> dict:
  """Top-k accuracy in percent, overall and on named boolean subsets of the examples."""
  scores = np.asarray(image_emb) @ np.asarray(class_emb).T
  hits = {k: expected_hits(scores, np.asarray(labels), k) for k in ks}
  metrics = {}
  for name, mask in {"": None, **(subsets or {})}.items():
    if mask is not None and not np.any(mask):
      continue
    suffix = f"_{name}" if name else ""
    for k in ks:
      selected = hits[k] if mask is None else hits[k][np.asarray(mask)]
      metrics[f"top{k}{suffix}"] = 100.0 * float(np.mean(selected))
  return metrics
