"""RankCLIP: list-wise ranking consistency (Zhang et al., "RankCLIP: Ranking-Consistent
Language-Image Pretraining", arXiv 2404.09387).

With the CLIP scale s (shared, clamped by the towers) and unit embeddings:

    S = s U V^T,   S_II = s U U^T,   S_TT = s V V^T

ListMLE (Plackett-Luce negative log-likelihood) of predictions a against the ORDER of a
target r (no gradient through the order), averaged over rows:

    ListMLE(a, r) = mean_rows sum_k mu_k [ lse_{l >= k} a_pi(l) - a_pi(k) ],  pi = argsort_desc(r)

    L_cross = ListMLE(S, S^T) + ListMLE(S^T, S)
    L_in    = ListMLE(S_II, S_TT) + ListMLE(S_TT, S_II)
    term    = w * (lambda_cross * L_cross + lambda_in * L_in)

Configs list it next to CLIP: {"clip": {"weight": 1}, "rankclip": {"weight": 1}}, giving
L = L_CLIP + term. In-modal lists include the diagonal.

variant="code" (default, the official code): mu_k = 1, lambda_cross = lambda_in = 1/32,
the ranking part divided by B, and w ramping with progress: with e the 1-based epoch of E,
w = clip(3 (e - 1) / (E - 1), 0, 2), here w = clip(3 step / (total_steps - 1), 0, 2).
variant="paper": lambda = 1/16, no 1/B, no ramp (w = 1), mu_k = 1 / ln(k + 1), k 1-based.

Sharded (`config.loss_impl="shard_map"`): every list is a row, so each device builds only its
own rows of S, S^T, S_II and S_TT against the gathered embeddings and the row means are
summed over devices. The rows go in blocks of at most ROW_BLOCK_ELEMENTS entries, recomputed
in the backward pass: sorting a row keeps several arrays of its size alive, and whole
B_local x B matrices of them would not fit at large batches.
"""

import jax
import jax.numpy as jnp

from lang_image.errors import ConfigError
from lang_image.objectives import global_batch as gb

EMBEDDING = "towers"
DEFAULTS = {"variant": "code"}
VARIANTS = {
    "code": {"lam": 1 / 32, "per_batch": True, "ramp": True, "decay": False},
    "paper": {"lam": 1 / 16, "per_batch": False, "ramp": False, "decay": True},
}


def check_options(options) -> None:
  if options["variant"] not in VARIANTS:
    raise ConfigError(f"unknown RankCLIP variant {options['variant']!r}; set "
                      f"config.objectives.rankclip.variant to one of {sorted(VARIANTS)}.")


def list_mle_rows(predictions: jax.Array, target: jax.Array, position_decay: bool = False):
  """Plackett-Luce NLL of each row of `predictions` under the order of `target`'s row."""
  order = jnp.argsort(-jax.lax.stop_gradient(target), axis=-1, stable=True)
  ranked = jnp.take_along_axis(predictions, order, axis=-1)
  # lse over each suffix of the ranked list, in one pass and without exp/cumsum/log.
  per_position = jax.lax.cumlogsumexp(ranked, axis=ranked.ndim - 1, reverse=True) - ranked
  if position_decay:
    k = jnp.arange(1, ranked.shape[-1] + 1, dtype=ranked.dtype)
    per_position = per_position / jnp.log(k + 1)
  return jnp.sum(per_position, axis=-1)


def list_mle(predictions: jax.Array, target: jax.Array, position_decay: bool = False,
             axis: gb.Axis = None):
  """`list_mle_rows` averaged over the rows of the global batch."""
  return gb.batch_mean(list_mle_rows(predictions, target, position_decay), axis)


# Entries of one block of rows of a similarity matrix ([rows, B]). Larger local batches are
# processed block by block and each block is recomputed in the backward pass, so the
# ranking's memory stays near 4 x this many entries whatever the batch.
ROW_BLOCK_ELEMENTS = 2 ** 22


def row_block(local: int, total: int, max_elements: int) -> int:
  """The largest divisor of `local` whose block [rows, total] has at most `max_elements`."""
  for rows in range(min(local, max(max_elements // total, 1)), 0, -1):
    if local % rows == 0:
      return rows
  return 1


def ramp_weight(step, total_steps: int) -> jax.Array:
  return jnp.clip(3.0 * step / max(total_steps - 1, 1), 0.0, 2.0)


def ranking_loss(image_emb, text_emb, log_scale, variant: str = "code", step=0,
                 total_steps: int = 1, axis: gb.Axis = None,
                 max_block_elements: int = ROW_BLOCK_ELEMENTS):
  """-> (weighted ranking term, its parts) for unit embeddings and the CLIP log-scale."""
  v = VARIANTS[variant]
  dtype = jnp.promote_types(jnp.result_type(image_emb, text_emb), jnp.float32)
  u, t = image_emb.astype(dtype), text_emb.astype(dtype)
  s = jnp.exp(log_scale).astype(dtype)
  all_u, all_t = gb.gather(u, axis), gb.gather(t, axis)

  def rows(block):
    """Per-row ListMLE sums for a block of local samples: their rows of S, S^T, S_II, S_TT."""
    u_rows, t_rows = block
    cross, cross_t = s * u_rows @ all_t.T, s * t_rows @ all_u.T
    image_image, text_text = s * u_rows @ all_u.T, s * t_rows @ all_t.T

    def mle(predictions, target):
      return list_mle_rows(predictions, target, v["decay"])

    return (mle(cross, cross_t) + mle(cross_t, cross),
            mle(image_image, text_text) + mle(text_text, image_image))

  n, size = u.shape[0], all_u.shape[0]
  block = row_block(n, size, max_block_elements)
  if block == n:
    cross_rows, in_rows = rows((u, t))
  else:
    def split(x):
      return x.reshape(n // block, block, x.shape[-1])
    cross_rows, in_rows = (r.reshape(n) for r in
                           jax.lax.map(jax.checkpoint(rows), (split(u), split(t))))
  l_cross, l_in = gb.batch_mean(cross_rows, axis), gb.batch_mean(in_rows, axis)
  weight = ramp_weight(step, total_steps) if v["ramp"] else jnp.ones((), dtype)
  term = weight * v["lam"] * (l_cross + l_in)
  if v["per_batch"]:
    term = term / gb.global_size(u, axis)
  return term, {"cross": l_cross, "in_modal": l_in, "ramp_weight": weight}


def loss(outputs, head, ctx, options):
  del head
  return ranking_loss(outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"],
                      options["variant"], ctx.step, ctx.total_steps, ctx.axis)
