"""Evaluates a trained checkpoint without training.

    python -m lang_image.evaluate --workdir=W [--config=configs/xclip.py[:args]] [--step=N] \
        [--tasks=zero_shot,retrieval,linear_probe,knn,prototype_usage] \
        [--datasets=shapes,cifar10] \
        [--tfds_data_dir=DIR] [--out=DIR]

The model is rebuilt from --config (with any --config.x=y overrides) or, without it, from the
W/config.json that training wrote, and its checkpoint at --step (default: the newest) is
restored as training would resume it. Each dataset (`evaluators.eval_sets`: 'shapes', the
embedded data; 'scenes', the multi-object benchmark; 'cifar10', 'cifar100', 'imagenet2012', 'coco_captions' when prepared with
tfds) gets the requested tasks, the same code as the evaluation during training, so the
numbers for the checkpoint of a training run's last step equal the ones it logged in
W/eval/step_N.json. Writes
  OUT/step_<N>/<dataset>_<task>.json   CLIP_benchmark's schema (`evaluators.benchmark_json`;
                                       the heads' `prototype_usage` in this package's names);
                                       OUT defaults to W/benchmark
  W/pictures/...                       PNGs (`pictures`), also as TensorBoard images in W
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from lang_image import checkpoint, config as config_lib, distributed, evaluators  # noqa: E402
from lang_image.errors import ConfigError  # noqa: E402
from lang_image import parallel, pictures, saved_config, storage, train  # noqa: E402
from lang_image.data import pipeline  # noqa: E402
from lang_image.evaluators import benchmark_json, choice, eval_sets, zero_shot  # noqa: E402
from lang_image.trainer import Trainer  # noqa: E402

@dataclasses.dataclass
class Restored:
  """A model restored from a checkpoint, with what it needs to embed images and texts."""
  config: object
  trainer: Trainer
  state: dict
  dataset: pipeline.Dataset
  step: int

  def embedders(self):
    """(embed_images, embed_texts, image_features, head_distributions): jitted functions of
    global arrays (`Trainer.bind_embedders`)."""
    return self.trainer.bind_embedders(self.state)

  def _embed(self, fn, data) -> np.ndarray:
    n_dev = self.trainer.mesh.size
    batch = -(-int(self.config.eval.batch_size) // n_dev) * n_dev
    with jax.set_mesh(self.trainer.mesh):
      return evaluators.embed_all(fn, data, batch, self.trainer.batch_sharding)

  def embed_images(self, images) -> np.ndarray:
    """uint8 [N, H, W, 3] images -> [N, D] unit embeddings in the evaluation space."""
    return self._embed(self.embedders()[0], np.asarray(images, np.uint8))

  def embed_texts(self, texts) -> np.ndarray:
    """N strings -> [N, D] unit embeddings in the evaluation space."""
    return self._embed(self.embedders()[1], self.dataset.tokenize(list(texts)))

  def zero_shot_scores(self, images, class_names, templates=None) -> np.ndarray:
    """[N, C] cosine similarities of images with prompt-ensembled class embeddings; the
    templates default to the training data's."""
    templates = list(templates or self.dataset.templates)
    prompts = zero_shot.prompts(class_names, templates)
    classes = zero_shot.class_embeddings(self.embed_texts(prompts), len(class_names))
    return self.embed_images(images) @ classes.T


def checkpoint_steps(workdir: str) -> list[int]:
  directory = storage.join(workdir, "checkpoints")
  return sorted(int(name) for name in storage.listdir(directory) if name.isdigit())


def resolve_step(workdir: str, step: int | None = None) -> int:
  """`step`, or the newest checkpoint's step; ConfigError if there is no such checkpoint."""
  steps = checkpoint_steps(workdir)
  if not steps:
    raise ConfigError(f"no checkpoint in '{workdir}/checkpoints'; train there first "
                                 f"or pass the workdir of a training run.")
  if step is None:
    return steps[-1]
  if step not in steps:
    raise ConfigError(f"no checkpoint for step {step} in '{workdir}/checkpoints'; "
                                 f"the saved steps are {steps}.")
  return step


def restore(config, workdir: str, step: int | None = None, dataset=None) -> Restored:
  """Builds the trainer for `config` and restores the checkpoint at `step` (newest: None).
  `dataset`: the config's data, if already open."""
  step = resolve_step(workdir, step)
  mesh = parallel.make_mesh(config.mesh)
  dataset = dataset or pipeline.open_for(config)
  trainer = Trainer(config, mesh, dataset.tokenizer.vocab_size)
  ckpt = checkpoint.Checkpointer(workdir, 0, config.keep_checkpoints)
  try:
    state, _ = ckpt.restore(trainer.abstract_state, step)
  finally:
    ckpt.close()
  return Restored(config, trainer, state, dataset, step)


def check_tasks(tasks) -> None:
  unknown = [t for t in tasks if t not in evaluators.TASKS]
  if unknown:
    raise ConfigError(f"unknown task '{unknown[0]}'; the tasks are "
                                 f"{list(evaluators.TASKS)}.")
  if not tasks:
    raise ConfigError(f"no task given; pass --tasks with some of "
                                 f"{list(evaluators.TASKS)}.")


def eval_config(config, tasks):
  """config.eval with exactly `tasks` switched on."""
  check_tasks(tasks)
  eval_cfg = config.eval.copy_and_resolve_references()
  with eval_cfg.unlocked():  # the config of a run from before a task existed lacks its key
    for task in evaluators.TASKS:
      eval_cfg[task] = task in tasks
  return eval_cfg


