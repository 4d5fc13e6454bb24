"""Zero-shot and retrieval metrics on hand-computed cases."""

import numpy as np

from lang_image.evaluators import retrieval, zero_shot


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


def test_ties_count_in_favour_of_the_true_class():
  scores_emb = np.array([[1.0, 0.0]])
  classes = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # classes 0 and 1 tie
  assert zero_shot.zero_shot_accuracy(scores_emb, classes, np.array([1]), ks=(1,))["top1"] == 100.0


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
