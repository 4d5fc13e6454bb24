"""CLIP: symmetric InfoNCE (Radford et al., "Learning Transferable Visual Models From
Natural Language Supervision", ICML 2021).

For a batch of B pairs with unit embeddings u_i (image) and v_i (text) and logit scale
s = exp(t), S = s U V^T and

    L = 1/2 [ mean_i (lse_j S_ij - S_ii) + mean_j (lse_i S_ij - S_jj) ].

t starts at ln(1/0.07) and is clamped to [0, ln 100] after every update (the model's
`logit_scale_max`). The loss is over the global batch: under `jax.jit` with a batch-sharded
mesh the matrix is partitioned by XLA.
"""

import jax
import jax.numpy as jnp

EMBEDDING = "towers"
DEFAULTS = {}


def clip_loss(image_emb: jax.Array, text_emb: jax.Array, log_scale: jax.Array):
  """Returns (loss, logits) for unit embeddings [B, D] and the log of the logit scale."""
  # At least float32 (bfloat16 towers), float64 when given it (reference tests).
  dtype = jnp.promote_types(jnp.result_type(image_emb, text_emb), jnp.float32)
  image_emb = image_emb.astype(dtype)
  text_emb = text_emb.astype(dtype)
  logits = jnp.exp(log_scale) * image_emb @ text_emb.T
  image_to_text = jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(logits))
  text_to_image = jnp.mean(jax.nn.logsumexp(logits, axis=0) - jnp.diagonal(logits))
  return 0.5 * (image_to_text + text_to_image), logits


def loss(outputs, head, ctx, options):
  del head, ctx, options
  value, logits = clip_loss(outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"])
  labels = jnp.arange(logits.shape[0])
  metrics = {
      "i2t_top1": jnp.mean(jnp.argmax(logits, axis=1) == labels),
      "t2i_top1": jnp.mean(jnp.argmax(logits, axis=0) == labels),
  }
  return value, metrics
