"""Objectives as data: the config lists weighted terms; one loop trains any mix of them.

`config.objectives` maps a term name to its options, e.g.
    {"clip": {"weight": 1.0}}                          # CLIP
    {"clip": {"weight": 1.0}, "nclip": {"weight": 1.0}}  # xCLIP

A term module offers:
    DEFAULTS: dict               options besides `weight`, with their default values
    loss(outputs, head, ctx, options) -> (scalar loss, {metric name: scalar})
    make_head(options, dims, rngs) -> nnx.Module | None   (optional; heads and critics that
                                                            belong to the term)
    check_options(options)       (optional) raises ConfigError for a bad option value
    EMBEDDING: "towers" | "head" the space zero-shot and retrieval use: the towers' joint
                                 embedding, or the term's own (`embed(head, modality,
                                 features)`, e.g. CLIP-Lite's critic blocks)
    head_distributions(head, modality, features) -> [N, K]
                                 (optional) each example's distribution over the K outputs
                                 of the term's head for that modality, in evaluation mode;
                                 the evaluation reports its collapse measures
                                 (`evaluators.prototype_usage`, nCLIP's prototypes)
Each term's metrics are logged under '<term name>/'. A head with a `post_update(step,
total_steps)` method is called after every optimizer update (nCLIP's EMA teacher).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.errors import ConfigError
from lang_image.objectives import clip, cliplite, nclip, rankclip, siglip

REGISTRY = {"clip": clip, "siglip": siglip, "nclip": nclip, "rankclip": rankclip,
            "cliplite": cliplite}


@dataclasses.dataclass(frozen=True)
class Context:
  """What a term may need besides the model outputs.

  `axis`: None when the outputs hold the whole global batch; inside `sharded_total_loss`,
  the mesh axes the batch is split over (see `global_batch`).
  """
  step: jax.Array
  total_steps: int
  rng: jax.Array
  axis: Any = None


@dataclasses.dataclass(frozen=True)
class BoundTerm:
  name: str
  weight: float
  module: Any
  options: dict


def option_defaults(name: str) -> dict:
  """A term's options with their defaults (besides `weight`); {} for an unknown name."""
  module = REGISTRY.get(name)
  return dict(module.DEFAULTS) if module else {}


def check_config(objectives_cfg) -> None:
  """Raises ConfigError for unknown terms, unknown options or weights that are not finite."""
  known = sorted(REGISTRY)
  if not objectives_cfg or not len(objectives_cfg):
    raise ConfigError(f"config.objectives is empty; name at least one of {known}.")
  for name, opts in objectives_cfg.items():
    if name not in REGISTRY:
      raise ConfigError(f"unknown objective '{name}'; the known objectives are {known}.")
    opts = dict(opts)
    weight = opts.pop("weight", None)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
      raise ConfigError(f"objective '{name}' needs a finite number as weight, got {weight!r}; "
                        f"set config.objectives.{name}.weight.")
    unknown = sorted(set(opts) - set(REGISTRY[name].DEFAULTS))
    if unknown:
      raise ConfigError(f"objective '{name}' has no option {unknown}; its options are "
                        f"{sorted(REGISTRY[name].DEFAULTS)}.")
    check = getattr(REGISTRY[name], "check_options", None)
    if check:
      check({**REGISTRY[name].DEFAULTS, **opts})


def build(objectives_cfg) -> list[BoundTerm]:
  check_config(objectives_cfg)
  terms = []
  for name, opts in objectives_cfg.items():
    opts = dict(opts)
    weight = float(opts.pop("weight"))
    module = REGISTRY[name]
    terms.append(BoundTerm(name, weight, module, {**module.DEFAULTS, **opts}))
  return terms


def make_heads(terms, dims: dict, rngs) -> dict:
  """The trainable modules owned by terms (nCLIP's prototype heads, CLIP-Lite's critic...)."""
  heads = {}
  for term in terms:
    make = getattr(term.module, "make_head", None)
    head = make(term.options, dims, rngs) if make else None
    if head is not None:
      heads[term.name] = head
  return heads


def embedding_term(terms) -> BoundTerm | None:
  """The term whose own space evaluation uses, or None for the towers' joint space.

  The towers' space wins whenever a term trains it (xCLIP evaluates like CLIP); otherwise the
  first term listed with its own space (CLIP-Lite's critic, nCLIP's prototypes).
  """
  if any(term.module.EMBEDDING == "towers" for term in terms):
    return None
  return terms[0]


def distribution_terms(terms) -> list[BoundTerm]:
  """The terms whose heads give per-example distributions (`head_distributions`)."""
  return [term for term in terms if hasattr(term.module, "head_distributions")]


def total_loss(terms, outputs: dict, heads, ctx: Context):
  """Weighted sum of the terms; metrics hold each term's own under its name."""
  total = jnp.zeros((), jnp.float32)
  metrics = {}
  for term in terms:
    head = heads[term.name] if term.name in heads else None
    loss, term_metrics = term.module.loss(outputs, head, ctx, term.options)
    total = total + term.weight * loss
    metrics[f"{term.name}/loss"] = loss
    metrics.update({f"{term.name}/{k}": v for k, v in term_metrics.items()})
  metrics["loss"] = total
  return total, metrics


# How the loss runs over the mesh (`mesh_total_loss`; config.loss_impl).
LOSS_IMPLS = ("shard_map", "global")


def mesh_total_loss(terms, outputs: dict, heads, ctx: Context, mesh, batch_axes,
                    impl: str = "shard_map"):
  """`total_loss` over a mesh: per device with collectives (`impl="shard_map"`), or the
  plain global computation left to XLA's partitioner (`impl="global"`)."""
  if impl == "shard_map":
    return sharded_total_loss(terms, outputs, heads, ctx, mesh, batch_axes)
  return total_loss(terms, outputs, heads, ctx)


def sharded_total_loss(terms, outputs: dict, heads, ctx: Context, mesh, batch_axes):
  """`total_loss` with each device computing on its own rows of the batch (`jax.shard_map`).

  Per-sample outputs ([B, ...], split over `batch_axes`) enter as local rows; scalars (the
  logit scale) and the heads' state enter replicated. Each term combines devices with the
  collectives of `global_batch`, so loss and metrics leave replicated and equal to the
  global computation. State the heads update (BatchNorm statistics, centres) is written
  back into `heads`.
  """
  graph, state = nnx.split(heads)
  batch_spec = jax.sharding.PartitionSpec(batch_axes)
  replicated = jax.sharding.PartitionSpec()
  output_specs = {k: batch_spec if jnp.ndim(v) else replicated for k, v in outputs.items()}

  def local(outputs, state, step, rng):
    local_heads = nnx.merge(graph, state)
    local_ctx = Context(step=step, total_steps=ctx.total_steps, rng=rng, axis=batch_axes)
    loss, metrics = total_loss(terms, outputs, local_heads, local_ctx)
    return loss, metrics, nnx.state(local_heads)

  loss, metrics, state = jax.shard_map(
      local, mesh=mesh, in_specs=(output_specs, replicated, replicated, replicated),
      out_specs=replicated)(outputs, state, ctx.step, ctx.rng)
  nnx.update(heads, state)
  return loss, metrics
