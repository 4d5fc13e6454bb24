"""Top-k hits and ranks with ties broken uniformly at random, in expectation.

When the true item scores exactly as high as some others, its place among them is decided by
a fair random draw. With g items scoring strictly higher and t others scoring equal, the true
item lands in any of the positions g, ..., g + t with equal probability, so

    P(hit at k) = clip((k - g) / (t + 1), 0, 1).

A model whose embeddings have collapsed to one point therefore scores chance (k / N), never
100%, and two literally identical captions share a hit instead of both taking it.

Several true items (an image with several captions): a query hits at k when ANY of its true
items is among the top k, i.e. when the best placed one is. Let s be the best score of a true
item, g the number of items scoring above s (all false), and p true and n false items score
exactly s. In a uniformly random order of those p + n tied items, the first true one is at
position > j exactly when the first j are all false, so with j = k - g,

    P(hit at k) = 1 - C(n, j) / C(n + p, j) = 1 - prod_{i<j} (n - i) / (n + p - i)

(0 for j <= 0, 1 for j > n), which is the formula above when p = 1. The rank (1-based) of the
first true item has expectation

    E[rank] = g + (n + p + 1) / (p + 1),

i.e. g + 1 + t / 2 for a single true item: the average of the positions the tie allows.
"""

from __future__ import annotations

import numpy as np


def expected_hits(scores: np.ndarray, true_index: np.ndarray, k: int) -> np.ndarray:
  """[N, C] scores, [N] index of each row's true item -> [N] probability of a top-k hit."""
  scores = np.asarray(scores)
  true = scores[np.arange(len(scores)), np.asarray(true_index)][:, None]
  greater = (scores > true).sum(axis=1)
  ties = (scores == true).sum(axis=1) - 1
  return np.clip((k - greater) / (ties + 1.0), 0.0, 1.0)


def _best_true_counts(scores: np.ndarray, positive: np.ndarray):
  """(g, p, n) per row: items above the best true score, true and false items tied with it."""
  if not np.all(positive.any(axis=1)):
    raise ValueError("every query needs at least one true item; give each image a caption.")
  best = np.where(positive, scores, -np.inf).max(axis=1, keepdims=True)
  at_best = scores == best
  greater = (scores > best).sum(axis=1)
  tied_true = (at_best & positive).sum(axis=1)
  tied_false = (at_best & ~positive).sum(axis=1)
  return greater, tied_true, tied_false


def expected_hits_any(scores: np.ndarray, positive: np.ndarray, ks) -> dict[int, np.ndarray]:
  """[Q, C] scores, [Q, C] boolean true items -> {k: [Q] probability that some true item
  is in the top k}, ties broken at random (module docstring)."""
  greater, p, n = _best_true_counts(np.asarray(scores), np.asarray(positive, bool))
  hits = {}
  for k in ks:
    j = np.clip(k - greater, 0, n + p)
    all_false = np.ones(len(greater))
    for i in range(int(j.max(initial=0))):
      # Once i reaches n the factor is 0: a window of more than n items holds a true one.
      factor = np.maximum(n - i, 0) / np.maximum(n + p - i, 1)
      all_false *= np.where(i < j, factor, 1.0)
    hits[k] = 1.0 - all_false
  return hits


def expected_rank(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
  """[Q, C] scores, [Q, C] boolean true items -> [Q] expected 1-based rank of the best
  placed true item, ties broken at random (module docstring)."""
  greater, p, n = _best_true_counts(np.asarray(scores), np.asarray(positive, bool))
  return greater + (n + p + 1) / (p + 1)
