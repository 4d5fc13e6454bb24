"""k-NN classification: hand-computed votes, ties between neighbours, a direct reference."""

import numpy as np
import pytest

from lang_image.evaluators import knn


def reference_votes(train_x, train_y, test_x, num_classes, k, temperature):
  """Votes written from the definition: sort by cosine similarity, sum exp(s / T) of the
  k most similar per label (inputs without ties)."""
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
  sims = unit(test_x) @ unit(train_x).T
  votes = np.zeros((len(test_x), num_classes))
  for row, s in enumerate(sims):
    for j in np.argsort(-s)[:k]:
      votes[row, train_y[j]] += np.exp(s[j] / temperature)
  return votes


def test_votes_match_the_definition():
  rng = np.random.default_rng(0)
  train_x, test_x = rng.normal(size=(50, 8)), rng.normal(size=(7, 8))
  train_y = rng.integers(0, 4, 50)
  for k in (1, 5, 50):
    votes = knn.knn_votes(train_x, train_y, test_x, 4, k=k, temperature=0.1)
    reference = reference_votes(train_x, train_y, test_x, 4, k, 0.1)
    # The same up to the constant factor exp(-1 / T) of each row.
    np.testing.assert_allclose(votes * np.exp(1 / 0.1), reference, rtol=1e-10)


def test_clusters_score_100_and_absent_classes_are_never_predicted():
  rng = np.random.default_rng(1)
  centres = np.eye(6)[:4] * 5
  train_y = np.repeat([0, 1, 2], 10)  # class 3 has no training images
  train_x = centres[train_y] + rng.normal(size=(30, 6)) * 0.1
  test_y = np.repeat([0, 1, 2, 3], 5)
  test_x = centres[test_y] + rng.normal(size=(20, 6)) * 0.1
  metrics = knn.knn_classification((train_x, train_y), (test_x[:15], test_y[:15]), 4, k=5)
  assert metrics == {"top1": 100.0, "mean_per_class_recall": 100.0}  # no top5 with 4 classes
  votes = knn.knn_votes(train_x, train_y, test_x[15:], 4, k=5)
  assert np.all(votes[:, 3] == 0) and np.all(votes.argmax(axis=1) < 3)


def test_neighbours_tied_at_the_kth_place_share_it():
  # Two training images identical to the test image, one of class 0 and one of class 1.
  train_x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  train_y = np.array([0, 1, 1])
  test = (np.array([[1.0, 0.0]]), np.array([0]))
  # k = 1: each tied neighbour is chosen with probability 1/2: equal votes, a class tie.
  votes = knn.knn_votes(train_x, train_y, test[0], 2, k=1, temperature=0.5)
  np.testing.assert_allclose(votes, [[0.5, 0.5]])
  assert knn.knn_classification((train_x, train_y), test, 2, k=1)["top1"] == 50.0
  # k = 3 adds the orthogonal class-1 image: class 1 wins.
  assert knn.knn_classification((train_x, train_y), test, 2, k=3)["top1"] == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k >= 1 and a positive temperature"),
    ({"temperature": 0.0}, "k >= 1 and a positive temperature"),
])
def test_bad_settings_raise_one_clear_error(kwargs, message):
  x, y = np.eye(3), np.arange(3)
  with pytest.raises(ValueError, match=message):
    knn.knn_votes(x, y, x, 3, **kwargs)
