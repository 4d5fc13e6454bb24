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
"""

import jax
import jax.numpy as jnp

from lang_image.config import ConfigError

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


def list_mle(predictions: jax.Array, target: jax.Array, position_decay: bool = False):
  """Plackett-Luce NLL of each row of `predictions` under the order of `target`'s row."""
  order = jnp.argsort(-jax.lax.stop_gradient(target), axis=-1, stable=True)
  ranked = jnp.take_along_axis(predictions, order, axis=-1)
  # lse over each suffix of the ranked list, in one pass and without exp/cumsum/log.
  per_position = jax.lax.cumlogsumexp(ranked, axis=ranked.ndim - 1, reverse=True) - ranked
  if position_decay:
    k = jnp.arange(1, ranked.shape[-1] + 1, dtype=ranked.dtype)
    per_position = per_position / jnp.log(k + 1)
  return jnp.mean(jnp.sum(per_position, axis=-1))


def ramp_weight(step, total_steps: int) -> jax.Array:
  return jnp.clip(3.0 * step / max(total_steps - 1, 1), 0.0, 2.0)


def ranking_loss(image_emb, text_emb, log_scale, variant: str = "code", step=0,
                 total_steps: int = 1):
  """-> (weighted ranking term, its parts) for unit embeddings and the CLIP log-scale."""
  v = VARIANTS[variant]
  dtype = jnp.promote_types(jnp.result_type(image_emb, text_emb), jnp.float32)
  u, t = image_emb.astype(dtype), text_emb.astype(dtype)
  s = jnp.exp(log_scale).astype(dtype)
  cross, image_image, text_text = s * u @ t.T, s * u @ u.T, s * t @ t.T
  l_cross = list_mle(cross, cross.T, v["decay"]) + list_mle(cross.T, cross, v["decay"])
  l_in = (list_mle(image_image, text_text, v["decay"])
          + list_mle(text_text, image_image, v["decay"]))
  weight = ramp_weight(step, total_steps) if v["ramp"] else jnp.ones((), dtype)
  term = weight * v["lam"] * (l_cross + l_in)
  if v["per_batch"]:
    term = term / u.shape[0]
  return term, {"cross": l_cross, "in_modal": l_in, "ramp_weight": weight}


def loss(outputs, head, ctx, options):
  del head
  return ranking_loss(outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"],
                      options["variant"], ctx.step, ctx.total_steps)
