"""nCLIP against float64 references written from OBJECTIVES.md, for every switch setting."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from finite_differences import numeric_grad
from lang_image.errors import ConfigError
from lang_image.objectives import Context, check_config, nclip

ERF = np.vectorize(math.erf)


def softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def sinkhorn_reference(scores, eps, iters):
  """SwAV's Sinkhorn-Knopp in probability space: Q is K x B."""
  q = np.exp(scores / eps).T
  q = q / q.sum()
  k, b = q.shape
  for _ in range(iters):
    q = q / q.sum(axis=1, keepdims=True) / k
    q = q / q.sum(axis=0, keepdims=True) / b
  return (q * b).T


def reference_loss(student_i, student_t, teacher_i, teacher_t, opts, centers=(None, None)):
  """L_nCLIP from the specification; the teacher scores are constants."""
  p_i, p_t = softmax(student_i / opts["student_temp"]), softmax(student_t / opts["student_temp"])

  def target(scores, center):
    if opts["anti_collapse"] == "sinkhorn":
      return sinkhorn_reference(scores, opts["sinkhorn_eps"], opts["sinkhorn_iters"])
    if opts["anti_collapse"] == "centering":
      scores = scores - center
    return softmax(scores / opts["teacher_temp"])

  q_i, q_t = target(teacher_i, centers[0]), target(teacher_t, centers[1])
  cross = 0.5 * (np.mean(-np.sum(q_t * np.log(p_i), 1)) + np.mean(-np.sum(q_i * np.log(p_t), 1)))

  def h(p):
    return -np.sum(p * np.log(p))

  if opts["anti_collapse"] == "me_max":
    return cross - opts["me_max_weight"] * 0.5 * (h(p_i.mean(0)) + h(p_t.mean(0)))
  return cross


def options(**overrides):
  return {**nclip.DEFAULTS, **overrides}


SWITCHES = [
    dict(anti_collapse="me_max"),
    dict(anti_collapse="me_max", me_max_weight=0.3, student_temp=0.2, teacher_temp=0.07),
    dict(anti_collapse="centering"),
    dict(anti_collapse="sinkhorn"),
    dict(anti_collapse="sinkhorn", sinkhorn_iters=5, sinkhorn_eps=0.1),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("switch", SWITCHES, ids=lambda s: "-".join(map(str, s.values())))
def test_loss_and_grads_match_float64_reference(switch, seed):
  rng = np.random.default_rng(seed)
  B, K = 6, 10
  opts = options(**switch)
  s_i, s_t = rng.uniform(-1, 1, (B, K)), rng.uniform(-1, 1, (B, K))
  centers = (rng.normal(0, 0.3, K), rng.normal(0, 0.3, K))
  with jax.enable_x64(True):
    def f(a, b):
      return nclip.nclip_loss(a, b, a, b, opts, tuple(map(jnp.asarray, centers)))[0]
    value, (g_i, g_t) = jax.value_and_grad(f, argnums=(0, 1))(jnp.asarray(s_i), jnp.asarray(s_t))
  assert value.dtype == jnp.float64
  np.testing.assert_allclose(value, reference_loss(s_i, s_t, s_i, s_t, opts, centers), rtol=1e-6)
  # The targets are constants: the reference differentiates through the student only.
  ref_g_i = numeric_grad(lambda a: reference_loss(a, s_t, s_i, s_t, opts, centers), s_i)
  ref_g_t = numeric_grad(lambda b: reference_loss(s_i, b, s_i, s_t, opts, centers), s_t)
  for got, want in ((g_i, ref_g_i), (g_t, ref_g_t)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8 * np.abs(want).max())


def test_sinkhorn_matches_reference_and_balances():
  rng = np.random.default_rng(3)
  scores = rng.uniform(-1, 1, (8, 5))
  with jax.enable_x64(True):
    q = np.asarray(nclip.sinkhorn(jnp.asarray(scores / 0.05), 3))
  np.testing.assert_allclose(q, sinkhorn_reference(scores, 0.05, 3), rtol=1e-9)
  np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-9)              # each row a distribution
  with jax.enable_x64(True):
    q = np.asarray(nclip.sinkhorn(jnp.asarray(scores / 0.05), 200))
  np.testing.assert_allclose(q.sum(0), 8 / 5, rtol=1e-6)             # equal prototype mass


