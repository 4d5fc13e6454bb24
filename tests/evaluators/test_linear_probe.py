"""Linear probe: exact cases, a float64 reference optimum, the penalty sweep, and a trained
model's features."""

import json
import os

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.special

from lang_image.evaluators import linear_probe


def blobs(rng, n, classes=(0, 1, 2, 3)):
  """Unit Gaussian blobs in 32 dims around orthogonal +-2 codes, 16 deviations apart."""
  labels = np.resize(np.asarray(classes), n)
  x = 2.0 * scipy.linalg.hadamard(32)[1:5][labels] + rng.normal(size=(n, 32))
  return x.astype(np.float32), labels


def overlapping_classes(rng, n=300, dim=6, num_classes=4):
  """Overlapping, un-centred classes: the optimum is interior and not trivial to reach."""
  labels = np.arange(n) % num_classes
  x = rng.normal(size=(num_classes, dim))[labels] + 1.5 * rng.normal(size=(n, dim)) + 2.0
  return x.astype(np.float32), labels


def reference_objective(theta, x, labels, l2):
  """The probe's objective and its gradient in float64, theta = [W.ravel(), b]."""
  n, dim = x.shape
  num_classes = len(theta) // (dim + 1)
  w = theta[:dim * num_classes].reshape(dim, num_classes)
  logits = x @ w + theta[dim * num_classes:]
  rows = np.arange(n)
  value = (np.mean(scipy.special.logsumexp(logits, axis=1) - logits[rows, labels])
           + 0.5 * l2 * np.sum(w * w))
  residual = scipy.special.softmax(logits, axis=1)
  residual[rows, labels] -= 1.0
  residual /= n
  return value, np.concatenate([(x.T @ residual + l2 * w).ravel(), residual.sum(axis=0)])


def test_separable_blobs_score_100_and_ties_pick_the_largest_penalty():
  rng = np.random.default_rng(0)
  train, val, test = blobs(rng, 32), blobs(rng, 40), blobs(rng, 40)
  result = linear_probe.linear_probe(train, val, test, num_classes=4)
  # Every penalty separates the blobs, so all tie on validation and the largest wins.
  assert result == {"top1": 100.0, "mean_per_class_recall": 100.0, "val_top1": 100.0,
                    "l2": max(linear_probe.DEFAULT_L2_GRID)}
  assert linear_probe.linear_probe(train, val, test, num_classes=4) == result
  # The grid's order and repeats do not matter.
  shuffled = list(linear_probe.DEFAULT_L2_GRID)[::-1] + [1e-1]
  assert linear_probe.linear_probe(train, val, test, 4, l2_grid=shuffled) == result


@pytest.mark.parametrize("l2", [1e-2, 1e-4])
def test_fit_matches_a_float64_reference_optimum(l2):
  x, labels = overlapping_classes(np.random.default_rng(1))
  dim, num_classes = x.shape[1], 4
  x64 = x.astype(np.float64)
  reference = scipy.optimize.minimize(
      reference_objective, np.zeros(dim * num_classes + num_classes), args=(x64, labels, l2),
      jac=True, method="L-BFGS-B", options={"maxiter": 10_000, "ftol": 0.0, "gtol": 1e-12})
  assert np.abs(reference.jac).max() < 1e-7

  w, b = linear_probe.fit(x, labels, num_classes, l2)
  value, _ = reference_objective(np.concatenate([w.ravel(), b]).astype(np.float64), x64,
                                 labels, l2)
  assert reference.fun - 1e-12 <= value <= reference.fun * (1.0 + 1e-7)
  ref_w = reference.x[:dim * num_classes].reshape(dim, num_classes)
  probs = scipy.special.softmax(x64 @ w + b, axis=1)
  ref_probs = scipy.special.softmax(x64 @ ref_w + reference.x[dim * num_classes:], axis=1)
  np.testing.assert_allclose(probs, ref_probs, atol=1e-4)


