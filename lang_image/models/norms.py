"""LayerNorm for the towers: float32 statistics whatever the compute dtype, with a hand-written
backward pass (`layer_norm_f32`)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

Dtype = Any

# PyTorch's default; using it keeps OpenAI/HF checkpoints numerically faithful.
LN_EPS = 1e-5


def layer_norm(width: int, rngs: nnx.Rngs, param_dtype: Dtype = jnp.float32):
  return nnx.LayerNorm(width, epsilon=LN_EPS, dtype=jnp.float32,
                       param_dtype=param_dtype, rngs=rngs)


def set_norm_epsilon(module: nnx.Module, epsilon: float) -> None:
  """Sets the epsilon of every LayerNorm inside `module` (for weights trained with another
  epsilon than LN_EPS); a static attribute, so set it before splitting or jitting."""
  for _, m in nnx.iter_modules(module):
    if isinstance(m, nnx.LayerNorm):
      m.epsilon = float(epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm_f32(x: jax.Array, scale: jax.Array, bias: jax.Array,
                   epsilon: float) -> jax.Array:
  """LayerNorm over the last axis of a float32 x, with a hand-written backward pass.

  The backward pass keeps x and the per-row mean and 1/std and recomputes the normalised
  x; under autodiff of the plain formula XLA:CPU kept per-row statistics broadcast to x's
  full shape from the forward to the backward pass (benchmarks/RESULTS.md). Checked
  against float64 central differences in tests/models/test_layers.py.
  """
  return _layer_norm_fwd(x, scale, bias, epsilon)[0]


def _layer_norm_fwd(x, scale, bias, epsilon):
  mean = jnp.mean(x, axis=-1, keepdims=True)
  centred = x - mean
  rstd = lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + epsilon)
  return centred * rstd * scale + bias, (x, mean, rstd, scale)


def _layer_norm_bwd(epsilon, residuals, g):
  # y = xhat * scale + bias with xhat = (x - mean) * rstd:
  # dx = rstd * (gs - mean(gs) - xhat * mean(gs * xhat)), gs = g * scale.
  del epsilon
  # The barrier keeps XLA from sharing the forward pass's broadcast of 1/std with this
  # pass, which would keep it alive as a full-size array in between.
  x, mean, rstd, scale = lax.optimization_barrier(residuals)
  xhat = (x - mean) * rstd
  gs = g * scale
  dx = rstd * (gs - jnp.mean(gs, axis=-1, keepdims=True)
               - xhat * jnp.mean(gs * xhat, axis=-1, keepdims=True))
  rows = tuple(range(x.ndim - 1))
  return dx, jnp.sum(g * xhat, axis=rows), jnp.sum(g, axis=rows)


layer_norm_f32.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def apply_norm(ln: nnx.LayerNorm, x: jax.Array, dtype: Dtype) -> jax.Array:
  """`ln` (its parameters and epsilon) applied through layer_norm_f32. Statistics are
  float32 regardless of the compute dtype: a bf16 variance of wide activations is too
  lossy."""
  return layer_norm_f32(x.astype(jnp.float32), ln.scale[...].astype(jnp.float32),
                        ln.bias[...].astype(jnp.float32), float(ln.epsilon)).astype(dtype)
