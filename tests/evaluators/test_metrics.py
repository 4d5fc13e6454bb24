"""Zero-shot and retrieval metrics on hand-computed cases."""

import numpy as np

from lang_image.evaluators import ranks, retrieval, zero_shot


def test_perfect_embeddings_score_100():
  emb = np.eye(6)
  acc = zero_shot.zero_shot_accuracy(emb, emb, np.arange(6), ks=(1, 5))
  assert acc == {"top1": 100.0, "top5": 100.0}
  assert set(retrieval.retrieval_recall(emb, emb).values()) == {100.0}


def test_known_permutation_gives_known_recall():
  # Caption i matches image i, but the text embeddings are the image ones shifted by one:
  # every image's best text is the next caption, its own caption ranks among the rest.
  n = 20
  images = np.eye(n)
  texts = 0.5 * np.roll(np.eye(n), 1, axis=0) + 0.4 * np.eye(n)
  recall = retrieval.retrieval_recall(images, texts, ks=(1, 2))
  assert recall["i2t_r1"] == 0.0 and recall["i2t_r2"] == 100.0
  assert recall["t2i_r1"] == 0.0 and recall["t2i_r2"] == 100.0


def test_ties_are_broken_at_random_in_expectation():
  scores_emb = np.array([[1.0, 0.0]])
  classes = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # classes 0 and 1 tie
  acc = zero_shot.zero_shot_accuracy(scores_emb, classes, np.array([1]), ks=(1, 2))
  assert acc == {"top1": 50.0, "top2": 100.0}
  # Three-way tie behind one better class: P(top-2) = (2 - 1) / 3.
  scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]])
  np.testing.assert_allclose(ranks.expected_hits(scores, np.array([2]), 2), [1 / 3])


def test_collapsed_embeddings_score_chance_not_100():
  n = 40
  same = np.tile([[0.6, 0.8]], (n, 1))
  recall = retrieval.retrieval_recall(same, same, ks=(1, 10))
  assert recall["i2t_r1"] == 100.0 / n and recall["t2i_r10"] == 100.0 * 10 / n
  acc = zero_shot.zero_shot_accuracy(same, same[:8], np.arange(n) % 8, ks=(1,))
  assert acc["top1"] == 100.0 / 8


def test_subsets_and_topk():
  emb = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.1, 0.0]])
  classes = np.eye(3)
  labels = np.array([0, 1, 2, 1])  # the last one is wrong at top-1, right at top-2
  acc = zero_shot.zero_shot_accuracy(emb, classes, labels, ks=(1, 2),
                                     subsets={"a": np.array([1, 1, 0, 0], bool),
                                              "b": np.array([0, 0, 0, 1], bool)})
  assert acc["top1"] == 75.0 and acc["top2"] == 100.0
  assert acc["top1_a"] == 100.0 and acc["top1_b"] == 0.0 and acc["top2_b"] == 100.0


def test_class_embeddings_average_templates():
  prompt = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # 2 classes x 2
  emb = zero_shot.class_embeddings(prompt, 2)
  np.testing.assert_allclose(emb, np.array([[1, 1], [-1, -1]]) / np.sqrt(2))
  assert zero_shot.prompts(["cat", "dog"], ["a {}.", "the {}!"]) == [
      "a cat.", "the cat!", "a dog.", "the dog!"]
