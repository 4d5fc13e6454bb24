"""CLIP-Lite: information-efficient visual representation learning with language supervision
(Shrivastava et al., AISTATS 2023, arXiv 2112.07133).

A Jensen-Shannon lower bound on the mutual information between image and text features with
exactly one negative per positive. A learned critic T scores a pair of pooled tower features:

    L = mean_i softplus( -T(f_i, g_i) ) + mean_i softplus( T(f_i, g_neg(i)) )

`2 ln 2 - L` is the Jensen-Shannon MI estimate (logged as `jsd_mi`); a critic that outputs 0
everywhere gives L = 2 ln 2 exactly.

Critic ("dot" critic): per modality a block

    block(x) = LayerNorm( Linear2(ReLU(BatchNorm(Linear1(x)))) + Shortcut(x) )

(Linear1 without bias, width `critic_dim`; `cliplite_critic` holds the blocks, initialised
as the released code's torch modules: a shortcut of uniform +-0.01 with an exact identity
diagonal, torch's default uniform +-1/sqrt(fan_in) for the other linear maps), and

    T(f, g) = exp(tau) cos(block_I(f), block_T(g)),   tau learned, from ln(1/0.07), not clamped.

LayerNorm and BatchNorm follow torch's defaults (eps 1e-5 both). BatchNorm normalises with
the statistics of the global batch in training and with running averages in evaluation:
momentum 0.1 with the unbiased batch variance, updated twice per step because the released
loss runs the critic twice (positive pairs, then negative pairs), so a critic in evaluation
mode agrees with the released one after the same steps. The running averages are model
state saved in checkpoints.

Negatives (image -> text only): `negatives="roll"` (default, the official code) pairs image i
with text i+1 of the global batch (the last with the first); `"shuffle"` (the paper's words)
draws a fresh random derangement every step: one random cycle through the batch, so no image
is ever paired with its own text.

Prior term (only in the official code; off by default, `prior_weight` w, the code used 0.1):
a discriminator D (d -> 1000 -> 200 -> 1, ReLU, sigmoid) on the pooled image features f with
PRIOR = -(mean log D(u) + mean log(1 - D(f))), u ~ Uniform[0, 1)^d; with `text_prior`
(default True, as the released config) a second discriminator does the same on the pooled
text features and PRIOR is the sum of both. The term becomes (1 - w) L + w PRIOR (one loss
for critic, towers and discriminators alike, as in that code). log D is computed as
log_sigmoid of D's logit: the released log(sigmoid(.)) gives the same value wherever it is
finite.

Differences from the released code that remain (per-GPU statistics, mixed precision, ...)
are listed in docs/objectives.md.

Zero-shot and retrieval embed with the critic's blocks (L2-normalised, running statistics).

Sharded (`config.loss_impl="shard_map"`): each device runs the critic on its own rows with
global BatchNorm statistics (psum); the roll is one ppermute of a single row (each device
receives the first text of the next device), the random derangement gathers the text blocks
(B x critic_dim, not B x B), and the prior's uniform samples are drawn for the global batch
and sliced, so every way of sharding sees the same numbers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.errors import ConfigError
from lang_image.models.two_tower import l2_normalize
from lang_image.objectives import global_batch as gb
from lang_image.objectives.cliplite_critic import CriticBlock, PriorDiscriminator

DEFAULTS = {
    "critic_dim": 2048,
    "negatives": "roll",
    "temperature_init": math.log(1 / 0.07),
    "prior_weight": 0.0,
    "text_prior": True,
}
# The released loss runs its critic twice per step (positive pairs, negative pairs); each
# run updates the BatchNorm running statistics.
CRITIC_PASSES_PER_STEP = 2
NEGATIVES = ("roll", "shuffle")
EMBEDDING = "head"


def check_options(options) -> None:
  if options["negatives"] not in NEGATIVES:
    raise ConfigError(f"unknown CLIP-Lite negatives {options['negatives']!r}; set "
                      f"config.objectives.cliplite.negatives to one of {list(NEGATIVES)}.")
  if int(options["critic_dim"]) < 1:
    raise ConfigError("config.objectives.cliplite.critic_dim must be a positive integer, "
                      f"got {options['critic_dim']!r}.")
  if not 0.0 <= float(options["prior_weight"]) < 1.0:
    raise ConfigError("config.objectives.cliplite.prior_weight must be in [0, 1), "
                      f"got {options['prior_weight']!r}.")
  if not isinstance(options["text_prior"], bool):
    raise ConfigError("config.objectives.cliplite.text_prior must be True or False, "
                      f"got {options['text_prior']!r}.")


class Critic(nnx.Module):

  def __init__(self, options, dims, rngs: nnx.Rngs):
    width = int(options["critic_dim"])
    self.image = CriticBlock(dims["image_width"], width, rngs=rngs)
    self.text = CriticBlock(dims["text_width"], width, rngs=rngs)
    self.log_temperature = nnx.Param(jnp.asarray(options["temperature_init"], jnp.float32))
    use_prior = options["prior_weight"] > 0
    self.prior = PriorDiscriminator(dims["image_width"], rngs=rngs) if use_prior else None
    self.text_prior = (PriorDiscriminator(dims["text_width"], rngs=rngs)
                       if use_prior and options["text_prior"] else None)


def make_head(options, dims, rngs):
  return Critic(options, dims, rngs)


def negative_index(batch: int, negatives: str, rng=None) -> jax.Array:
  """Index of the text each image is paired with as its negative."""
  if negatives == "roll":
    return (jnp.arange(batch) + 1) % batch
  order = jax.random.permutation(rng, batch)
  # Each sample points at the next one along a random cycle: a derangement.
  return jnp.zeros(batch, jnp.int32).at[order].set(jnp.roll(order, -1).astype(jnp.int32))


def negative_texts(v: jax.Array, negatives: str, rng, axis: gb.Axis = None) -> jax.Array:
  """The text (block) each local image is paired with as its negative."""
  if negatives == "roll":
    return gb.roll_up(v, axis)
  index = negative_index(gb.global_size(v, axis), negatives, rng)
  return gb.gather(v, axis)[gb.local_rows(index, v.shape[0], axis)]


def jsd_loss(image_block, text_block, log_temperature, negatives="roll", rng=None,
             axis: gb.Axis = None):
  """-> (loss, mean critic value on positives, on negatives) from the critic blocks."""
  u, v = l2_normalize(image_block), l2_normalize(text_block)
  scale = jnp.exp(log_temperature)
  positive = scale * jnp.sum(u * v, -1)
  negative_score = scale * jnp.sum(u * negative_texts(v, negatives, rng, axis), -1)
  value = gb.batch_mean(jax.nn.softplus(-positive) + jax.nn.softplus(negative_score), axis)
  return value, gb.batch_mean(positive, axis), gb.batch_mean(negative_score, axis)


def prior_loss(discriminator, features, prior_samples, axis: gb.Axis = None):
  """-(mean log D(u) + mean log(1 - D(f))) for samples u of the prior, Uniform[0, 1)^d."""
  return -gb.batch_mean(jax.nn.log_sigmoid(discriminator(prior_samples))
                        + jax.nn.log_sigmoid(-discriminator(features)), axis)


def prior_samples(rng, features: jax.Array, axis: gb.Axis = None) -> jax.Array:
  """Uniform[0, 1) samples shaped like the local features, drawn for the global batch and
  sliced, so that every way of sharding sees the same numbers."""
  shape = (gb.global_size(features, axis),) + features.shape[1:]
  return gb.local_rows(jax.random.uniform(rng, shape, features.dtype), features.shape[0], axis)


def loss(outputs, head, ctx, options):
  axis = ctx.axis
  f_i, f_t = outputs["image_features"], outputs["text_features"]
  negative_rng, prior_rng = jax.random.split(jax.random.fold_in(ctx.rng, 0x11e))
  passes = CRITIC_PASSES_PER_STEP
  value, positive, negative_score = jsd_loss(head.image(f_i, True, axis, passes),
                                             head.text(f_t, True, axis, passes),
                                             head.log_temperature[...], options["negatives"],
                                             negative_rng, axis)
  metrics = {
      "jsd_mi": 2.0 * math.log(2.0) - value,
      "critic_positive": positive,
      "critic_negative": negative_score,
      "temperature": jnp.exp(head.log_temperature[...]),
  }
  w = float(options["prior_weight"])
  if w > 0:
    image_rng, text_rng = jax.random.split(prior_rng)
    features = f_i.astype(jnp.promote_types(f_i.dtype, jnp.float32))
    prior = prior_loss(head.prior, features, prior_samples(image_rng, features, axis), axis)
    if head.text_prior is not None:
      features = f_t.astype(jnp.promote_types(f_t.dtype, jnp.float32))
      prior = prior + prior_loss(head.text_prior, features,
                                 prior_samples(text_rng, features, axis), axis)
    metrics["prior"] = prior
    value = (1.0 - w) * value + w * prior
  return value, metrics


def embed(head, modality: str, features: jax.Array) -> jax.Array:
  return l2_normalize(getattr(head, modality)(features, train=False))
