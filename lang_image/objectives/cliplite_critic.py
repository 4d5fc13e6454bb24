"""CLIP-Lite's critic blocks and prior discriminator, initialised as the released code
(github 4m4n5/CLIP-Lite, `MILinearBlock` / `PriorDiscriminator`) initialises its torch modules.

A block (one per modality):

    block(x) = LayerNorm( Linear2(ReLU(BatchNorm(Linear1(x)))) + Shortcut(x) )

- Linear1 (no bias), Linear2 and the discriminator's layers: torch's default `nn.Linear`
  initialisation, weights and biases uniform in +-1/sqrt(fan_in).
- Shortcut: weights uniform in +-0.01 with the diagonal set to exactly 1 (k < min(in, out));
  its bias has torch's default initialisation. (The released code fails for in > out; here
  the diagonal simply stops at the smaller dimension.)
- BatchNorm: torch semantics (running statistics with momentum 0.1 and the unbiased
  variance, eps 1e-5; `running_batch_norm`). The released critic is called twice per step
  (positive pairs, then negative pairs) and each call updates the running statistics, so the
  loss passes `updates=2` (the two calls see batches with the same statistics).
- LayerNorm: eps 1e-5 (torch's default; flax's would be 1e-6), the variance in two passes
  (mean first, as torch), scale 1 and bias 0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.objectives import global_batch as gb
from lang_image.objectives.running_batch_norm import BatchNorm

LAYER_NORM_EPS = 1e-5
BATCH_NORM_EPS = 1e-5
BATCH_NORM_MOMENTUM = 0.1
SHORTCUT_NOISE = 0.01


def torch_default_uniform(fan_in: int):
  """The initialiser of torch's `nn.Linear` weights and biases: uniform in +-1/sqrt(fan_in)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_linear(in_dim: int, out_dim: int, *, rngs: nnx.Rngs, use_bias: bool = True,
                 kernel_init=None) -> nnx.Linear:
  """An `nnx.Linear` initialised as torch's `nn.Linear(in_dim, out_dim)`."""
  default = torch_default_uniform(in_dim)
  return nnx.Linear(in_dim, out_dim, use_bias=use_bias, kernel_init=kernel_init or default,
                    bias_init=default, rngs=rngs)


def noisy_identity(key, shape, dtype=jnp.float32):
  """Uniform +-0.01 with the diagonal (k < min(in, out)) set to exactly 1."""
  noise = jax.random.uniform(key, shape, dtype, -SHORTCUT_NOISE, SHORTCUT_NOISE)
  diagonal = jnp.arange(min(shape))
  return noise.at[diagonal, diagonal].set(1.0)


class CriticBlock(nnx.Module):

  def __init__(self, in_dim: int, width: int, *, rngs: nnx.Rngs):
    self.linear1 = torch_linear(in_dim, width, use_bias=False, rngs=rngs)
    self.batch_norm = BatchNorm(width, momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPS)
    self.linear2 = torch_linear(width, width, rngs=rngs)
    self.shortcut = torch_linear(in_dim, width, kernel_init=noisy_identity, rngs=rngs)
    # Two-pass variance, as torch computes it (flax's default E[x^2] - E[x]^2 cancels).
    self.norm = nnx.LayerNorm(width, epsilon=LAYER_NORM_EPS, use_fast_variance=False,
                              rngs=rngs)

  def __call__(self, x: jax.Array, train: bool, axis: gb.Axis = None,
               updates: int = 1) -> jax.Array:
    """`updates`: how many forward passes of the released critic this call stands for (its
    BatchNorm running statistics are updated once per pass)."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # float64 stays (reference tests)
    h = self.batch_norm(self.linear1(x), train, axis, updates)
    return self.norm(self.linear2(jax.nn.relu(h)) + self.shortcut(x))


class PriorDiscriminator(nnx.Module):
  """d -> 1000 -> 200 -> 1 with ReLU; returns the logit of D."""

  def __init__(self, in_dim: int, *, rngs: nnx.Rngs):
    self.layers = nnx.List([torch_linear(a, b, rngs=rngs)
                            for a, b in ((in_dim, 1000), (1000, 200), (200, 1))])

  def __call__(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = jax.nn.relu(x)
    return x[..., 0]
