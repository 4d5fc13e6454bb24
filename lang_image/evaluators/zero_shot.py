"""Zero-shot classification: images against prompt-ensembled class embeddings.

Each class embedding is the renormalised mean of its unit prompt embeddings (one prompt per
template). A prediction counts as correct at k when fewer than k classes score strictly
higher than the true class, so ties are resolved in the model's favour.
"""

from __future__ import annotations

import numpy as np


def prompts(class_names, templates) -> list[str]:
  """All prompts, class-major: class c's prompts are [c * T, (c + 1) * T)."""
  return [t.format(name) for name in class_names for t in templates]


def class_embeddings(prompt_emb: np.ndarray, n_classes: int) -> np.ndarray:
  """[C * T, D] unit prompt embeddings (class-major) -> [C, D] unit class embeddings."""
  emb = prompt_emb.reshape(n_classes, -1, prompt_emb.shape[-1]).mean(axis=1)
  return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def true_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Number of classes scoring strictly above the true one, per example."""
  true = scores[np.arange(len(labels)), labels]
  return (scores > true[:, None]).sum(axis=1)


def zero_shot_accuracy(image_emb, class_emb, labels, ks=(1, 5), subsets=None) -> dict:
  """Top-k accuracy in percent, overall and on named boolean subsets of the examples."""
  rank = true_class_rank(np.asarray(image_emb) @ np.asarray(class_emb).T, np.asarray(labels))
  metrics = {}
  for name, mask in {"": None, **(subsets or {})}.items():
    selected = rank if mask is None else rank[np.asarray(mask)]
    if selected.size == 0:
      continue
    suffix = f"_{name}" if name else ""
    for k in ks:
      metrics[f"top{k}{suffix}"] = 100.0 * float(np.mean(selected < k))
  return metrics