def nuisance_task(rng, dim=32, num_classes=4):
  """Draws (x, y) splits of a task where the right penalty depends on the training size.

  Features are class mean + a shared factor along the all-ones direction (sd 3) + unit
  noise, and the class means differ mostly along that same direction. A strong penalty
  pulls the weights towards the class-mean directions and so weighs in the shared factor;
  a weak one can learn to cancel it, which pays off with plenty of data, while a few
  examples with many flipped labels are fitted too closely unless the penalty is strong.
  """
  centred = rng.normal(size=(num_classes, dim))
  means = 0.4 * (centred - centred.mean(axis=1, keepdims=True))
  means += 2.0 * rng.normal(size=(num_classes, 1))

  def draw(n, flip=0.0):
    labels = np.arange(n) % num_classes
    x = means[labels] + 3.0 * rng.normal(size=(n, 1)) + rng.normal(size=(n, dim))
    flipped = rng.random(n) < flip
    labels = np.where(flipped, (labels + rng.integers(1, num_classes, n)) % num_classes, labels)
    return x.astype(np.float32), labels

  return draw


def test_tiny_noisy_training_sets_get_larger_penalties():
  tiny, large = [], []
  for seed in range(4):
    draw = nuisance_task(np.random.default_rng(seed))
    val, test = draw(1000), draw(200)
    tiny.append(linear_probe.linear_probe(draw(32, flip=0.3), val, test, 4)["l2"])
    large.append(linear_probe.linear_probe(draw(4000), val, test, 4)["l2"])
  assert all(t >= s for t, s in zip(tiny, large)), (tiny, large)
  assert np.mean(np.log10(tiny)) >= np.mean(np.log10(large)) + 1.0, (tiny, large)


def test_classes_missing_from_train_are_never_predicted():
  rng = np.random.default_rng(2)
  train = blobs(rng, 32, classes=(0, 1, 2))
  val, test = blobs(rng, 40), blobs(rng, 40)
  result = linear_probe.linear_probe(train, val, test, num_classes=4)
  assert result["top1"] == 75.0 and result["val_top1"] == 75.0  # class 3 is 1 in 4
  assert result["mean_per_class_recall"] == 75.0  # three classes at 100%, one at 0%

  x, labels = overlapping_classes(rng)
  w, b = linear_probe.fit(x, np.minimum(labels, 2), num_classes=4, l2=1e-3)
  assert np.all(np.isfinite(w))
  assert np.all(w[:, 3] == 0) and b[3] == -np.inf and np.all(np.isfinite(b[:3]))
  assert np.all(np.argmax(x @ w + b, axis=1) < 3)


@pytest.mark.parametrize("call, message", [
    (lambda x, y: linear_probe.linear_probe((x, y[:-1]), (x, y), (x, y), 4),
     "train split has 40 feature rows but labels of shape"),
    (lambda x, y: linear_probe.linear_probe((x, y), (x[:, :3], y), (x, y), 4),
     "val features have 3 dimensions but the train features have 32"),
    (lambda x, y: linear_probe.linear_probe((x, y), (x, y), (x, y + 1), 4),
     r"test labels span \[1, 4\], outside \[0, 4\)"),
    (lambda x, y: linear_probe.linear_probe((x, y), (x, y), (x[:0], y[:0]), 4),
     "test split is empty"),
    (lambda x, y: linear_probe.linear_probe((x, y), (x, y), (x, y), 4, l2_grid=[1e-3, 0.0]),
     "l2_grid must hold at least one positive finite penalty"),
    (lambda x, y: linear_probe.linear_probe((x, y), (x, y), (x, y), 0),
     "num_classes must be a positive integer"),
    (lambda x, y: linear_probe.linear_probe(x, (x, y), (x, y), 4),
     "train split must be a"),
    (lambda x, y: linear_probe.linear_probe((x, y + 0.5), (x, y), (x, y), 4),
     "train labels .* are not whole numbers"),
    (lambda x, y: linear_probe.fit(np.where(x == x.max(), np.nan, x), y, 4, 1e-3),
     "train features contain NaN"),
    (lambda x, y: linear_probe.fit(x, y, 4, -1.0), "l2 must be a positive finite penalty"),
    (lambda x, y: linear_probe.fit(x, y, 4, 1e-3, steps=0), "steps must be a positive integer"),
])
def test_bad_inputs_raise_one_clear_error(call, message):
  x, y = blobs(np.random.default_rng(3), 40)
  with pytest.raises(ValueError, match=message):
    call(x, y)


def test_beats_zero_shot_for_a_trained_model_on_the_embedded_data(trained_run):
  assert trained_run.result.returncode == 0, trained_run.result.stderr[-3000:]
  with open(os.path.join(trained_run.workdir, "eval", "step_00000060.json")) as f:
    metrics = json.load(f)["metrics"]
  assert metrics["linear_probe/top1"] > metrics["zero_shot/top1"] + 5.0, metrics
