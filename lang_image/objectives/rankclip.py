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
w = clip(3 (e - 1) / (E - 1), 0, 2). With `ramp_epochs` = E > 1 that staircase is followed
exactly, the run's steps split into E equal epochs; with `ramp_epochs=0` (default) the ramp
is its per-step limit w = clip(3 step / (total_steps - 1), 0, 2).
variant="paper": lambda = 1/16, no 1/B, no ramp (w = 1), mu_k = 1 / ln(k + 1), k 1-based.

Two forms of ListMLE (`list_mle`; "by_variant", the default, takes the variant's own):

  "exact" (variant="paper"'s): the Plackett-Luce NLL above, the suffix log-sum-exps taken by
      `cumlogsumexp`; tied targets are ordered by index.
  "released" (variant="code"'s): the released `list_MLE` (github Jam1ezhang/RankCLIP,
      rank_losses.py) line for line. The columns are shuffled by a fresh random permutation
      for each of the four lists before the sort, so tied targets come in random order;
      entries whose target equals -1 exactly (the released padding marker) drop out of their
      list; each row is shifted by its largest prediction (the gradient flows through that
      maximum, as through torch's max) and position k costs

          log( sum_{l >= k} exp(a_pi(l) - max) + 1e-10 ) - (a_pi(k) - max).

      The 1e-10 makes this differ from the Plackett-Luce NLL once a suffix sum falls below
      it, i.e. once the predictions of the rest of the list lie more than ln(1e10) = 23
      below the row's maximum. At the initial scale (1/0.07) that is rare; at large scales
      it is the rule for the in-modal lists, whose diagonal (s) leads every row: each such
      position then costs about (max - a_k) - 23 whatever the order of the rest of its list,
      log(1e-10 / suffix sum) more than the exact form, and its gradient pulls a_k towards
      the row's maximum (benchmarks/rankclip_forms.py measures the gap).

The default is variant="code" with the released form: the paper's results were trained with
that code, and the default reproduces its objective, eps included; the exact form is one
switch away (`list_mle=exact`, or variant="paper" for all of the paper's choices).
docs/objectives.md lists every other difference from the released code.

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
DEFAULTS = {"variant": "code", "list_mle": "by_variant", "ramp_epochs": 0}
VARIANTS = {
    "code": {"lam": 1 / 32, "per_batch": True, "ramp": True, "decay": False,
             "list_mle": "released"},
    "paper": {"lam": 1 / 16, "per_batch": False, "ramp": False, "decay": True,
              "list_mle": "exact"},
}
LIST_MLE_FORMS = ("released", "exact")
RELEASED_EPS = 1e-10      # added to each suffix sum by the released list_MLE
RELEASED_PADDING = -1.0   # a target equal to this marks a padded entry in the released code


def check_options(options) -> None:
  if options["variant"] not in VARIANTS:
    raise ConfigError(f"unknown RankCLIP variant {options['variant']!r}; set "
                      f"config.objectives.rankclip.variant to one of {sorted(VARIANTS)}.")
  forms = ("by_variant",) + LIST_MLE_FORMS
  if options["list_mle"] not in forms:
    raise ConfigError(f"unknown RankCLIP list_mle form {options['list_mle']!r}; set "
                      f"config.objectives.rankclip.list_mle to one of {list(forms)}.")
  epochs = options["ramp_epochs"]
  if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0 or epochs == 1:
    raise ConfigError("config.objectives.rankclip.ramp_epochs must be 0 (per-step ramp) or "
                      f"a whole number of epochs >= 2, got {epochs!r}.")


def list_mle_form(options) -> str:
  """The ListMLE form the options select ("released" or "exact")."""
  form = options["list_mle"]
  return VARIANTS[options["variant"]]["list_mle"] if form == "by_variant" else form


def list_mle_rows(predictions: jax.Array, target: jax.Array, position_decay: bool = False,
                  form: str = "exact", tie_order: jax.Array | None = None):
  """Plackett-Luce NLL of each row of `predictions` under the order of `target`'s row, in
  the "exact" or the "released" form (module docstring). `tie_order`, a permutation of the
  columns, breaks ties in the target (the released code's random shuffle); None breaks them
  by index."""
  target = jax.lax.stop_gradient(target)
  if tie_order is None:
    order = jnp.argsort(-target, axis=-1, stable=True)
  else:
    order = tie_order[jnp.argsort(-target[..., tie_order], axis=-1, stable=True)]
  ranked = jnp.take_along_axis(predictions, order, axis=-1)
  last = ranked.ndim - 1
  if form == "exact":
    # lse over each suffix of the ranked list, in one pass and without exp/cumsum/log.
    per_position = jax.lax.cumlogsumexp(ranked, axis=last, reverse=True) - ranked
  else:
    padded = jnp.take_along_axis(target, order, axis=-1) == RELEASED_PADDING
    candidates = jnp.where(padded, -jnp.inf, ranked)
    top = jnp.take_along_axis(candidates, jnp.argmax(candidates, axis=-1, keepdims=True), -1)
    shifted = ranked - top
    tail = jax.lax.cumsum(jnp.where(padded, 0.0, jnp.exp(shifted)), axis=last, reverse=True)
    per_position = jnp.where(padded, 0.0, jnp.log(tail + RELEASED_EPS) - shifted)
  if position_decay:
    k = jnp.arange(1, ranked.shape[-1] + 1, dtype=ranked.dtype)
    per_position = per_position / jnp.log(k + 1)
  return jnp.sum(per_position, axis=-1)


def list_mle(predictions: jax.Array, target: jax.Array, position_decay: bool = False,
             axis: gb.Axis = None, form: str = "exact", tie_order: jax.Array | None = None):
  """`list_mle_rows` averaged over the rows of the global batch."""
  return gb.batch_mean(list_mle_rows(predictions, target, position_decay, form, tie_order),
                       axis)


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


def ramp_weight(step, total_steps: int, epochs: int = 0) -> jax.Array:
  """w = clip(3 (e - 1) / (E - 1), 0, 2) for the 1-based epoch e of E = `epochs` (the run's
  steps split evenly), or with `epochs=0` its per-step limit clip(3 step / (T - 1), 0, 2)."""
  if epochs:
    done = (jnp.asarray(step, jnp.int32) * epochs) // max(total_steps, 1)  # e - 1
    return jnp.clip(3.0 * done / (epochs - 1), 0.0, 2.0)
  return jnp.clip(3.0 * step / max(total_steps - 1, 1), 0.0, 2.0)


def ranking_loss(image_emb, text_emb, log_scale, variant: str = "code", step=0,
                 total_steps: int = 1, axis: gb.Axis = None,
                 max_block_elements: int = ROW_BLOCK_ELEMENTS, list_mle: str = "by_variant",
                 ramp_epochs: int = 0, rng=None):
  """-> (weighted ranking term, its parts) for unit embeddings and the CLIP log-scale.

  `rng` draws the released form's tie-breaking shuffles (one per list, shared by all rows
  and devices); without it ties are broken by index.
  """
  v = VARIANTS[variant]
  form = list_mle_form({"variant": variant, "list_mle": list_mle})
  dtype = jnp.promote_types(jnp.result_type(image_emb, text_emb), jnp.float32)
  u, t = image_emb.astype(dtype), text_emb.astype(dtype)
  s = jnp.exp(log_scale).astype(dtype)
  all_u, all_t = gb.gather(u, axis), gb.gather(t, axis)
  size = all_u.shape[0]
  if form == "released" and rng is not None:
    tie_orders = [jax.random.permutation(key, size) for key in jax.random.split(rng, 4)]
  else:
    tie_orders = [None] * 4

  def rows(block):
    """Per-row ListMLE sums for a block of local samples: their rows of S, S^T, S_II, S_TT."""
    u_rows, t_rows = block
    cross, cross_t = s * u_rows @ all_t.T, s * t_rows @ all_u.T
    image_image, text_text = s * u_rows @ all_u.T, s * t_rows @ all_t.T

    def mle(predictions, target, tie_order):
      return list_mle_rows(predictions, target, v["decay"], form, tie_order)

    return (mle(cross, cross_t, tie_orders[0]) + mle(cross_t, cross, tie_orders[1]),
            mle(image_image, text_text, tie_orders[2])
            + mle(text_text, image_image, tie_orders[3]))

  n = u.shape[0]
  block = row_block(n, size, max_block_elements)
  if block == n:
    cross_rows, in_rows = rows((u, t))
  else:
    def split(x):
      return x.reshape(n // block, block, x.shape[-1])
    cross_rows, in_rows = (r.reshape(n) for r in
                           jax.lax.map(jax.checkpoint(rows), (split(u), split(t))))
  l_cross, l_in = gb.batch_mean(cross_rows, axis), gb.batch_mean(in_rows, axis)
  weight = (ramp_weight(step, total_steps, ramp_epochs).astype(dtype) if v["ramp"]
            else jnp.ones((), dtype))
  term = weight * v["lam"] * (l_cross + l_in)
  if v["per_batch"]:
    term = term / gb.global_size(u, axis)
  return term, {"cross": l_cross, "in_modal": l_in, "ramp_weight": weight}


def loss(outputs, head, ctx, options):
  del head
  return ranking_loss(outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"],
                      options["variant"], ctx.step, ctx.total_steps, ctx.axis,
                      list_mle=options["list_mle"], ramp_epochs=options["ramp_epochs"],
                      rng=jax.random.fold_in(ctx.rng, 0x7a4c))
