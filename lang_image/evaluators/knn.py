"""k-nearest-neighbour classification on frozen image features.

Features are L2-normalised and compared by cosine similarity s. Each test image takes its k
most similar training images and every neighbour votes for its label with weight
exp(s / T) (Wu et al. 2018, as used by DINO: k = 20, T = 0.07). The class scores are the
summed votes; top-k accuracy and mean per-class recall are computed from them as in
`classification.classification_metrics`, so ties between class scores are broken at random in
expectation.

Ties in the choice of neighbours: when several training images tie with the k-th most
similar one, they share the remaining places. With a images strictly more similar than the
k-th and b images exactly as similar, each of the b gets the weight (k - a) / b, its
probability of being chosen under a random order of the tie, so the votes are the expected
votes of a random tie-break.

Classes without training images never receive a vote; with at least one vote cast they are
never predicted.
"""

from __future__ import annotations

import numpy as np

from lang_image.evaluators.classification import classification_metrics

DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.07
# Similarity entries per block of test rows: bounds memory for large training sets.
_BLOCK = 2 ** 24


def _unit(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_votes(train_x, train_y, test_x, num_classes: int, k: int = DEFAULT_K,
              temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
  """[M, C] summed neighbour votes of each test row (module docstring)."""
  train_x, test_x = _unit(train_x), _unit(test_x)
  train_y = np.asarray(train_y)
  if len(train_x) == 0 or len(train_y) != len(train_x):
    raise ValueError(f"k-NN needs a non-empty training set with one label per row, got "
                     f"{len(train_x)} rows and {len(train_y)} labels.")
  if not (isinstance(k, (int, np.integer)) and k >= 1) or not temperature > 0:
    raise ValueError(f"k-NN needs k >= 1 and a positive temperature, got k={k!r}, "
                     f"temperature={temperature!r}; set config.eval.knn_k / knn_temperature.")
  k = min(int(k), len(train_x))
  one_hot = np.eye(num_classes)[train_y]
  rows = max(1, _BLOCK // len(train_x))
  votes = []
  for start in range(0, len(test_x), rows):
    sims = test_x[start:start + rows] @ train_x.T
    kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1:k]
    above, tied = sims > kth, sims == kth
    share = (k - above.sum(axis=1, keepdims=True)) / tied.sum(axis=1, keepdims=True)
    chosen = np.where(above, 1.0, np.where(tied, share, 0.0))
    # exp((s - 1) / T): the same ratios as exp(s / T), without overflow for small T.
    votes.append((chosen * np.exp((sims - 1.0) / temperature)) @ one_hot)
  return np.concatenate(votes)


def knn_classification(train, test, num_classes: int, k: int = DEFAULT_K,
                       temperature: float = DEFAULT_TEMPERATURE, ks=(1, 5)) -> dict:
  """(features [N, D], labels [N]) train and test pairs -> top-k accuracy and mean per-class
  recall of the k-NN classifier, in percent."""
  votes = knn_votes(train[0], train[1], test[0], num_classes, k, temperature)
  return classification_metrics(votes, test[1], ks)
