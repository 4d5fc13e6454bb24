"""The untrained towers: a config's model evaluated at initialisation, as a baseline row.

    python -m lang_image.untrained --config=configs/clip.py:seed=1,data=scenes --workdir=W

Builds the config's Trainer, initialises its state from config.seed as training starts
(`train.run` before its first step; config.init's released weights, if named, are loaded as
there), and runs the evaluation a training run ends with: the same eval set
(config.eval.dataset, 'auto' following the data), the same tasks and Evaluator, so every
number (zero-shot per label set, retrieval, linear probe, k-NN) is comparable with a trained
run's. Writes W/eval/step_00000000.json in the format of training's evaluations. Nothing is
trained and no checkpoint is written; the result depends on the seed (`lang_image.compare`
runs one per seed).
"""

from __future__ import annotations

import functools
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from lang_image import config as config_lib, distributed, evaluate, evaluators  # noqa: E402
from lang_image import parallel  # noqa: E402
from lang_image.data import pipeline  # noqa: E402
from lang_image.errors import ConfigError  # noqa: E402
from lang_image.interop import pretrained  # noqa: E402
from lang_image.trainer import Trainer  # noqa: E402

STEP = 0


def initial(config, dataset=None) -> evaluate.Restored:
  """The config's model as training initialises it, at step 0."""
  dataset = dataset or pipeline.open_for(config)
  trainer = Trainer(config, parallel.make_mesh(config.mesh), dataset.tokenizer.vocab_size)
  state = trainer.init_state(config.seed)
  if config.init:
    state = pretrained.init_state(state, config.init)
  return evaluate.Restored(config, trainer, state, dataset, STEP)


def evaluate_initial(config, workdir: str) -> dict:
  """Evaluates the initial state on the run's own eval set; writes and returns the metrics."""
  name = evaluate.run_eval_set(config)
  tasks = [task for task in evaluators.TASKS if config.eval[task]]
  dataset = pipeline.open_for(config)
  # The eval set is opened (and bad input refused) before anything compiles.
  eval_set = evaluate.open_eval_set(config, dataset, name, tasks)
  restored = initial(config, dataset)
  evaluator = evaluate.evaluator_for(restored, name, tasks, eval_set=eval_set)
  metrics = evaluate.run_evaluator(restored, evaluator)
  if jax.process_index() == 0:
    path = evaluators.write_json(workdir, STEP, metrics, examples=len(eval_set.test.images))
    logging.warning("Untrained towers on %s (seed %d): %s -> %s", name, config.seed,
                    ", ".join(f"{k}={v:.2f}" for k, v in sorted(metrics.items())
                              if k.endswith("top1") or k.endswith("_r1")), path)
  return metrics


def define_flags() -> types.SimpleNamespace:
  return types.SimpleNamespace(
      config=config_flags.DEFINE_config_file(
          "config", None, "The training config whose initial model is evaluated.",
          lock_config=True),
      workdir=flags.DEFINE_string("workdir", None, "Where W/eval/step_00000000.json goes."))


def main(argv, args):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    distributed.initialize()
    config_lib.validate(args.config.value, None)
    evaluate_initial(args.config.value, args.workdir.value)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  cli = define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  logging.set_verbosity(logging.WARNING)
  app.run(functools.partial(main, args=cli))
