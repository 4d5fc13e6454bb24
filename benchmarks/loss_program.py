"""The objective alone as one compiled program: loss, metrics and gradients from the towers'
outputs, over a mesh. Used to check the sharded implementation against the global one and to
measure what the loss costs per device at a given global batch (benchmarks/loss_memory.py).

Inputs are what the towers hand the objective: per-sample `image_features`, `text_features`
[B, width] and unit `image_emb`, `text_emb` [B, D], and the scalar `logit_scale`.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from lang_image import objectives, parallel


@dataclasses.dataclass(frozen=True)
class Dims:
  image_width: int = 64
  text_width: int = 48
  embed_dim: int = 32


class LossProgram:
  """`fn(params, rest, outputs, step, rng) -> ((loss, (metrics, rest)), (d params, d outputs))`
  for the heads of `objectives_cfg` on `mesh`, jitted with batch-sharded outputs."""

  def __init__(self, objectives_cfg, mesh, impl: str, dims: Dims = Dims(), seed: int = 0,
               total_steps: int = 100):
    self.terms = objectives.build(objectives_cfg)
    self.mesh, self.impl, self.dims = mesh, impl, dims
    heads = nnx.Dict(objectives.make_heads(self.terms, dataclasses.asdict(dims),
                                           nnx.Rngs(seed)))
    self.graph, self.params, self.rest = nnx.split(heads, nnx.Param, ...)

    def loss(params, rest, outputs, step, rng):
      heads = nnx.merge(self.graph, params, rest, copy=True)
      ctx = objectives.Context(step=step, total_steps=total_steps, rng=rng)
      value, metrics = objectives.mesh_total_loss(self.terms, outputs, heads, ctx, mesh,
                                                  parallel.BATCH_AXES, impl)
      return value, (metrics, nnx.state(heads, nnx.Not(nnx.Param)))

    replicated, outputs = NamedSharding(mesh, P()), self._output_shardings()
    self.fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 2), has_aux=True),
                      in_shardings=(replicated, replicated, outputs, replicated, replicated),
                      out_shardings=((replicated, replicated), (replicated, outputs)))

  def _output_shardings(self):
    batch, replicated = parallel.batch_sharding(self.mesh), NamedSharding(self.mesh, P())
    return {"image_features": batch, "text_features": batch, "image_emb": batch,
            "text_emb": batch, "logit_scale": replicated}

  def abstract_outputs(self, batch: int, dtype=jnp.float32) -> dict:
    d, s = self.dims, self._output_shardings()
    shapes = {"image_features": (batch, d.image_width), "text_features": (batch, d.text_width),
              "image_emb": (batch, d.embed_dim), "text_emb": (batch, d.embed_dim),
              "logit_scale": ()}
    return {k: jax.ShapeDtypeStruct(v, dtype, sharding=s[k]) for k, v in shapes.items()}

  def compile(self, batch: int):
    """Compiles for a global batch without running it (no memory is allocated)."""
    return self.fn.lower(self.params, self.rest, self.abstract_outputs(batch),
                         jax.ShapeDtypeStruct((), jnp.int32),
                         jax.random.key(0)).compile()

  def __call__(self, outputs: dict, step: int = 0, seed: int = 0):
    return self.fn(self.params, self.rest, outputs, jnp.asarray(step, jnp.int32),
                   jax.random.key(seed))


def random_outputs(batch: int, dims: Dims = Dims(), seed: int = 0) -> dict:
  """Tower outputs for tests: features, unit embeddings, log-scale ln(1/0.07)."""
  rng = np.random.default_rng(seed)

  def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)

  return {
      "image_features": rng.normal(size=(batch, dims.image_width)).astype(np.float32),
      "text_features": rng.normal(size=(batch, dims.text_width)).astype(np.float32),
      "image_emb": unit(rng.normal(size=(batch, dims.embed_dim))).astype(np.float32),
      "text_emb": unit(rng.normal(size=(batch, dims.embed_dim))).astype(np.float32),
      "logit_scale": np.float32(np.log(1 / 0.07)),
  }


_SHAPE = re.compile(r"\b(pred|[subf]\d+|bf16)\[(\d+(?:,\d+)*)\]")


def largest_buffer(compiled) -> tuple[int, str]:
  """(elements, 'dtype[dims]') of the largest array in a compiled program's per-device HLO."""
  best = (0, "")
  for dtype, dims in _SHAPE.findall(compiled.as_text()):
    elements = int(np.prod([int(d) for d in dims.split(",")]))
    best = max(best, (elements, f"{dtype}[{dims}]"))
  return best


def memory_bytes(compiled) -> dict:
  """Per-device bytes from XLA's memory analysis of the compiled program."""
  analysis = compiled.memory_analysis()
  return {"temp": int(analysis.temp_size_in_bytes),
          "arguments": int(analysis.argument_size_in_bytes),
          "outputs": int(analysis.output_size_in_bytes)}
