"""Zero-shot, retrieval and tie-aware rank metrics on hand-computed cases."""

import itertools

import numpy as np
import pytest

from lang_image.evaluators import classification, ranks, retrieval, zero_shot


def brute_force(scores, positive, k):
  """Mean over every order of the tied items: P(some true item in the top k), E[rank]."""
  hits, ranks_seen = [], []
  for perm in itertools.permutations(range(len(scores))):
    # Sort by score, ties in the order of `perm`.
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], perm.index(i)))
    first = next(pos for pos, i in enumerate(order) if positive[i]) + 1
    hits.append(first <= k)
    ranks_seen.append(first)
  return np.mean(hits), np.mean(ranks_seen)


def test_perfect_embeddings_score_100_everywhere():
  emb = np.eye(6)
  acc = zero_shot.zero_shot_accuracy(emb, emb, np.arange(6), ks=(1, 5))
  assert acc == {"top1": 100.0, "top5": 100.0, "mean_per_class_recall": 100.0}
  # Three captions per image, each equal to its image's embedding.
  captions = np.repeat(emb, 3, axis=0)
  scores = retrieval.retrieval_metrics(emb, captions, np.repeat(np.arange(6), 3))
  assert {v for k, v in scores.items() if "_r" in k and "rank" not in k} == {100.0}
  assert {v for k, v in scores.items() if "rank" in k} == {1.0}


def test_known_permutation_gives_known_recall():
  # Caption i matches image i, but the text embeddings are the image ones shifted by one:
  # every image's best text is the next caption, its own caption ranks second.
  n = 20
  images = np.eye(n)
  texts = 0.5 * np.roll(np.eye(n), 1, axis=0) + 0.4 * np.eye(n)
  scores = retrieval.retrieval_metrics(images, texts, ks=(1, 2))
  assert scores["i2t_r1"] == 0.0 and scores["i2t_r2"] == 100.0
  assert scores["t2i_r1"] == 0.0 and scores["t2i_r2"] == 100.0
  assert scores["i2t_mean_rank"] == scores["t2i_median_rank"] == 2.0


def test_known_permutation_with_two_captions_per_image():
  # Image i is e_i. Its captions: e_{i+1} (another image's direction) and
  # 0.6 e_i + 0.8 e_{i+2}. For image i the captions score 1.0 (caption 0 of image i-1),
  # 0.8 (caption 1 of image i-2), then its own 0.6: rank 3 exactly, for every image.
  n = 4
  e = np.eye(n)
  captions = np.concatenate([[e[(i + 1) % n], 0.6 * e[i] + 0.8 * e[(i + 2) % n]]
                             for i in range(n)])
  owner = np.repeat(np.arange(n), 2)
  scores = retrieval.retrieval_metrics(e, captions, owner, ks=(1, 2, 3))
  assert (scores["i2t_r1"], scores["i2t_r2"], scores["i2t_r3"]) == (0.0, 0.0, 100.0)
  assert scores["i2t_mean_rank"] == scores["i2t_median_rank"] == 3.0
  # Text -> image. Caption e_{i+1}: image i+1 scores 1, its own image ties at 0 with two
  # others, so it is 2nd, 3rd or 4th with equal chance: hits 0, 1/3, 2/3, expected rank 3.
  # Caption 0.6 e_i + 0.8 e_{i+2}: image i+2 first, its own second: rank 2.
  assert scores["t2i_r1"] == 0.0
  np.testing.assert_allclose(scores["t2i_r2"], 100 * (1 / 3 + 1) / 2)
  np.testing.assert_allclose(scores["t2i_r3"], 100 * (2 / 3 + 1) / 2)
  np.testing.assert_allclose([scores["t2i_mean_rank"], scores["t2i_median_rank"]], [2.5, 2.5])


def test_ties_are_broken_at_random_in_expectation():
  scores_emb = np.array([[1.0, 0.0]])
  classes = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # classes 0 and 1 tie
  acc = zero_shot.zero_shot_accuracy(scores_emb, classes, np.array([1]), ks=(1, 2))
  assert acc == {"top1": 50.0, "top2": 100.0, "mean_per_class_recall": 50.0}
  # Three-way tie behind one better class: P(top-2) = (2 - 1) / 3.
  scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]])
  np.testing.assert_allclose(ranks.expected_hits(scores, np.array([2]), 2), [1 / 3])
  # Two true and two false items all tied: P(top-1) = 1/2, P(top-2) = 1 - 1/C(4, 2),
  # E[rank of the first true one] = (n + p + 1) / (p + 1) = 5/3.
  tied, true = np.full((1, 4), 0.5), np.array([[True, True, False, False]])
  hits = ranks.expected_hits_any(tied, true, ks=(1, 2, 3))
  np.testing.assert_allclose([hits[1][0], hits[2][0], hits[3][0]], [0.5, 5 / 6, 1.0])
  np.testing.assert_allclose(ranks.expected_rank(tied, true), [5 / 3])


