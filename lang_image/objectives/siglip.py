"""SigLIP: pairwise sigmoid loss (Zhai et al., "Sigmoid Loss for Language Image
Pre-Training", ICCV 2023).

Every image-text pair of the batch is an independent binary decision. With unit embeddings
u_i, v_j, scale s = exp(t) and bias b:

    L = -1/B sum_i sum_j log sigmoid( z_ij (s <u_i, v_j> + b) ),  z_ii = +1, z_ij = -1 (i != j)

t starts at ln 10 and b at -10 (so the many negatives start with a small loss); unlike
CLIP's, this scale is NOT clamped (the paper's code, big_vision). Both are parameters of the
term's head. `clamp_scale=True` clamps t to [0, ln 100] after every update, as open_clip's
trainer does for every model, SigLIP included (docs/objectives.md).

Sharded (`config.loss_impl="shard_map"`): the chunked ring. Each device scores its images
against its own texts (the positives), then passes its current text chunk to the previous
device and scores the chunk it receives, N - 1 times for N devices: only B_local x B_local
logits exist at any time, and each step's logits are recomputed in the backward pass rather
than kept, so no B_local x B buffer is ever formed.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.errors import ConfigError
from lang_image.objectives import global_batch as gb

EMBEDDING = "towers"
DEFAULTS = {"scale_init": math.log(10.0), "bias_init": -10.0, "clamp_scale": False}
OPEN_CLIP_LOG_SCALE_MAX = math.log(100.0)


class SigLipHead(nnx.Module):
  """The learned log-scale t and bias b of the sigmoid loss."""

  def __init__(self, scale_init: float, bias_init: float, clamp_scale: bool = False):
    self.log_scale = nnx.Param(jnp.asarray(scale_init, jnp.float32))
    self.bias = nnx.Param(jnp.asarray(bias_init, jnp.float32))
    self.clamp_scale = clamp_scale

  def post_update(self, step, total_steps: int) -> None:
    del step, total_steps
    if self.clamp_scale:
      self.log_scale[...] = jnp.clip(self.log_scale[...], 0.0, OPEN_CLIP_LOG_SCALE_MAX)


def check_options(options) -> None:
  if not isinstance(options["clamp_scale"], bool):
    raise ConfigError("config.objectives.siglip.clamp_scale must be True or False, "
                      f"got {options['clamp_scale']!r}.")


def make_head(options, dims, rngs):
  del dims, rngs
  return SigLipHead(options["scale_init"], options["bias_init"], options["clamp_scale"])


def siglip_loss(image_emb: jax.Array, text_emb: jax.Array, log_scale: jax.Array,
                bias: jax.Array, axis: gb.Axis = None) -> jax.Array:
  dtype = jnp.promote_types(jnp.result_type(image_emb, text_emb), jnp.float32)
  u, v = image_emb.astype(dtype), text_emb.astype(dtype)
  scale, bias = jnp.exp(log_scale).astype(dtype), bias.astype(dtype)

  def pair_terms(texts, own: bool):
    """sum_ij log sigmoid(z_ij (s <u_i, v_j> + b)) for the local images and `texts`."""
    logits = scale * u @ texts.T + bias
    signs = 2.0 * jnp.eye(logits.shape[0], dtype=dtype) - 1.0 if own else -1.0
    return jnp.sum(jax.nn.log_sigmoid(signs * logits))

  total = pair_terms(v, own=True)
  n = gb.num_shards(axis)
  if n > 1:
    @jax.checkpoint  # keep only the travelling chunk per step, not its logits
    def ring_step(chunk, _):
      chunk = gb.next_rows(chunk, axis, count=chunk.shape[0])
      return chunk, pair_terms(chunk, own=False)

    _, negatives = jax.lax.scan(ring_step, v, None, length=n - 1)
    total = total + jnp.sum(negatives)
  total = total if axis is None else jax.lax.psum(total, axis)
  return -total / gb.global_size(u, axis)


def loss(outputs, head, ctx, options):
  del options
  value = siglip_loss(outputs["image_emb"], outputs["text_emb"], head.log_scale[...],
                      head.bias[...], ctx.axis)
  return value, {"scale": jnp.exp(head.log_scale[...]), "bias": head.bias[...]}
