"""CLIP: symmetric InfoNCE (Radford et al., "Learning Transferable Visual Models From
Natural Language Supervision", ICML 2021).

For a batch of B pairs with unit embeddings u_i (image) and v_i (text) and logit scale
s = exp(t), S = s U V^T and

    L = 1/2 [ mean_i (lse_j S_ij - S_ii) + mean_j (lse_i S_ij - S_jj) ].

t starts at ln(1/0.07) and is clamped to [0, ln 100] after every update (the model's
`logit_scale_max`).

Sharded ("local loss", `config.loss_impl="shard_map"`): each device gathers the embeddings
of the whole batch and computes only its own rows of S (its images against every text) and
of S^T (its texts against every image): B_local x B, never B x B. The gradient flows back
through the gather to the device that owns each embedding.
"""

import jax
import jax.numpy as jnp

from lang_image.objectives import global_batch as gb

EMBEDDING = "towers"
DEFAULTS = {}


def clip_loss(image_emb: jax.Array, text_emb: jax.Array, log_scale: jax.Array,
              axis: gb.Axis = None):
  """-> (loss, metrics) for unit embeddings [B(_local), D] and the log of the logit scale."""
  # At least float32 (bfloat16 towers), float64 when given it (reference tests).
  dtype = jnp.promote_types(jnp.result_type(image_emb, text_emb), jnp.float32)
  u, v = image_emb.astype(dtype), text_emb.astype(dtype)
  scale = jnp.exp(log_scale).astype(dtype)
  image_rows = scale * u @ gb.gather(v, axis).T   # rows of S: local images x all texts
  text_rows = scale * v @ gb.gather(u, axis).T    # rows of S^T: local texts x all images
  positive = scale * jnp.sum(u * v, axis=-1)
  per_pair = (jax.nn.logsumexp(image_rows, axis=1) + jax.nn.logsumexp(text_rows, axis=1)
              - 2.0 * positive)
  # Top-1: the match's own entry is the row's maximum (a tie counts as a hit). The maximum
  # is the one logsumexp takes anyway; an argmax would add B_local x B index arrays.
  labels = (gb.row_offset(u, axis) + jnp.arange(u.shape[0]))[:, None]

  def top1(rows):
    rows = jax.lax.stop_gradient(rows)
    own = jnp.take_along_axis(rows, labels, axis=1)[:, 0]
    return gb.batch_mean((own >= jnp.max(rows, axis=1)).astype(dtype), axis)

  metrics = {"i2t_top1": top1(image_rows), "t2i_top1": top1(text_rows)}
  return 0.5 * gb.batch_mean(per_pair, axis), metrics


def loss(outputs, head, ctx, options):
  del head, options
  return clip_loss(outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"], ctx.axis)
