"""Linear probe: multinomial logistic regression on frozen image features.

Features are standardised with the training split's per-dimension mean and standard deviation
(a dimension whose spread is below 1e-6 of the largest one is only centred), so one penalty
grid means the same thing whatever the scale or normalisation of the embeddings, and the
problem is better conditioned for the optimizer than on raw or unit-norm features. The same
affine map is applied to the validation and test features.

For standardised features x_i in R^D, labels y_i in {0, ..., C-1}, weights W in R^{D x C}
and bias b in R^C, the probe minimises

    L(W, b) = 1/N sum_i [ logsumexp_c(x_i W_c + b_c) - (x_i W_{y_i} + b_{y_i}) ]
              + lambda / 2 * ||W||_F^2

(the bias is not penalised). L is convex, and strictly convex in W for lambda > 0. It is
minimised full-batch in float32 with L-BFGS (memory `MEMORY_SIZE`) and a zoom line search
that tries the unit step first. Near the optimum float32 cannot resolve the changes in L,
so convergence is judged on the gradient: the fit stops once its largest entry is below
`GRAD_TOL`, once `PATIENCE` iterations have passed without it falling below `IMPROVEMENT`
times its best value so far (the rounding floor), or after `steps` iterations, and returns
the iterate with the smallest gradient. Nothing is random, so a fit is deterministic for
fixed inputs.

The penalty is chosen on the validation split: every lambda of the grid is fitted on the
training split, largest first, the first from W = 0 and b = the log class frequencies (the
optimum for W = 0) and each later one from the previous solution. The solution moves smoothly with
lambda, so the small, ill-conditioned penalties start close to their optimum; this path
costs far fewer iterations than independent (e.g. vmapped) cold starts, where every lane
would run as long as the slowest one. The lambda with the best validation top-1 is kept,
and ties go to the LARGER penalty, the simpler model. Its weights (already fitted on the
training split alone, so a refit would give the same model) score the test split. Accuracy
(top-1, top-5, mean per-class recall) is in percent with ties broken at random in
expectation, as in classification.py.

A class that is absent from the training split has no finite optimum (its bias would run
off to -inf), so it is left out of the softmax while fitting and gets a zero weight column
and a bias of -inf: it is never predicted, and its examples in the other splits count as
errors.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lang_image.evaluators.classification import classification_metrics
from lang_image.evaluators.ranks import expected_hits

DEFAULT_L2_GRID = tuple(float(v) for v in np.logspace(-6, -1, 8))
DEFAULT_STEPS = 300
GRAD_TOL = 1e-6
PATIENCE = 30
IMPROVEMENT = 0.9
MEMORY_SIZE = 10
MAX_LINESEARCH_STEPS = 20


def _check_split(name: str, split, dim: int | None, num_classes: int):
  """(features, labels) -> float32 [N, D] and int32 [N] arrays, or a ValueError."""
  if not (isinstance(split, (tuple, list)) and len(split) == 2):
    raise ValueError(f"the {name} split must be a (features, labels) pair; pass a tuple of "
                     f"a [N, D] feature array and an [N] label array.")
  x, y = split
  x = np.asarray(x, np.float32)
  y = np.asarray(y)
  if x.ndim != 2:
    raise ValueError(f"the {name} features have shape {x.shape}, not [N, D]; reshape them "
                     f"to one row per example.")
  if y.ndim != 1 or len(y) != len(x):
    raise ValueError(f"the {name} split has {len(x)} feature rows but labels of shape "
                     f"{y.shape}; pass exactly one integer label per row.")
  if len(x) == 0:
    raise ValueError(f"the {name} split is empty; give it at least one example.")
  if dim is not None and x.shape[1] != dim:
    raise ValueError(f"the {name} features have {x.shape[1]} dimensions but the train "
                     f"features have {dim}; embed every split with the same model.")
  if not (np.issubdtype(y.dtype, np.integer)
          or (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))):
    raise ValueError(f"the {name} labels (dtype {y.dtype}) are not whole numbers; pass "
                     f"integer class indices.")
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f"the {name} labels span [{int(y.min())}, {int(y.max())}], outside "
                     f"[0, {num_classes}); pass class indices below num_classes or raise "
                     f"num_classes.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"the {name} features contain NaN or infinite values; fix the "
                     f"embeddings before probing them.")
  return x, y.astype(np.int32)


def _check_grid(l2_grid) -> np.ndarray:
  """The distinct penalties of the grid, largest first."""
  try:
    grid = np.asarray(l2_grid, np.float64).reshape(-1)
  except (TypeError, ValueError):
    grid = np.array([np.nan])
  if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
    raise ValueError(f"l2_grid must hold at least one positive finite penalty, got "
                     f"{l2_grid!r}; pass e.g. DEFAULT_L2_GRID.")
  return np.unique(grid)[::-1]


def _is_positive_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_num_classes(num_classes) -> int:
  if not _is_positive_int(num_classes):
    raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}; pass the "
                     f"number of classes the labels index into.")
  return int(num_classes)


def _check_steps(steps) -> int:
  if not _is_positive_int(steps):
    raise ValueError(f"steps must be a positive integer, got {steps!r}; pass the maximum "
                     f"number of L-BFGS iterations per penalty.")
  return int(steps)


def standardiser(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and scale such that (x - mean) / scale standardises the training features."""
  x = np.asarray(train_x, np.float64)
  mean = x.mean(axis=0)
  std = x.std(axis=0)
  scale = np.where(std > 1e-6 * max(float(std.max(initial=0.0)), 1e-30), std, 1.0)
  return mean.astype(np.float32), scale.astype(np.float32)


