"""The cheap evaluation run every config.eval_every steps during training.

Zero-shot classification and retrieval only (no probes, which fit a classifier, and no
prototype usage, which runs the towers again for the heads), on the first
config.eval.periodic_examples test examples of the run's eval set: enough to draw accuracy
against steps in TensorBoard and training_curves.png at a small cost. The final evaluation
uses the whole test split and every configured task.
"""

from __future__ import annotations

import numpy as np

from lang_image.evaluators import eval_sets


def first_examples(eval_set: eval_sets.EvalSet, n: int) -> eval_sets.EvalSet:
  """The eval set restricted to its first n test examples and their captions, without the
  probes' splits."""
  count = len(eval_set.test.images)
  if n <= 0 or n >= count:
    n = count
  images = eval_sets.first_images(eval_set.test.images, n)
  labels = None if eval_set.test.labels is None else np.asarray(eval_set.test.labels)[:n]
  captions = caption_image = None
  if eval_set.captions is not None:
    keep = np.flatnonzero(np.asarray(eval_set.caption_image) < n)
    captions = [eval_set.captions[i] for i in keep]
    caption_image = np.asarray(eval_set.caption_image)[keep]
  return eval_sets.EvalSet(
      name=eval_set.name, test=eval_sets.Split(images, labels), classes=eval_set.classes,
      templates=eval_set.templates, captions=captions, caption_image=caption_image,
      subsets={k: np.asarray(v)[:n] for k, v in eval_set.subsets.items()})


def cheap_config(eval_cfg):
  """config.eval with only zero-shot and retrieval (as configured) switched on."""
  cfg = eval_cfg.copy_and_resolve_references()
  cfg.linear_probe = False
  cfg.knn = False
  cfg.prototype_usage = False
  return cfg


def make(evaluator_cls, dataset, eval_cfg, sharding, eval_set):
  """The periodic Evaluator for a run whose final evaluation is on `eval_set`."""
  n = int(eval_cfg.get("periodic_examples", 0))
  return evaluator_cls(dataset, cheap_config(eval_cfg), sharding,
                       eval_set=first_examples(eval_set, n))
