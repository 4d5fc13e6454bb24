"""The Trainer: a config's model, objective terms, optimizer and jitted steps on a mesh.

The loop (train.py), evaluation, export and the benchmarks all build their model and step
through it, so what they measure is what training runs:

    batch -> Pretrainer (towers + the terms' heads) -> objectives.mesh_total_loss over the
    mesh -> gradients (optionally accumulated, GradCache) -> optimizer update -> post_update

Nothing here is objective-specific: the terms listed in `config.objectives` are data.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from lang_image import objectives, optim, parallel
from lang_image.models.pretrainer import Pretrainer


class Trainer:
  """Builds the model and the jitted step for a config on a mesh."""

  def __init__(self, config, mesh, vocab_size: int):
    self.config = config
    self.mesh = mesh
    self.terms = objectives.build(config.objectives)
    self.loss_impl = config.loss_impl
    self.microbatches = int(config.microbatches)
    self.schedule = optim.schedule(config.optim, config.total_steps)
    self.tx = optim.make_optimizer(config.optim, config.total_steps)
    term = objectives.embedding_term(self.terms)
    embedding = None if term is None else (term.name, term.module.embed)
    self._make_model = lambda key: Pretrainer(
        config.model, vocab_size, functools.partial(objectives.make_heads, self.terms),
        embedding, rngs=nnx.Rngs(key))
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
    # {term name: {modality: jitted fn}}: the heads' per-example distributions
    # (objectives' `head_distributions`) on the towers' pooled features, whatever space the
    # embedders use (xCLIP evaluates in CLIP's).
    self.head_distributions = {
        term.name: {modality: jax.jit(functools.partial(self._head_distributions, term,
                                                        modality))
                    for modality in ("image", "text")}
        for term in objectives.distribution_terms(self.terms)}

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

  def _head_distributions(self, term, modality, params, rest, inputs):
    model = nnx.merge(self.graphdef, params, rest)
    features = getattr(model, f"{modality}_features")(inputs)
    return term.module.head_distributions(model.heads[term.name], modality, features)

  def bind_embedders(self, state):
    """Functions of global arrays with the current parameters, for the evaluators:
    (embed_images, embed_texts, image_features, head_distributions), the last
    {term name: {"image": fn of images, "text": fn of tokens}} ({} without such a term)."""
    bind = lambda fn: functools.partial(fn, state["params"], state["rest"])  # noqa: E731
    heads = {name: {modality: bind(fn) for modality, fn in fns.items()}
             for name, fns in self.head_distributions.items()}
    return (*(bind(fn) for fn in (self.embed_images, self.embed_texts, self.image_features)),
            heads)