def small_head(**overrides):
  opts = options(prototypes=12, hidden_dim=9, bottleneck_dim=5, **overrides)
  return nclip.make_head(opts, {"image_width": 7, "text_width": 4}, nnx.Rngs(0)), opts


def head_reference(head, x, batch_norm=False):
  """MLP -> [standardise over the batch] -> GELU -> ... -> L2-normalise -> unit-norm
  prototype columns, float64."""
  biases = [np.asarray(b[...], np.float64) for b in head.biases]
  biases = [0.0] * (len(head.kernels) - len(biases)) + biases     # none before a batch norm
  weights = [(np.asarray(k[...], np.float64), b) for k, b in zip(head.kernels, biases)]
  for i, (k, b) in enumerate(weights):
    x = x @ k + b
    if i < len(weights) - 1:
      if batch_norm:
        x = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
      x = 0.5 * x * (1 + ERF(x / math.sqrt(2)))
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  w = np.asarray(head.prototypes[...], np.float64)
  return x @ (w / np.linalg.norm(w, axis=0, keepdims=True))


def test_prototype_head_matches_reference():
  head, _ = small_head()
  x = np.random.default_rng(0).normal(size=(5, 7))
  with jax.enable_x64(True):
    got = np.asarray(head.image(jnp.asarray(x)))
  np.testing.assert_allclose(got, head_reference(head.image, x), rtol=1e-9)
  assert np.abs(got).max() <= 1 + 1e-9  # cosines


