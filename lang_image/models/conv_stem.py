"""Convolutional stem for a ViT (Xiao et al., "Early Convolutions Help Transformers See
Better", NeurIPS 2021).

Replaces the single patchify projection with log2(patch) 3x3 stride-2 convolutions, each
followed by LayerNorm over channels and GELU, then a 1x1 projection to the model width. The
token grid is the same as with patches, so the transformer is unchanged; the paper reports
faster, steadier optimisation and better sample efficiency, which is what a small model on
small data needs. LayerNorm rather than the paper's BatchNorm keeps the stem stateless.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.models import layers, norms


class ConvStem(nnx.Module):
  """[B, H, W, 3] -> [B, H/patch * W/patch, width]."""

  def __init__(self, patch: int, width: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    n = int(round(math.log2(patch)))
    if 2 ** n != patch or n < 1:
      raise ValueError(f"a conv stem needs a power-of-two patch size, got {patch}; use "
                       "image_stem='patch' for this variant.")
    channels = [max(width // 2 ** (n - 1 - i), 8) for i in range(n)]
    self.dtype = dtype
    self.convs = nnx.List([
        nnx.Conv(c_in, c_out, kernel_size=(3, 3), strides=(2, 2), padding="SAME",
                 use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for c_in, c_out in zip([3] + channels[:-1], channels)])
    self.norms = nnx.List([norms.layer_norm(c, rngs, param_dtype) for c in channels])
    self.proj = layers.dense(channels[-1], width, dtype, param_dtype, rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    x = images.astype(self.dtype)
    for conv, norm in zip(self.convs, self.norms):
      x = layers.exact_gelu(norms.apply_norm(norm, conv(x), self.dtype))
    b, h, w, c = x.shape
    return layers.apply_2d(self.proj, x.reshape(b, h * w, c))
