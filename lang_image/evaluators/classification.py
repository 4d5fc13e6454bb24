"""Accuracy metrics of class scores, shared by zero-shot, the linear probe and k-NN.

For [N, C] class scores and [N] labels, in percent:
- `top{k}`: the expected top-k hit rate, ties broken at random (`ranks.expected_hits`);
- `top{k}_{subset}`: the same on a named boolean subset of the examples;
- `mean_per_class_recall`: the top-1 recall of each class (the mean top-1 hit of its
  examples) averaged over the classes that occur in the labels, i.e. balanced accuracy. With
  no ties it equals sklearn's `balanced_accuracy_score`; a tie counts its expected hit.
"""

from __future__ import annotations

import numpy as np

from lang_image.evaluators.ranks import expected_hits


def mean_per_class_recall(top1_hits: np.ndarray, labels: np.ndarray) -> float:
  """[N] (expected) top-1 hits, [N] labels -> mean over present classes of their recall, %."""
  _, index = np.unique(np.asarray(labels), return_inverse=True)
  per_class = np.bincount(index, weights=top1_hits) / np.bincount(index)
  return 100.0 * float(np.mean(per_class))


def classification_metrics(scores, labels, ks=(1, 5), subsets=None) -> dict:
  """Top-k accuracies (also on named boolean subsets) and mean per-class recall, in percent.

  Values of k above the number of classes are left out.
  """
  scores, labels = np.asarray(scores), np.asarray(labels)
  ks = [k for k in ks if k <= scores.shape[1]]
  hits = {k: expected_hits(scores, labels, k) for k in ks}
  metrics = {}
  for name, mask in {"": None, **(subsets or {})}.items():
    if mask is not None and not np.any(mask):
      continue
    suffix = f"_{name}" if name else ""
    for k in ks:
      selected = hits[k] if mask is None else hits[k][np.asarray(mask)]
      metrics[f"top{k}{suffix}"] = 100.0 * float(np.mean(selected))
  top1 = hits[1] if 1 in hits else expected_hits(scores, labels, 1)
  metrics["mean_per_class_recall"] = mean_per_class_recall(top1, labels)
  return metrics