def test_prototype_head_with_batch_norm_matches_reference():
  head, _ = small_head(head_norm="batch")
  assert len(head.image.biases) == 1
  x = np.random.default_rng(1).normal(size=(6, 7))
  with jax.enable_x64(True):
    got = np.asarray(nnx.clone(head).image(jnp.asarray(x), train=True))
  np.testing.assert_allclose(got, head_reference(head.image, x, batch_norm=True), rtol=1e-9)
  # Evaluation uses running statistics: a single example embeds as it does in a batch.
  head.image(jnp.asarray(x, jnp.float32))
  one = nclip.embed(head, "image", jnp.asarray(x[:1], jnp.float32))
  many = nclip.embed(head, "image", jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(one[0], many[0], rtol=1e-5, atol=1e-6)


def outputs_for(rng, B=6):
  return {"image_features": jnp.asarray(rng.normal(size=(B, 7)), jnp.float32),
          "text_features": jnp.asarray(rng.normal(size=(B, 4)), jnp.float32)}


CTX = Context(step=jnp.zeros((), jnp.int32), total_steps=10, rng=jax.random.key(0))


def test_centering_updates_the_centre_by_ema_of_the_teacher_batch_mean():
  head, opts = small_head(anti_collapse="centering")
  out = outputs_for(np.random.default_rng(1))
  value, _ = nclip.loss(out, head, CTX, opts)
  s_i = head_reference(head.image, np.asarray(out["image_features"], np.float64))
  s_t = head_reference(head.text, np.asarray(out["text_features"], np.float64))
  zeros = np.zeros(12)
  np.testing.assert_allclose(value, reference_loss(s_i, s_t, s_i, s_t, opts, (zeros, zeros)),
                             rtol=1e-5)
  np.testing.assert_allclose(head.image_center[...], 0.1 * s_i.mean(0), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(head.text_center[...], 0.1 * s_t.mean(0), rtol=1e-5, atol=1e-7)


def test_ema_teacher_targets_and_update():
  head, opts = small_head(teacher="ema")
  for s, t in head._pairs():                                  # teacher starts as the student
    np.testing.assert_array_equal(s[...], t[...])
  # Move the student; the loss must take its targets from the (old) teacher.
  old_teacher = [np.asarray(t[...]) for _, t in head._pairs()]
  for s, _ in head._pairs():
    s[...] = s[...] * 1.5 + 0.01
  out = outputs_for(np.random.default_rng(2))
  value, _ = nclip.loss(out, head, CTX, opts)
  f_i = np.asarray(out["image_features"], np.float64)
  f_t = np.asarray(out["text_features"], np.float64)
  want = reference_loss(head_reference(head.image, f_i), head_reference(head.text, f_t),
                        head_reference(head.image_teacher, f_i),
                        head_reference(head.text_teacher, f_t), opts)
  np.testing.assert_allclose(value, want, rtol=1e-5)
  step, total = 3, 10
  head.post_update(step, total)
  m = 1 - (1 - 0.996) * (math.cos(math.pi * step / total) + 1) / 2
  for (s, t), old in zip(head._pairs(), old_teacher):
    np.testing.assert_allclose(t[...], m * old + (1 - m) * np.asarray(s[...]), rtol=1e-6,
                               atol=1e-7)
  assert float(nclip.ema_momentum(total, total, 0.996)) == pytest.approx(1.0)


def test_collapse_monitors_on_known_cases():
  K = 8
  uniform = np.zeros((4, K))
  _, m = nclip.nclip_loss(uniform, uniform, uniform, uniform, options())
  assert float(m["mean_entropy"]) == pytest.approx(math.log(K), rel=1e-6)
  assert float(m["mean_entropy_ratio"]) == pytest.approx(1.0, rel=1e-6)
  assert float(m["sample_entropy"]) == pytest.approx(math.log(K), rel=1e-6)
  # Sample b puts its mass on prototype 2b: 4 of 8 prototypes are someone's argmax.
  peaked = np.full((4, K), -1.0)
  peaked[np.arange(4), 2 * np.arange(4)] = 1.0
  _, m = nclip.nclip_loss(peaked, peaked, peaked, peaked, options())
  assert float(m["prototypes_used"]) == pytest.approx(0.5)
  assert float(m["sample_entropy"]) < math.log(K) - 1.0
  assert float(m["mutual_information"]) > 1.0
  collapsed = np.tile(peaked[:1], (4, 1))
  _, m = nclip.nclip_loss(collapsed, collapsed, collapsed, collapsed, options())
  assert float(m["prototypes_used"]) == pytest.approx(1 / K)
  assert float(m["mean_entropy"]) < 0.5 * math.log(K)
  # One shared, fairly flat distribution: H(mean p) stays high, yet the samples are
  # indistinguishable; the mutual information shows it.
  flat = np.tile(np.linspace(0.0, 0.05, K), (4, 1))
  _, m = nclip.nclip_loss(flat, flat, flat, flat, options())
  assert float(m["mean_entropy_ratio"]) > 0.99
  assert abs(float(m["mutual_information"])) < 1e-5


def test_embedding_is_the_unit_prediction_distribution():
  head, _ = small_head()
  x = np.random.default_rng(4).normal(size=(3, 4))
  with jax.enable_x64(True):
    emb = np.asarray(nclip.embed(head, "text", jnp.asarray(x)))
  p = softmax(head_reference(head.text, x) / 0.1)
  np.testing.assert_allclose(emb, p / np.linalg.norm(p, axis=1, keepdims=True), rtol=1e-9)


@pytest.mark.parametrize("option,value,needle", [
    ("anti_collapse", "whitening", "anti_collapse"),
    ("teacher", "momentum", "teacher"),
    ("prototypes", 0, "prototypes"),
    ("head_norm", "layer", "head_norm"),
    ("teacher_temp", 0.0, "teacher_temp"),
])
def test_bad_options_fail_with_one_sentence(option, value, needle):
  with pytest.raises(ConfigError, match=needle):
    check_config({"nclip": {"weight": 1.0, option: value}})
