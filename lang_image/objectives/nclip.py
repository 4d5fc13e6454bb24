"""nCLIP: non-contrastive language-image pretraining (Zhou et al., "Non-Contrastive
Learning Meets Language-Image Pre-Training", CVPR 2023, arXiv 2210.09304).

Each modality's pooled tower features f are mapped by its own prototype head h to scores
over K prototypes (cosines in [-1, 1]). The prediction of one modality is trained to match
the other's (sharper, stop-gradient) target distribution:

    p_I = softmax(h_I(f_I) / tau_s),        p_T = softmax(h_T(f_T) / tau_s)
    q_I = softmax(sg[h_I(f_I)] / tau_t),    q_T = softmax(sg[h_T(f_T)] / tau_t)
    L   = 1/2 [ H(q_T, p_I) + H(q_I, p_T) ]  -  lambda_me 1/2 [ H(mean_b p_I) + H(mean_b p_T) ]

with H(q, p) = -sum_k q_k log p_k averaged over the batch and H(p) = -sum_k p_k log p_k.
The second part (mean-entropy maximisation, `anti_collapse="me_max"`) keeps the batch from
collapsing onto one prototype. xCLIP is CLIP + lambda nCLIP on the same towers
(`configs/xclip.py`).

No official code exists; every constant is an option (defaults from the paper's text):
  tau_s 0.1, tau_t 0.04, lambda_me 1, K 16384 (the CPU configs use 4096).
  Head: Linear(d, hidden) -> GELU -> Linear(hidden, hidden) -> GELU -> Linear(hidden,
  bottleneck) -> L2-normalise -> weight-normalised Linear(bottleneck, K, no bias), its
  columns kept at unit norm (gain fixed at 1), so scores are cosines.
Switches:
  anti_collapse  "me_max" (default) | "centering": targets softmax((sg[h] - c) / tau_t)
                 with c an EMA (momentum 0.9) of the global batch mean of sg[h], no
                 entropy term | "sinkhorn": targets are the Sinkhorn-Knopp assignment of
                 exp(sg[h] / eps) (eps 0.05, 3 iterations; rows sum to 1, prototypes get
                 equal mass over the batch), no entropy term.
  teacher        "online" (default): targets come from the same heads | "ema": from an
                 exponential moving average of the heads (momentum 0.996 rising to 1 on a
                 cosine schedule), applied to the stop-gradient tower features. The towers
                 are shared and always online; only the heads have a teacher copy.
  head_norm      "none" (default, the formulation above) | "batch": the two hidden layers of
                 each head are standardised over the global batch before their GELU (as in
                 SwAV's projection head; no learned scale or shift, running statistics in
                 evaluation). Not in the paper.

Every batch statistic (the mean prediction, the centre, Sinkhorn's sums, the heads' batch
standardisation) is over the global batch; sharded (`config.loss_impl="shard_map"`), each
device runs the heads on its own rows and the statistics are combined with psum. Collapse monitors, logged every step: `mean_entropy` H(mean p) (stays near log K
without collapse; `mean_entropy_ratio` divides by log K), `sample_entropy` mean H(p) (falls
as predictions sharpen) and `prototypes_used`, the fraction of prototypes that are the
argmax of at least one sample, and `mutual_information` H(mean p) - mean H(p), which is 0
when every sample predicts the same distribution: H(mean p) alone stays high when all samples
share one flat distribution, a collapse that only the last two monitors reveal.

Evaluation embedding when no term trains the towers' joint space (nCLIP alone): the
L2-normalised prediction distribution p over the K prototypes, so an image and a text are
close when they put their mass on the same prototypes. Whatever space evaluation uses (xCLIP:
CLIP's), the final evaluation also reports the same collapse measures of both heads over the
whole test split (`head_distributions`, `evaluators.prototype_usage`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.errors import ConfigError
from lang_image.models.two_tower import l2_normalize
from lang_image.objectives import global_batch as gb
from lang_image.objectives.running_batch_norm import BatchNorm

DEFAULTS = {
    "prototypes": 16384,
    "hidden_dim": 2048,
    "bottleneck_dim": 256,
    "student_temp": 0.1,
    "teacher_temp": 0.04,
    "me_max_weight": 1.0,
    "anti_collapse": "me_max",
    "center_momentum": 0.9,
    "sinkhorn_eps": 0.05,
    "sinkhorn_iters": 3,
    "teacher": "online",
    "ema_momentum": 0.996,
    "head_norm": "none",
}
ANTI_COLLAPSE = ("me_max", "centering", "sinkhorn")
TEACHERS = ("online", "ema")
HEAD_NORMS = ("none", "batch")
EMBEDDING = "head"


def check_options(options) -> None:
  if options["anti_collapse"] not in ANTI_COLLAPSE:
    raise ConfigError(f"unknown nCLIP anti_collapse {options['anti_collapse']!r}; set "
                      f"config.objectives.nclip.anti_collapse to one of {list(ANTI_COLLAPSE)}.")
  if options["teacher"] not in TEACHERS:
    raise ConfigError(f"unknown nCLIP teacher {options['teacher']!r}; set "
                      f"config.objectives.nclip.teacher to one of {list(TEACHERS)}.")
  if options["head_norm"] not in HEAD_NORMS:
    raise ConfigError(f"unknown nCLIP head_norm {options['head_norm']!r}; set "
                      f"config.objectives.nclip.head_norm to one of {list(HEAD_NORMS)}.")
  for key in ("prototypes", "hidden_dim", "bottleneck_dim", "sinkhorn_iters"):
    if int(options[key]) < 1:
      raise ConfigError(f"config.objectives.nclip.{key} must be a positive integer, "
                        f"got {options[key]!r}.")
  for key in ("student_temp", "teacher_temp", "sinkhorn_eps"):
    if not float(options[key]) > 0:
      raise ConfigError(f"config.objectives.nclip.{key} must be positive, got {options[key]!r}.")


class TeacherWeight(nnx.Variable):
  """A weight that follows its student by EMA; not trained by the optimizer."""


class PrototypeHead(nnx.Module):
  """f -> cosine scores over K prototypes (MLP, L2-normalised bottleneck, unit prototypes).

  With `batch_norm`, each hidden layer is standardised over the global batch before its
  GELU (no learned scale or shift; running statistics in evaluation).
  """

  def __init__(self, in_dim: int, hidden: int, bottleneck: int, prototypes: int, *,
               rngs: nnx.Rngs, variable=nnx.Param, batch_norm: bool = False):
    init = nnx.initializers.truncated_normal(0.02)
    sizes = [(in_dim, hidden), (hidden, hidden), (hidden, bottleneck)]
    self.kernels = nnx.List([variable(init(rngs.params(), s)) for s in sizes])
    # A bias before a batch standardisation would be subtracted right away: none there.
    self.biases = nnx.List([variable(jnp.zeros((s[1],))) for s in sizes[2 if batch_norm else 0:]])
    self.prototypes = variable(nnx.initializers.normal(1.0)(rngs.params(),
                                                            (bottleneck, prototypes)))
    # nCLIP has no released code to match: its running variance stays the biased one.
    self.norms = nnx.List([BatchNorm(hidden, affine=False, unbiased_running_var=False)
                           for _ in range(2)]) if batch_norm else None

  def __call__(self, x: jax.Array, train: bool = True, axis: gb.Axis = None) -> jax.Array:
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # float64 stays (reference tests)
    biases = [None] * (len(self.kernels) - len(self.biases)) + list(self.biases)
    for i, (kernel, bias) in enumerate(zip(self.kernels, biases)):
      x = x @ kernel[...]
      if bias is not None:
        x = x + bias[...]
      if i < len(self.kernels) - 1:
        if self.norms is not None:
          x = self.norms[i](x, train, axis)
        x = jax.nn.gelu(x, approximate=False)
    return l2_normalize(x) @ l2_normalize(self.prototypes[...].astype(x.dtype), axis=0)

  def weights(self) -> list:
    return [*self.kernels, *self.biases, self.prototypes]


class NClipHead(nnx.Module):
  """Per-modality prototype heads, plus the centres or EMA teachers the switches need."""

  def __init__(self, options, dims, rngs: nnx.Rngs):
    sizes = (options["hidden_dim"], options["bottleneck_dim"], options["prototypes"])
    norm = options["head_norm"] == "batch"
    self.image = PrototypeHead(dims["image_width"], *sizes, rngs=rngs, batch_norm=norm)
    self.text = PrototypeHead(dims["text_width"], *sizes, rngs=rngs, batch_norm=norm)
    self.student_temp = float(options["student_temp"])
    if options["anti_collapse"] == "centering":
      self.image_center = nnx.BatchStat(jnp.zeros((options["prototypes"],)))
      self.text_center = nnx.BatchStat(jnp.zeros((options["prototypes"],)))
    else:
      self.image_center = self.text_center = None
    self.ema_momentum = float(options["ema_momentum"])
    if options["teacher"] == "ema":
      self.image_teacher = PrototypeHead(dims["image_width"], *sizes, rngs=rngs,
                                         variable=TeacherWeight, batch_norm=norm)
      self.text_teacher = PrototypeHead(dims["text_width"], *sizes, rngs=rngs,
                                        variable=TeacherWeight, batch_norm=norm)
      for s, t in self._pairs():  # the teacher starts as a copy of the student
        t[...] = s[...]
    else:
      self.image_teacher = self.text_teacher = None

  def _pairs(self):
    for student, teacher in ((self.image, self.image_teacher), (self.text, self.text_teacher)):
      yield from zip(student.weights(), teacher.weights())

  def post_update(self, step, total_steps: int) -> None:
    """EMA teacher step after each optimizer update: momentum m0 -> 1 on a cosine."""
    if self.image_teacher is None:
      return
    momentum = ema_momentum(step, total_steps, self.ema_momentum)
    for s, t in self._pairs():
      t[...] = momentum * t[...] + (1.0 - momentum) * s[...]


def make_head(options, dims, rngs):
  return NClipHead(options, dims, rngs)


def ema_momentum(step, total_steps: int, base: float) -> jax.Array:
  progress = jnp.asarray(step, jnp.float32) / max(total_steps, 1)
  return 1.0 - (1.0 - base) * (jnp.cos(math.pi * progress) + 1.0) / 2.0


def sinkhorn(logits: jax.Array, iters: int, axis: gb.Axis = None) -> jax.Array:
  """Sinkhorn-Knopp on exp(logits) [B, K], in log space: equal prototype mass over the
  batch, each row a distribution (SwAV's normalisation order, ending on the rows)."""
  batch, k = gb.global_size(logits, axis), logits.shape[1]
  log_q = logits - gb.batch_logsumexp(jax.nn.logsumexp(logits, axis=1), axis)
  for _ in range(iters):
    log_q = log_q - gb.batch_logsumexp(log_q, axis) - math.log(k)
    log_q = log_q - jax.nn.logsumexp(log_q, axis=1, keepdims=True) - math.log(batch)
  return jnp.exp(log_q + math.log(batch))


def targets(teacher_scores: jax.Array, options, center=None, axis: gb.Axis = None):
  scores = jax.lax.stop_gradient(teacher_scores)
  if options["anti_collapse"] == "sinkhorn":
    return sinkhorn(scores / options["sinkhorn_eps"], int(options["sinkhorn_iters"]), axis)
  if options["anti_collapse"] == "centering":
    scores = scores - jax.lax.stop_gradient(center)
  return jax.nn.softmax(scores / options["teacher_temp"], axis=-1)


def entropy(p: jax.Array) -> jax.Array:
  return -jnp.sum(p * jnp.log(p), axis=-1)


def nclip_loss(image_scores, text_scores, image_teacher, text_teacher, options,
               centers=(None, None), axis: gb.Axis = None):
  """-> (loss, metrics) from the heads' cosine scores [B, K] (teacher scores may be the same
  arrays: they are used under stop-gradient)."""
  dtype = jnp.promote_types(jnp.result_type(image_scores, text_scores), jnp.float32)
  tau_s = options["student_temp"]
  log_p_i = jax.nn.log_softmax(image_scores.astype(dtype) / tau_s, axis=-1)
  log_p_t = jax.nn.log_softmax(text_scores.astype(dtype) / tau_s, axis=-1)
  q_i = targets(image_teacher.astype(dtype), options, centers[0], axis)
  q_t = targets(text_teacher.astype(dtype), options, centers[1], axis)
  cross = 0.5 * gb.batch_mean(-jnp.sum(q_t * log_p_i, -1) - jnp.sum(q_i * log_p_t, -1), axis)
  p_i, p_t = jnp.exp(log_p_i), jnp.exp(log_p_t)
  mean_entropy = 0.5 * (entropy(gb.batch_mean(p_i, axis)) + entropy(gb.batch_mean(p_t, axis)))
  sample_entropy = 0.5 * gb.batch_mean(entropy(p_i) + entropy(p_t), axis)
  loss = cross
  if options["anti_collapse"] == "me_max":
    loss = cross - options["me_max_weight"] * mean_entropy
  k = image_scores.shape[-1]
  metrics = {
      "cross_entropy": cross,
      "mean_entropy": mean_entropy,
      "mean_entropy_ratio": mean_entropy / math.log(k),
      "sample_entropy": sample_entropy,
      # I(sample; prototype): 0 when every sample predicts the same distribution.
      "mutual_information": mean_entropy - sample_entropy,
      "prototypes_used": 0.5 * (_used(log_p_i, axis) + _used(log_p_t, axis)),
  }
  return loss, metrics


def _used(log_p: jax.Array, axis: gb.Axis) -> jax.Array:
  """The fraction of prototypes that are the argmax of at least one sample (a comparison
  with the row maximum rather than an argmax: no [B, K] index array)."""
  top = log_p >= jnp.max(log_p, axis=-1, keepdims=True)
  return jnp.mean(gb.batch_max(top.astype(log_p.dtype), axis))


def loss(outputs, head, ctx, options):
  axis = ctx.axis
  f_i, f_t = outputs["image_features"], outputs["text_features"]
  image_scores, text_scores = head.image(f_i, axis=axis), head.text(f_t, axis=axis)
  if head.image_teacher is not None:
    image_teacher = head.image_teacher(jax.lax.stop_gradient(f_i), axis=axis)
    text_teacher = head.text_teacher(jax.lax.stop_gradient(f_t), axis=axis)
  else:
    image_teacher, text_teacher = image_scores, text_scores
  centers = (None, None)
  if head.image_center is not None:
    centers = (head.image_center[...], head.text_center[...])
  value, metrics = nclip_loss(image_scores, text_scores, image_teacher, text_teacher, options,
                              centers, axis)
  if head.image_center is not None:
    m = options["center_momentum"]
    for center, scores in ((head.image_center, image_teacher), (head.text_center, text_teacher)):
      batch_mean = gb.batch_mean(jax.lax.stop_gradient(scores), axis)
      center[...] = m * center[...] + (1.0 - m) * batch_mean
  return value, metrics


def head_distributions(head, modality: str, features: jax.Array) -> jax.Array:
  """The student distributions p = softmax(h(f) / tau_s) [N, K] of one modality's head in
  evaluation mode (running statistics, no teacher): what the evaluation's collapse measures
  read (`evaluators.prototype_usage`)."""
  scores = getattr(head, modality)(features, train=False)
  return jax.nn.softmax(scores / head.student_temp, axis=-1)


def embed(head, modality: str, features: jax.Array) -> jax.Array:
  return l2_normalize(head_distributions(head, modality, features))