def open_eval_set(config, dataset, name: str, tasks, tfds_data_dir=None) -> eval_sets.EvalSet:
  """The eval set `name` for a model of `config` (ConfigError if unknown or not prepared)."""
  context = eval_sets.LoadContext(
      dataset, eval_config(config, tasks), int(config.model.image_size), tfds_data_dir,
      probes="linear_probe" in tasks or "knn" in tasks)
  try:
    return eval_sets.open_eval_set(name, context)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def evaluator_for(restored: Restored, dataset_name: str = "shapes", tasks=evaluators.TASKS,
                  tfds_data_dir: str | None = None,
                  eval_set: eval_sets.EvalSet | None = None) -> evaluators.Evaluator:
  """An Evaluator of `tasks` on one eval dataset, configured as the run's config.eval."""
  eval_set = eval_set or open_eval_set(restored.config, restored.dataset, dataset_name, tasks,
                                       tfds_data_dir)
  return evaluators.Evaluator(restored.dataset, eval_config(restored.config, tasks),
                              restored.trainer.batch_sharding, eval_set=eval_set)


def run_evaluator(restored: Restored, evaluator: evaluators.Evaluator) -> dict:
  with jax.set_mesh(restored.trainer.mesh):
    return evaluator(*restored.embedders())


def model_name(config) -> str:
  return f"{'+'.join(config.objectives.keys())} {config.model.image}"


def evaluate(config, workdir: str, step=None, tasks=evaluators.TASKS, datasets=("shapes",),
             tfds_data_dir=None, out=None, write_pictures=True) -> dict:
  """Evaluates one checkpoint on every dataset; writes JSON and pictures (module docstring).

  Returns {dataset name: metrics in this package's names and units}.
  """
  # Checkpoint and datasets are checked before anything compiles, so bad input fails fast.
  step = resolve_step(workdir, step)
  dataset = pipeline.open_for(config)
  sets = [open_eval_set(config, dataset, name, tasks, tfds_data_dir) for name in datasets]
  restored = restore(config, workdir, step, dataset)
  out = storage.join(out or storage.join(workdir, "benchmark"), f"step_{restored.step:08d}")
  pretrained = storage.join(workdir, "checkpoints", str(restored.step))
  writer = None
  if write_pictures and jax.process_index() == 0:
    from clu import metric_writers  # noqa: PLC0415
    writer = metric_writers.create_default_writer(workdir, just_logging=False)
  results = {}
  for name, eval_set in zip(datasets, sets):
    evaluator = evaluator_for(restored, name, tasks, eval_set=eval_set)
    metrics = run_evaluator(restored, evaluator)
    results[name] = metrics
    if jax.process_index() > 0:
      continue
    for record in benchmark_json.records(metrics, evaluator.eval_set.name, model_name(config),
                                         pretrained, restored.step):
      path = benchmark_json.write(out, record)
      print(f"{record['dataset']} {record['task']}: " + ", ".join(
          f"{k}={v}" if isinstance(v, int) else f"{k}={v:.4f}"  # counts stay integers
          for k, v in sorted(record["metrics"].items())) + f" -> {path}")
    if writer is not None:
      pictures.write_run(workdir, restored.step, evaluator, writer,
                         train.read_train_metrics(workdir))
  if writer is not None:
    writer.flush()
  return results


def run_eval_set(config) -> str:
  """The eval set the training run evaluated on (config.eval.dataset, 'auto' resolved)."""
  name, reason = choice.choose(config)
  if not name:
    raise ConfigError(f"this run has no eval set ({reason}); pass --datasets=NAME.")
  return name


def define_flags() -> types.SimpleNamespace:
  """The command line's flags; defined only when run as a program, so that the module also
  imports next to other absl programs (e.g. lang_image.compare)."""
  return types.SimpleNamespace(
      config=config_flags.DEFINE_config_file(
          "config", None, "The training config (default: W/config.json).", lock_config=True),
      workdir=flags.DEFINE_string("workdir", None, "The training run's workdir."),
      step=flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest)."),
      tasks=flags.DEFINE_list("tasks", list(evaluators.TASKS), "Tasks to run."),
      datasets=flags.DEFINE_list("datasets", None, "Eval datasets, e.g. shapes,cifar10 "
                                 "(default: the run's own, config.eval.dataset)."),
      tfds_data_dir=flags.DEFINE_string(
          "tfds_data_dir", None, "Where tfds eval datasets are prepared (default: tfds')."),
      out=flags.DEFINE_string("out", None, "Directory of the JSON results (default: "
                              "W/benchmark)."),
      pictures=flags.DEFINE_bool("pictures", True, "Write PNGs and TensorBoard images."))


def main(argv, args):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = args.workdir.value
  try:
    distributed.initialize()
    config = args.config.value if args.config.value is not None else saved_config.load(workdir)
    config_lib.validate(config, None)
    datasets = args.datasets.value or [run_eval_set(config)]
    evaluate(config, workdir, args.step.value, args.tasks.value, datasets,
             args.tfds_data_dir.value, args.out.value, args.pictures.value)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  cli = define_flags()
  flags.mark_flag_as_required("workdir")
  # The results are printed; library INFO chatter (orbax, tfds) would bury them.
  logging.set_verbosity(logging.WARNING)
  app.run(functools.partial(main, args=cli))
