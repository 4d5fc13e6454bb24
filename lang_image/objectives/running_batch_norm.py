"""BatchNorm over the global batch, with running statistics kept for evaluation.

In training, features are standardised with the mean and the biased variance of the global
batch (every device's rows, combined with `global_batch`'s collectives); in evaluation, with
running averages that follow torch's `nn.BatchNorm1d`:

    y = (x - mu) / sqrt(var + eps) * scale + bias
    running_mean <- (1 - momentum) running_mean + momentum * mean
    running_var  <- (1 - momentum) running_var  + momentum * var * n / (n - 1)   (unbiased)

with n the global batch size. `unbiased_running_var=False` keeps the biased variance in the
running average instead (flax's convention). A module that runs its BatchNorm several times
per step on batches with the same statistics (CLIP-Lite's critic sees the positive and the
negative pairs) passes `updates=k`: the running averages then take k successive updates, as
k forward passes of a torch module would.

Statistics are in float32 at least (float64 stays, for reference tests); the running
averages are model state (`nnx.BatchStat`), saved with checkpoints.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.objectives import global_batch as gb


class BatchNorm(nnx.Module):

  def __init__(self, features: int, *, momentum: float = 0.1, epsilon: float = 1e-5,
               affine: bool = True, unbiased_running_var: bool = True):
    self.momentum = momentum
    self.epsilon = epsilon
    self.unbiased_running_var = unbiased_running_var
    self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))
    self.scale = nnx.Param(jnp.ones((features,), jnp.float32)) if affine else None
    self.bias = nnx.Param(jnp.zeros((features,), jnp.float32)) if affine else None

  def __call__(self, x: jax.Array, train: bool, axis: gb.Axis = None,
               updates: int = 1) -> jax.Array:
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if train:
      mean = gb.batch_mean(x, axis)
      var = gb.batch_mean(jnp.square(x - mean), axis)
      self._update_running(jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var),
                           gb.global_size(x, axis), updates)
    else:
      mean, var = self.mean[...].astype(x.dtype), self.var[...].astype(x.dtype)
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    if self.scale is not None:
      y = y * self.scale[...].astype(x.dtype) + self.bias[...].astype(x.dtype)
    return y

  def _update_running(self, mean, var, n: int, updates: int) -> None:
    if self.unbiased_running_var:
      var = var * (n / max(n - 1, 1))
    m = self.momentum
    running_mean, running_var = self.mean[...], self.var[...]
    for _ in range(updates):
      running_mean = ((1 - m) * running_mean + m * mean).astype(self.mean.dtype)
      running_var = ((1 - m) * running_var + m * var).astype(self.var.dtype)
    self.mean[...], self.var[...] = running_mean, running_var
