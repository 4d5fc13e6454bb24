"""SigLIP: pairwise sigmoid loss (Zhai et al., "Sigmoid Loss for Language Image
Pre-Training", ICCV 2023).

Every image-text pair of the batch is an independent binary decision. With unit embeddings
u_i, v_j, scale s = exp(t) and bias b:

    L = -1/B sum_i sum_j log sigmoid( z_ij (s <u_i, v_j> + b) ),  z_ii = +1, z_ij = -1 (i != j)

t starts at ln 10 and b at -10 (so the many negatives start with a small loss); unlike
CLIP's, this scale is NOT clamped. Both are parameters of the term's head.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

EMBEDDING = "towers"
DEFAULTS = {"scale_init": math.log(10.0), "bias_init": -10.0}


class SigLipHead(nnx.Module):
  """The learned log-scale t and bias b of the sigmoid loss."""

  def __init__(self, scale_init: float, bias_init: float):
    self.log_scale = nnx.Param(jnp.asarray(scale_init, jnp.float32))
    self.bias = nnx.Param(jnp.asarray(bias_init, jnp.float32))


def make_head(options, dims, rngs):
  del dims, rngs
  return SigLipHead(options["scale_init"], options["bias_init"])


def siglip_loss(image_emb: jax.Array, text_emb: jax.Array, log_scale: jax.Array,
                bias: jax.Array) -> jax.Array:
  dtype = jnp.promote_types(jnp.result_type(image_emb, text_emb), jnp.float32)
  logits = (jnp.exp(log_scale) * image_emb.astype(dtype) @ text_emb.astype(dtype).T + bias)
  signs = 2.0 * jnp.eye(logits.shape[0], dtype=dtype) - 1.0
  return -jnp.sum(jax.nn.log_sigmoid(signs * logits)) / logits.shape[0]


def loss(outputs, head, ctx, options):
  del ctx, options
  value = siglip_loss(outputs["image_emb"], outputs["text_emb"], head.log_scale[...],
                      head.bias[...])
  return value, {"scale": jnp.exp(head.log_scale[...]), "bias": head.bias[...]}
