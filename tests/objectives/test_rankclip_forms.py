"""RankCLIP's two ListMLE forms against float64 references written from their definitions:

  exact     sum_k [ log sum_{l >= k} exp(a_pi(l)) - a_pi(k) ]               (Plackett-Luce)
  released  sum_k [ log( sum_{l >= k} exp(a_pi(l) - m) + 1e-10 ) - (a_pi(k) - m) ],
            m = max of the row, entries whose target is exactly -1 left out, ties in the
            order of a given shuffle (the released list_MLE, github Jam1ezhang/RankCLIP)

at the initial logit scale (1/0.07) and at 54, where the two differ; gradients by central
differences of the references.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lang_image import objectives
from lang_image.errors import ConfigError
from lang_image.objectives import Context, rankclip

EPS = 1e-10
SCALES = {"initial": 1 / 0.07, "large": 54.0}


def ranked_positions(target_row, tie_order=None):
  """Column indices from the largest target down; ties follow `tie_order` (else index)."""
  rank_in_ties = (list(range(len(target_row))) if tie_order is None
                  else [list(tie_order).index(j) for j in range(len(target_row))])
  return sorted(range(len(target_row)), key=lambda j: (-target_row[j], rank_in_ties[j]))


def exact_row(a, r):
  perm = ranked_positions(r)
  return sum(math.log(sum(math.exp(a[l]) for l in perm[k:])) - a[perm[k]]
             for k in range(len(perm)))


def released_row(a, r, tie_order=None):
  perm = [j for j in ranked_positions(r, tie_order) if r[j] != -1.0]   # padded entries out
  m = max(a[j] for j in perm)
  return sum(math.log(sum(math.exp(a[l] - m) for l in perm[k:]) + EPS) - (a[perm[k]] - m)
             for k in range(len(perm)))


def reference_list_mle(a, r, form, tie_order=None):
  rows = [exact_row(x, y) if form == "exact" else released_row(x, y, tie_order)
          for x, y in zip(a, r)]
  return float(np.mean(rows))


def reference_term(u, v, t, form):
  """variant="code" at full ramp weight (w = 2): 2 (L_cross + L_in) / 32 / B."""
  s = math.exp(t)
  S, SII, STT = s * u @ v.T, s * u @ u.T, s * v @ v.T
  total = sum(reference_list_mle(a, r, form) for a, r in ((S, S.T), (S.T, S), (SII, STT),
                                                          (STT, SII)))
  return 2.0 * total / 32 / len(u)


def unit_pairs(seed, batch=6, dim=4):
  rng = np.random.default_rng(seed)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  return unit(rng.normal(size=(batch, dim))), unit(rng.normal(size=(batch, dim)))


def term(u, v, t, form):
  return rankclip.ranking_loss(u, v, t, "code", step=9, total_steps=10, list_mle=form)[0]


@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize("form", ["exact", "released"])
def test_term_and_gradients_match_float64_reference(form, scale):
  u, v = unit_pairs(1)
  t = math.log(SCALES[scale])
  with jax.enable_x64(True):
    value, grads = jax.value_and_grad(term, argnums=(0, 1, 2))(
        jnp.asarray(u), jnp.asarray(v), jnp.asarray(t), form)
  want = reference_term(u, v, t, form)
  np.testing.assert_allclose(value, want, rtol=1e-12)
  h = 1e-6
  for index, (arg, grad) in enumerate(zip((u, v, t), grads)):
    flat = np.atleast_1d(np.asarray(arg, float)).ravel()
    numeric = np.zeros_like(flat)
    for j in range(flat.size):
      for sign in (1, -1):
        moved = [np.array(x, float) for x in (u, v, t)]
        view = np.atleast_1d(moved[index]).ravel()
        view[j] += sign * h
        moved[index] = view.reshape(np.shape(arg)) if np.ndim(arg) else float(view[0])
        numeric[j] += sign * reference_term(*moved, form) / (2 * h)
    scale_of = np.abs(numeric).max()
    np.testing.assert_allclose(np.ravel(grad), numeric, rtol=1e-5, atol=1e-7 * scale_of)


def test_forms_agree_at_the_initial_scale_and_differ_at_54():
  u, v = unit_pairs(2, batch=12, dim=8)
  gaps = {}
  for scale, s in SCALES.items():
    exact, released = (reference_term(u, v, math.log(s), form) for form in ("exact", "released"))
    gaps[scale] = abs(released - exact) / exact
  assert gaps["initial"] < 1e-3
  assert gaps["large"] > 1e-1                 # the 1e-10 dominates most in-modal tails


def test_released_form_leaves_out_targets_equal_to_minus_one():
  rng = np.random.default_rng(3)
  a, r = rng.normal(size=(3, 7)) * 5, rng.normal(size=(3, 7))
  r[:, 2] = -1.0                              # column 2 is "padding" in every row
  r[1, 5] = -1.0
  with jax.enable_x64(True):
    got = rankclip.list_mle(jnp.asarray(a), jnp.asarray(r), form="released")
    dropped = rankclip.list_mle(jnp.asarray(np.delete(a[:1], 2, 1)),
                                jnp.asarray(np.delete(r[:1], 2, 1)), form="released")
    grad = jax.grad(lambda x: rankclip.list_mle(x, jnp.asarray(r), form="released"))(
        jnp.asarray(a))
  np.testing.assert_allclose(got, reference_list_mle(a, r, "released"), rtol=1e-12)
  np.testing.assert_allclose(dropped, released_row(a[0], r[0]), rtol=1e-12)
  assert np.all(np.asarray(grad)[:, 2] == 0) and float(grad[1, 5]) == 0.0


def test_ties_follow_the_given_shuffle():
  rng = np.random.default_rng(4)
  a = rng.normal(size=(2, 6)) * 3
  r = np.array([[3.0, 1.0, 1.0, 1.0, 0.0, 2.0], [0.5, 0.5, 2.0, 2.0, 1.0, 0.0]])
  values = set()
  with jax.enable_x64(True):
    for seed in range(6):
      order = np.asarray(jax.random.permutation(jax.random.key(seed), 6))
      got = float(rankclip.list_mle(jnp.asarray(a), jnp.asarray(r), form="released",
                                    tie_order=jnp.asarray(order)))
      np.testing.assert_allclose(got, reference_list_mle(a, r, "released", order), rtol=1e-12)
      values.add(round(got, 9))
    untied = rng.normal(size=(2, 6))          # without ties the shuffle changes nothing
    base = rankclip.list_mle(jnp.asarray(a), jnp.asarray(untied), form="released")
    shuffled = rankclip.list_mle(jnp.asarray(a), jnp.asarray(untied), form="released",
                                 tie_order=jnp.asarray(order))
  assert len(values) > 1                      # the tie order matters, and it is drawn
  np.testing.assert_allclose(shuffled, base, rtol=1e-13)


def test_options_select_the_form_and_the_loss_draws_its_shuffles_from_the_step_rng():
  u, v = unit_pairs(5, batch=8)
  defaults = objectives.option_defaults("rankclip")
  t = math.log(54.0)

  def run(v, seed, **options):
    out = {"image_emb": jnp.asarray(u), "text_emb": jnp.asarray(v), "logit_scale": jnp.asarray(t)}
    ctx = Context(step=jnp.asarray(9), total_steps=10, rng=jax.random.key(seed))
    return float(rankclip.loss(out, None, ctx, {**defaults, **options})[0])

  with jax.enable_x64(True):
    np.testing.assert_allclose(run(v, 0), reference_term(u, v, t, "released"), rtol=1e-12)
    np.testing.assert_allclose(run(v, 0, list_mle="exact"), reference_term(u, v, t, "exact"),
                               rtol=1e-12)
    twin = v.copy()
    twin[3] = twin[1]                          # a repeated caption: tied targets
    released = {run(twin, seed) for seed in range(4)}
    exact = {run(twin, seed, list_mle="exact") for seed in range(4)}
  assert len(released) > 1 and len(exact) == 1
  assert rankclip.list_mle_form({"variant": "paper", "list_mle": "by_variant"}) == "exact"


def test_ramp_follows_the_released_epoch_staircase():
  # 100 steps as 4 epochs: epoch e = 1 + floor(4 step / 100), w = clip(3 (e - 1) / 3, 0, 2).
  got = [float(rankclip.ramp_weight(step, 100, epochs=4)) for step in (0, 24, 25, 49, 50, 99)]
  assert got == pytest.approx([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])


@pytest.mark.parametrize("option,value,needle", [
    ("list_mle", "approximate", "list_mle"),
    ("ramp_epochs", 1, "ramp_epochs"),
    ("ramp_epochs", -3, "ramp_epochs"),
])
def test_bad_options_fail_with_one_sentence(option, value, needle):
  with pytest.raises(ConfigError, match=needle):
    objectives.check_config({"clip": {"weight": 1.0},
                             "rankclip": {"weight": 1.0, option: value}})
