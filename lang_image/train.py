"""The training loop: one loop for every objective.

    mesh -> data -> model + objective terms -> restore or init -> for each step:
    global batch -> train_step (jit, donated state) -> metrics -> eval / checkpoint

Nothing here is objective-specific: the terms listed in `config.objectives` are data.
"""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp
import optax
from absl import logging
from clu import metric_writers, periodic_actions
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from lang_image import checkpoint, evaluators, objectives, optim, parallel
from lang_image import pictures, run_config, stopping, storage
from lang_image.config import ConfigError, TrainingError
from lang_image.data import pipeline, stream as stream_lib
from lang_image.models.pretrainer import Pretrainer


# Training means of every log interval, one JSON object per line (besides TensorBoard).
TRAIN_METRICS = "train_metrics.jsonl"


class Trainer:
  """Builds the model and the jitted step for a config on a mesh."""

  def __init__(self, config, mesh, vocab_size: int):
    self.config = config
    self.mesh = mesh
    self.terms = objectives.build(config.objectives)
    self.loss_impl = config.get("loss_impl", "shard_map")
    self.microbatches = int(config.get("microbatches", 1))
    self.schedule = optim.schedule(config.optim, config.total_steps)
    self.tx = optim.make_optimizer(config.optim, config.total_steps)
    self._make_model = lambda key: Pretrainer(config.model, vocab_size, self.terms,
                                              rngs=nnx.Rngs(key))
    self.graphdef = nnx.split(nnx.eval_shape(lambda: self._make_model(jax.random.key(0))))[0]
    abstract = jax.eval_shape(self._init, jax.random.key(0))
    self.state_sharding = parallel.state_shardings(mesh, abstract)
    self.batch_sharding = parallel.batch_sharding(mesh)
    self.abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract, self.state_sharding)
    self.train_step = jax.jit(self._train_step, donate_argnums=0,
                              in_shardings=(self.state_sharding, self.batch_sharding),
                              out_shardings=(self.state_sharding, None))
    self.loss_and_grads = jax.jit(self._loss_and_grads,
                                  in_shardings=(self.state_sharding, self.batch_sharding))
    self.embed_images = jax.jit(functools.partial(self._embed, "embed_images"))
    self.embed_texts = jax.jit(functools.partial(self._embed, "embed_texts"))
    self.image_features = jax.jit(functools.partial(self._embed, "image_features"))

  def _init(self, key):
    model_key, rng = jax.random.split(key)
    _, params, rest = nnx.split(self._make_model(model_key), nnx.Param, ...)
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "rest": rest,
        "opt_state": self.tx.init(params),
        "rng": jax.random.key_data(rng),
    }

  def init_state(self, seed: int):
    return jax.jit(self._init, out_shardings=self.state_sharding)(jax.random.key(seed))

  def _merge(self, params, rest):
    # A copy: model state such as BatchNorm statistics is updated inside the trace.
    return nnx.merge(self.graphdef, params, rest, copy=True)

  def _objective_loss(self, model, outputs, ctx):
    """The objective terms on the towers' outputs for the global batch
    -> (loss, (metrics, non-parameter model state afterwards))."""
    loss, metrics = objectives.mesh_total_loss(self.terms, outputs, model.heads, ctx,
                                               self.mesh, parallel.BATCH_AXES, self.loss_impl)
    metrics["logit_scale"] = jnp.exp(outputs["logit_scale"])
    return loss, (metrics, nnx.state(model, nnx.Not(nnx.Param)))

  def _loss_and_grads(self, state, batch):
    """-> (metrics, non-parameter model state after the forward pass, gradients)."""
    step = state["step"]
    ctx = objectives.Context(
        step=step, total_steps=self.config.total_steps,
        rng=jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), step))
    if self.microbatches > 1:
      return self._accumulated_loss_and_grads(state, batch, ctx)

    def loss_fn(params):
      model = self._merge(params, state["rest"])
      return self._objective_loss(model, model(batch["image"], batch["text"]), ctx)

    (_, (metrics, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    return metrics, rest, grads

  def _accumulated_loss_and_grads(self, state, batch, ctx):
    """The gradient of the full-batch loss, with tower activations for one micro-batch at a
    time (GradCache, Gao et al. 2021):

      1. the towers embed each of the k micro-batches, keeping no activations;
      2. the objective runs once on the outputs of the whole batch, so every micro-batch's
         negatives are the full batch: gradients for the heads and the logit scale, and
         dL/d(output) for every sample;
      3. each micro-batch's towers run again and back-propagate their slice of dL/d(output);
         the tower gradients add up over micro-batches.

    Exact up to float summation order; costs one extra tower forward pass per step.
    """
    params, rest = state["params"], state["rest"]

    def per_sample_outputs(params, micro):
      outputs = self._merge(params, rest)(micro["image"], micro["text"])
      return {name: value for name, value in outputs.items() if jnp.ndim(value)}

    micro = jax.tree.map(self._split_micro, batch)
    _, stacked = jax.lax.scan(lambda _, mb: (None, per_sample_outputs(params, mb)), None, micro)
    outputs = jax.tree.map(self._join_micro, jax.lax.stop_gradient(stacked))

    def objective(params, outputs):
      model = self._merge(params, rest)
      return self._objective_loss(model, {**outputs, **model.towers.scalar_outputs()}, ctx)

    (_, (metrics, new_rest)), (grads, output_grads) = jax.value_and_grad(
        objective, argnums=(0, 1), has_aux=True)(params, outputs)

    def backward(total, xs):
      mb, cotangent = xs
      _, pullback = jax.vjp(lambda p: per_sample_outputs(p, mb), params)
      return jax.tree.map(jnp.add, total, pullback(cotangent)[0]), None

    grads, _ = jax.lax.scan(backward, grads,
                            (micro, jax.tree.map(self._split_micro, output_grads)))
    return metrics, new_rest, grads

  def _split_micro(self, x):
    """[B, ...] -> [k, B / k, ...]: micro-batch j takes slice j of every device's rows, so
    each micro-batch stays spread over all devices."""
    n, k = self.mesh.size, self.microbatches
    x = x.reshape(n, k, x.shape[0] // (n * k), *x.shape[1:]).swapaxes(0, 1)
    x = x.reshape(k, -1, *x.shape[3:])
    return jax.lax.with_sharding_constraint(
        x, NamedSharding(self.mesh, P(None, parallel.BATCH_AXES)))

  def _join_micro(self, x):
    """The inverse of `_split_micro`: [k, B / k, ...] -> [B, ...] in the batch's order."""
    n, k = self.mesh.size, self.microbatches
    x = x.reshape(k, n, -1, *x.shape[2:]).swapaxes(0, 1).reshape(-1, *x.shape[2:])
    return jax.lax.with_sharding_constraint(x, self.batch_sharding)

  def _train_step(self, state, batch):
    """One optimizer step -> (new state, metrics).

    A step whose loss, global gradient norm or update norm is not finite is skipped: parameters,
    optimizer state and the other model state come back bitwise as they went in, and the
    metric `nonfinite` is 1 (else 0). The step counter still advances, so the data stream,
    the learning-rate schedule and the step-dependent objective terms move on past the bad
    batch. A skipped step's other metrics are returned as 0, so that interval means over the
    finite steps stay readable (see `run`).
    """
    metrics, rest, grads = self._loss_and_grads(state, batch)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    # The update too: finite gradients can still make one that is not (a learning rate of inf).
    finite = (jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
              & jnp.isfinite(optax.tree.norm(updates)))
    model = nnx.merge(self.graphdef, optax.apply_updates(state["params"], updates), rest)
    model.post_update(state["step"] + 1, self.config.total_steps)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    # A select, not a branch: both sides are computed anyway, and the old values pass
    # through unchanged bit for bit.
    params, rest, opt_state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old),
        (params, rest, opt_state), (state["params"], state["rest"], state["opt_state"]))
    metrics["grad_norm"] = grad_norm
    metrics["learning_rate"] = self.schedule(state["step"])
    metrics = {k: jnp.where(finite, v, jnp.zeros_like(v)) for k, v in metrics.items()}
    metrics["nonfinite"] = 1.0 - finite.astype(jnp.float32)
    new_state = dict(state, step=state["step"] + 1, params=params, rest=rest,
                     opt_state=opt_state)
    return new_state, metrics

  def _embed(self, method, params, rest, inputs):
    return getattr(nnx.merge(self.graphdef, params, rest), method)(inputs)

  def bind_embedders(self, state):
    """Embedding functions of the current parameters, for the evaluators."""
    return tuple(functools.partial(fn, state["params"], state["rest"])
                 for fn in (self.embed_images, self.embed_texts, self.image_features))


def run(config, workdir: str) -> dict:
  """Trains (resuming if the workdir holds a checkpoint), evaluates; returns final metrics.

  SIGTERM or SIGINT (preemption, Ctrl-C) during the run stops it after the current step with
  a checkpoint of that step; it then returns {} (no final evaluation). A second signal goes
  to the handler in place before the run.
  """
  with stopping.StopSignals() as stop:
    return _run(config, workdir, stop)


def _run(config, workdir: str, stop: stopping.StopSignals) -> dict:
  mesh = parallel.make_mesh(config.mesh)
  dataset = pipeline.open_for(config)
  trainer = Trainer(config, mesh, dataset.tokenizer.vocab_size)
  ckpt = checkpoint.Checkpointer(workdir, config.checkpoint_every, config.keep_checkpoints)
  ckpt.check_space(trainer.abstract_state)
  restored = ckpt.restore(trainer.abstract_state)
  if restored is None:
    state, data_state = trainer.init_state(config.seed), None
    if config.get("init"):  # Released tower weights (lang_image/interop/init.py).
      from lang_image.interop import init as interop_init
      state = interop_init.init_state(state, config.init)
    logging.info("No checkpoint in %s: starting from scratch.", ckpt.directory)
  else:
    state, data_state = restored
  start = int(state["step"])
  stream = stream_lib.TrainStream(dataset, config.data, config.batch_size,
                                  trainer.batch_sharding, config.seed, state=data_state)
  evaluator = evaluators.Evaluator(dataset, config.eval, trainer.batch_sharding,
                                  eval_set=_eval_set(config, dataset))
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(_flat_hparams(config))
  hooks = [periodic_actions.ReportProgress(num_train_steps=config.total_steps, writer=writer,
                                           every_steps=config.log_every)]
  if config.profile_steps and jax.process_index() == 0:
    hooks.append(periodic_actions.Profile(logdir=workdir, num_profile_steps=config.profile_steps,
                                          first_profile=start + 10))

  def evaluate(step):
    t0 = time.time()
    metrics = evaluator(*trainer.bind_embedders(state))
    writer.write_scalars(step, {f"eval/{k}": v for k, v in metrics.items()})
    if jax.process_index() == 0:
      evaluators.write_json(workdir, step, metrics)
    logging.info("Eval at step %d (%.1fs): %s", step, time.time() - t0, _fmt(metrics))
    return metrics

  total = config.total_steps
  guard = stopping.NonfiniteGuard(config.get("max_nonfinite_steps", 20))
  summed, count = None, 0
  # The newest step's `nonfinite` flag, still on the device. It is read one step late: by
  # then the next step is already queued behind it, so the read never leaves the device
  # idle. Before anything that keeps or shows the state (log, checkpoint, eval, the end) it is
  # read at once, so that a run stopped for non-finite steps never saves them.
  pending = None
  try:
    with jax.set_mesh(mesh):
      for step in range(start + 1, total + 1):
        state, metrics = trainer.train_step(state, next(stream))
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
          means.update(skipped)
          if jax.process_index() == 0:
            storage.append_text(storage.join(workdir, TRAIN_METRICS),
                                json.dumps({"step": step, **means}, sort_keys=True) + "\n")
          summed, count = None, 0
        if step < total:
          ckpt.maybe_save(step, state, lambda: stream_lib.gather_state(stream))
        if eval_now:
          evaluate(step)
        if stop.agreed():
          if pending is not None:
            guard.observe(*pending)
          ckpt.maybe_save(step, state, lambda: stream_lib.gather_state(stream), force=True)
          ckpt.wait()
          ckpt.close()
          writer.flush()
          logging.info("Preempted at step %d: checkpoint saved in %s.", step, ckpt.directory)
          return {}
      eval_metrics = evaluate(total)
      ckpt.maybe_save(total, state, lambda: stream_lib.gather_state(stream), force=True)
  except TrainingError:
    # Earlier (good) checkpoints finish writing; the bad state is not saved.
    ckpt.wait(quiet=True)
    ckpt.close()
    writer.flush()
    raise
  ckpt.wait()
  ckpt.close()
  if jax.process_index() == 0:
    run_config.save(workdir, config)
    if config.eval.pictures:
      pictures.write_run(workdir, total, evaluator, writer, read_train_metrics(workdir))
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


def _eval_set(config, dataset):
  """config.eval.dataset's eval set; None for the embedded data (the Evaluator's default)."""
  name = config.eval.get("dataset", "shapes")
  if name == "shapes":
    return None
  from lang_image.evaluators import eval_sets
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


def _fmt(metrics: dict) -> str:
  return ", ".join(f"{k}={v:.2f}" for k, v in sorted(metrics.items()))


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
