"""Top-k hits with ties broken uniformly at random, in expectation.

When the true item scores exactly as high as some others, its place among them is decided by
a fair random draw. With g items scoring strictly higher and t others scoring equal, the true
item lands in any of the positions g, ..., g + t with equal probability, so

    P(hit at k) = clip((k - g) / (t + 1), 0, 1).

A model whose embeddings have collapsed to one point therefore scores chance (k / N), never
100%, and two literally identical captions share a hit instead of both taking it.
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