def _objective(params, x, labels, l2, present):
  w, b = params
  logits = jnp.dot(x, w, precision=jax.lax.Precision.HIGHEST) + b
  logits = jnp.where(present, logits, -jnp.inf)
  true_logit = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  nll = jnp.mean(jax.nn.logsumexp(logits, axis=1) - true_logit)
  return nll + 0.5 * l2 * jnp.sum(w * w)


def _minimise(params, x, labels, l2, present, steps):
  """L-BFGS on the objective from `params`.

  Returns the iterate with the smallest gradient seen and the number of iterations run.
  """
  fun = functools.partial(_objective, x=x, labels=labels, l2=l2, present=present)
  solver = optax.lbfgs(
      memory_size=MEMORY_SIZE,
      linesearch=optax.scale_by_zoom_linesearch(
          max_linesearch_steps=MAX_LINESEARCH_STEPS, initial_guess_strategy="one"))
  value_and_grad = optax.value_and_grad_from_state(fun)

  def keep_going(carry):
    _, state, _, best, stalled = carry
    count = optax.tree.get(state, "count")
    return (count == 0) | ((count < steps) & (best > GRAD_TOL) & (stalled < PATIENCE))

  def step(carry):
    params, state, best_params, best, stalled = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    params = optax.apply_updates(params, updates)
    # The line search leaves the gradient at the new iterate in the state.
    largest = optax.tree.max(jax.tree.map(jnp.abs, optax.tree.get(state, "grad")))
    stalled = jnp.where(largest < IMPROVEMENT * best, 0, stalled + 1)
    better = largest < best
    best_params = jax.tree.map(lambda new, old: jnp.where(better, new, old), params, best_params)
    return params, state, best_params, jnp.minimum(largest, best), stalled

  carry = (params, solver.init(params), params, jnp.asarray(jnp.inf, jnp.float32),
           jnp.asarray(0, jnp.int32))
  _, state, best_params, _, _ = jax.lax.while_loop(keep_going, step, carry)
  return best_params, optax.tree.get(state, "count")


@functools.partial(jax.jit, static_argnames="num_classes")
def _fit_path(x, labels, l2s, steps, num_classes: int):
  """Fits every penalty of `l2s` in order, each from the previous solution."""
  counts = jnp.zeros((num_classes,), jnp.float32).at[labels].add(1.0)
  present = counts > 0
  # The optimum for W = 0: log class frequencies.
  bias = jnp.where(present, jnp.log(jnp.maximum(counts, 1.0) / labels.shape[0]), 0.0)
  init = (jnp.zeros((x.shape[1], num_classes), jnp.float32), bias)

  def one(params, l2):
    params, iterations = _minimise(params, x, labels, l2, present, steps)
    return params, (params, iterations)

  _, ((w, b), iterations) = jax.lax.scan(one, init, l2s)
  return (w, jnp.where(present, b, -jnp.inf)), iterations


def fit(x, labels, num_classes: int, l2: float, steps: int = DEFAULT_STEPS):
  """Minimises the module's objective for one penalty on features used as given.

  Returns float32 weights [D, C] and bias [C]; logits are x @ w + b. Classes absent from
  `labels` get a zero weight column and a bias of -inf.
  """
  num_classes = _check_num_classes(num_classes)
  x, labels = _check_split("train", (x, labels), None, num_classes)
  if not (isinstance(l2, (int, float, np.number)) and np.isfinite(l2) and l2 > 0):
    raise ValueError(f"l2 must be a positive finite penalty, got {l2!r}; pass e.g. 1e-3.")
  steps = _check_steps(steps)
  (w, b), _ = _fit_path(x, labels, jnp.asarray([l2], jnp.float32), jnp.asarray(steps, jnp.int32),
                        num_classes=num_classes)
  return np.asarray(w[0]), np.asarray(b[0])


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
  return 100.0 * float(np.mean(expected_hits(logits, labels, 1)))


def linear_probe(train, val, test, num_classes: int, l2_grid=DEFAULT_L2_GRID,
                 steps: int = DEFAULT_STEPS) -> dict:
  """Sweeps the penalty on `val`, reports the chosen probe's test accuracy.

  Each split is a (features [N, D], integer labels [N]) pair of host arrays. Returns
  {"top1", "top5", "mean_per_class_recall": test metrics in percent (`classification`),
   "val_top1": validation accuracy in percent, "l2": the chosen penalty}.
  """
  num_classes = _check_num_classes(num_classes)
  train_x, train_y = _check_split("train", train, None, num_classes)
  val_x, val_y = _check_split("val", val, train_x.shape[1], num_classes)
  test_x, test_y = _check_split("test", test, train_x.shape[1], num_classes)
  grid = _check_grid(l2_grid)
  steps = _check_steps(steps)

  mean, scale = standardiser(train_x)
  (w, b), _ = _fit_path((train_x - mean) / scale, train_y, jnp.asarray(grid, jnp.float32),
                        jnp.asarray(steps, jnp.int32), num_classes=num_classes)
  w, b = np.asarray(w), np.asarray(b)

  val_x = (val_x - mean) / scale
  val_acc = np.array([_top1(val_x @ w[g] + b[g], val_y) for g in range(len(grid))])
  best = int(np.argmax(val_acc))  # the grid runs largest first: ties go to the larger penalty
  test_logits = ((test_x - mean) / scale) @ w[best] + b[best]
  return {**classification_metrics(test_logits, test_y), "val_top1": float(val_acc[best]),
          "l2": float(grid[best])}