@pytest.mark.parametrize("seed", range(6))
def test_several_true_items_match_every_order_of_the_ties(seed):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, 3, size=(4, 6)).astype(float)  # many ties
  positive = rng.random((4, 6)) < 0.35
  positive[np.arange(4), rng.integers(0, 6, 4)] = True
  hits = ranks.expected_hits_any(scores, positive, ks=(1, 2, 4))
  expected_rank = ranks.expected_rank(scores, positive)
  for row in range(4):
    for k in (1, 2, 4):
      reference, rank = brute_force(scores[row], positive[row], k)
      np.testing.assert_allclose(hits[k][row], reference, atol=1e-12)
    np.testing.assert_allclose(expected_rank[row], rank, atol=1e-12)
  # One true item per row: the same as the single-item formula.
  single = np.zeros_like(positive)
  single[np.arange(4), [0, 3, 5, 1]] = True
  np.testing.assert_allclose(ranks.expected_hits_any(scores, single, (2,))[2],
                             ranks.expected_hits(scores, np.array([0, 3, 5, 1]), 2))


def test_collapsed_embeddings_score_chance_not_100():
  n = 40
  same = np.tile([[0.6, 0.8]], (n, 1))
  scores = retrieval.retrieval_metrics(same, same, ks=(1, 10))
  assert scores["i2t_r1"] == pytest.approx(100.0 / n, rel=1e-12)
  assert scores["t2i_r10"] == pytest.approx(100.0 * 10 / n, rel=1e-12)
  assert scores["i2t_mean_rank"] == scores["t2i_median_rank"] == (n + 1) / 2
  acc = zero_shot.zero_shot_accuracy(same, same[:8], np.arange(n) % 8, ks=(1,))
  assert acc["top1"] == acc["mean_per_class_recall"] == 100.0 / 8


def test_subsets_and_topk():
  emb = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.1, 0.0]])
  classes = np.eye(3)
  labels = np.array([0, 1, 2, 1])  # the last one is wrong at top-1, right at top-2
  acc = zero_shot.zero_shot_accuracy(emb, classes, labels, ks=(1, 2),
                                     subsets={"a": np.array([1, 1, 0, 0], bool),
                                              "b": np.array([0, 0, 0, 1], bool)})
  assert acc["top1"] == 75.0 and acc["top2"] == 100.0
  assert acc["top1_a"] == 100.0 and acc["top1_b"] == 0.0 and acc["top2_b"] == 100.0
  # Class 1 has one of its two images right: (1 + 1/2 + 1) / 3.
  np.testing.assert_allclose(acc["mean_per_class_recall"], 100 * 2.5 / 3)


def balanced_accuracy(y_true, y_pred):
  """sklearn's balanced_accuracy_score, written from its definition: the mean over the
  classes present in y_true of recall = correct predictions of c / examples of c."""
  recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
  return float(np.mean(recalls))


def test_mean_per_class_recall_is_balanced_accuracy_on_an_unbalanced_set():
  rng = np.random.default_rng(0)
  labels = np.repeat([0, 1, 2, 4], [50, 10, 3, 1])  # class 3 absent, 4 has one example
  scores = rng.normal(size=(len(labels), 5))
  scores[np.arange(len(labels)), labels] += 1.0  # better than chance, not perfect
  metrics = classification.classification_metrics(scores, labels)
  predicted = scores.argmax(axis=1)
  np.testing.assert_allclose(metrics["mean_per_class_recall"],
                             100 * balanced_accuracy(labels, predicted), rtol=1e-12)
  # Plain accuracy weighs the large class: the two differ on this set.
  assert abs(metrics["top1"] - metrics["mean_per_class_recall"]) > 1.0


def test_class_embeddings_average_templates():
  prompt = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # 2 classes x 2
  emb = zero_shot.class_embeddings(prompt, 2)
  np.testing.assert_allclose(emb, np.array([[1, 1], [-1, -1]]) / np.sqrt(2))
  assert zero_shot.prompts(["cat", "dog"], ["a {}.", "the {}!"]) == [
      "a cat.", "the cat!", "a dog.", "the dog!"]


@pytest.mark.parametrize("images, texts, owner, message", [
    (np.eye(3), np.eye(2), None, "3 images but 2 captions and no caption_image"),
    (np.eye(3), np.eye(3), np.array([0, 1, 3]), r"one image index in \[0, 3\)"),
    (np.eye(3), np.eye(3), np.array([0, 1, 1]), "some images have no caption"),
])
def test_bad_retrieval_input_raises_one_clear_error(images, texts, owner, message):
  with pytest.raises(ValueError, match=message):
    retrieval.retrieval_metrics(images, texts, owner)
