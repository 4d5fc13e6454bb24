"""The training loop: one loop for every objective (the model and step: trainer.py).

    mesh -> data -> model + objective terms -> restore or init -> for each step:
    global batch -> train_step (jit, donated state) -> metrics -> eval / checkpoint

Nothing here is objective-specific: the terms listed in `config.objectives` are data.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
from absl import logging
from clu import periodic_actions

from lang_image import checkpoint, evaluators, parallel
from lang_image import finished, pictures, progress, saved_config, stopping, storage, writers
from lang_image.errors import ConfigError, TrainingError
from lang_image.data import pipeline, stream as stream_lib
from lang_image.evaluators import choice, eval_sets, periodic
from lang_image.interop import pretrained
from lang_image.trainer import Trainer


# Training means of every log interval, one JSON object per line (besides TensorBoard).
TRAIN_METRICS = "train_metrics.jsonl"


def run(config, workdir: str) -> dict:
  """Trains (resuming if the workdir holds a checkpoint), evaluates; returns final metrics.

  SIGTERM or SIGINT (preemption, Ctrl-C) during the run stops it after the current step with
  a checkpoint of that step; it then returns {} (no final evaluation). A second signal goes
  to the handler in place before the run.
  """
  with stopping.StopSignals() as stop, progress.watch(silent=jax.process_index() > 0):
    return _run(config, workdir, stop)


def _run(config, workdir: str, stop: stopping.StopSignals) -> dict:
  eval_name, reason = choice.choose(config)
  done = finished.completed(config, workdir, evaluates=bool(eval_name))
  if done is not None:
    return done
  mesh = parallel.make_mesh(config.mesh)
  with progress.phase(f"Opening the data ({config.data.name})"):
    dataset = pipeline.open_for(config)
  with progress.phase("Building the model"):
    trainer = Trainer(config, mesh, dataset.tokenizer.vocab_size)
  ckpt = checkpoint.Checkpointer(workdir, config.checkpoint_every, config.keep_checkpoints)
  ckpt.prepare_to_save(trainer.abstract_state)
  with progress.phase("Restoring the newest checkpoint, if any"):
    restored = ckpt.restore(trainer.abstract_state)
  if restored is None:
    with progress.phase("Initialising the parameters"):
      state, data_state = trainer.init_state(config.seed), None
    if config.init:  # Released tower weights (lang_image/interop/pretrained.py).
      state = pretrained.init_state(state, config.init)
    logging.info("No checkpoint in %s: starting from scratch.", ckpt.directory)
  else:
    state, data_state = restored
  start = int(state["step"])
  stream = stream_lib.TrainStream(dataset, config.data, config.batch_size,
                                  trainer.batch_sharding, config.seed, state=data_state)
  logging.info(choice.announce(eval_name, reason))
  evaluator = cheap = None
  if eval_name:
    with progress.phase(f"Loading the eval set {eval_name}"):
      evaluator = evaluators.Evaluator(dataset, config.eval, trainer.batch_sharding,
                                       eval_set=_eval_set(config, dataset, eval_name))
      if config.eval_every:
        cheap = periodic.make(evaluators.Evaluator, dataset, config.eval,
                              trainer.batch_sharding, evaluator.eval_set)
  writer = writers.create(workdir, config, primary=jax.process_index() == 0)
  writer.write_hparams(_flat_hparams(config))
  for note in progress.loss_notes(config.objectives):
    logging.info(note)
  report = progress.Progress(start, config.total_steps, config.batch_size, config.log_every)
  hooks = []
  if config.profile_steps and jax.process_index() == 0:
    hooks.append(periodic_actions.Profile(logdir=workdir, num_profile_steps=config.profile_steps,
                                          first_profile=start + 10))

  def evaluate(step, final=True):
    if evaluator is None:
      return {}
    t0 = time.time()
    which = evaluator if final or cheap is None else cheap
    size = len(which.eval_set.test.images)
    with progress.phase(f"Evaluating step {step} on {size} examples of {eval_name}",
                        quiet_end=True):
      metrics = which(*trainer.bind_embedders(state))
    writer.write_scalars(step, {f"eval/{k}": v for k, v in metrics.items()})
    if jax.process_index() == 0:
      evaluators.write_json(workdir, step, metrics, examples=size)
    logging.info("Eval at step %d (%.1f s, %d examples): %s (%%; all metrics in W/eval/)", step,
                 time.time() - t0, size, progress.eval_summary(metrics))
    return metrics

  total = config.total_steps
  guard = stopping.NonfiniteGuard(config.max_nonfinite_steps, ckpt.nonfinite_streak,
                                  ckpt.resume_hint)
  summed, count = None, 0
  # The newest step's `nonfinite` flag, still on the device. It is read one step late: by
  # then the next step is already queued behind it, so the read never leaves the device
  # idle. Before anything that keeps or shows the state (log, checkpoint, eval, the end) it is
  # read at once, so that a run stopped for non-finite steps never saves them.
  pending = None
  try:
    with jax.set_mesh(mesh):
      for step in range(start + 1, total + 1):
        if step == start + 1:
          with progress.phase("Compiling the training step (and running step 1)"):
            state, metrics = trainer.train_step(state, next(stream))
            jax.block_until_ready(metrics)
        else:
          state, metrics = trainer.train_step(state, next(stream))
        report(step, metrics)
        if pending is not None:
          guard.observe(*pending)
        pending = (step, metrics["nonfinite"])
        summed = metrics if summed is None else jax.tree.map(jnp.add, summed, metrics)
        count += 1
        for hook in hooks:
          hook(step)
        log_now = step % config.log_every == 0 or step == total
        eval_now = bool(config.eval_every) and step % config.eval_every == 0 and step < total
        if log_now or eval_now or ckpt.due(step) or step == total:
          guard.observe(*pending)
          pending = None
        if log_now:
          means = _interval_means(jax.device_get(summed), count)
          # Samples skipped since the run began, per reason, over all processes.
          skipped = {f"data/skipped/{k}": v
                     for k, v in stream_lib.skipped_totals(stream).items()}
          writer.write_scalars(step, {**{f"train/{k}": v for k, v in means.items()}, **skipped})
          report.interval(step, means, {k.rpartition("/")[2]: v for k, v in skipped.items()})
          means.update(skipped)
          if jax.process_index() == 0:
            storage.append_text(storage.join(workdir, TRAIN_METRICS),
                                json.dumps({"step": step, **means}, sort_keys=True) + "\n")
          summed, count = None, 0
        if step < total:
          ckpt.maybe_save(step, state, lambda: stream_lib.gather_state(stream),
                          nonfinite_streak=guard.consecutive)
        if eval_now:
          evaluate(step, final=False)
        if stop.agreed():
          if pending is not None:
            guard.observe(*pending)
          ckpt.maybe_save(step, state, lambda: stream_lib.gather_state(stream), force=True,
                          nonfinite_streak=guard.consecutive)
          ckpt.wait()
          ckpt.close()
          writer.flush()
          logging.info("Preempted at step %d: checkpoint saved in %s.", step, ckpt.directory)
          return {}
      eval_metrics = evaluate(total)
      ckpt.maybe_save(total, state, lambda: stream_lib.gather_state(stream), force=True,
                      nonfinite_streak=guard.consecutive)
  except TrainingError:
    # Earlier (good) checkpoints finish writing; the bad state is not saved.
    ckpt.wait(quiet=True)
    ckpt.close()
    writer.flush()
    raise
  ckpt.wait()
  ckpt.close()
  if jax.process_index() == 0:
    saved_config.save(workdir, saved_config.resolved(
        config, data_dir=pipeline.data_dir(config.data), eval_dataset=eval_name or "none"))
    if config.eval.pictures and evaluator is not None:
      with progress.phase("Drawing the pictures") as note:
        paths = pictures.write_run(workdir, total, evaluator, writer, read_train_metrics(workdir))
        note["note"] = f" ({storage.join(workdir, 'pictures')}: {len(paths)} PNGs)"
  writer.flush()
  return eval_metrics


def _interval_means(summed: dict, count: int) -> dict:
  """Means of a log interval's summed step metrics over its finite steps (a skipped step
  contributes zeros), and `nonfinite_steps`, the number of skipped steps. An interval with no
  finite step has only the count."""
  skipped = int(round(float(summed.pop("nonfinite"))))
  means = {}
  if count > skipped:
    means = {k: float(v) / (count - skipped) for k, v in summed.items()}
  means["nonfinite_steps"] = skipped
  return means


def _eval_set(config, dataset, name):
  """The eval set `name` (config.eval.dataset, resolved by `choice`)."""
  context = eval_sets.LoadContext(
      dataset, config.eval, int(config.model.image_size),
      probes=bool(config.eval.linear_probe or config.eval.knn))
  try:
    return eval_sets.open_eval_set(name, context)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def read_train_metrics(workdir: str) -> list[dict]:
  """The logged training means, one dict per log step; after a resume the re-run steps
  appear again and the last record of a step wins."""
  by_step = {}
  path = storage.join(workdir, TRAIN_METRICS)
  if storage.exists(path):
    for line in storage.read_text(path).splitlines():
      if line.strip():
        record = json.loads(line)
        by_step[record["step"]] = record
  return [by_step[k] for k in sorted(by_step)]


def _flat_hparams(config) -> dict:
  flat = {}

  def walk(prefix, node):
    for key, value in node.items():
      name = f"{prefix}{key}"
      if hasattr(value, "items"):
        walk(name + ".", value)
      elif isinstance(value, (int, float, str, bool)):
        flat[name] = value
  walk("", config)
  return flat
