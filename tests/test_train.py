"""The jitted train step: sharded equals single-device; checkpoints round-trip exactly."""

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from configs import clip as clip_config
from lang_image import checkpoint, parallel
from lang_image.data import pipeline
from lang_image.models import variants
from lang_image.trainer import Trainer

VOCAB = 64


@pytest.fixture(scope="module", autouse=True)
def pico_towers():
  """One-block, 32-wide towers: every code path of the step, compiled in a few seconds."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(variants.VIT_SIZES, "pico", (32, 1, 2, 64))
    patch.setitem(variants.TEXT_SIZES, "pico", (32, 1, 2, 64))
    yield


def small_config(objectives=None):
  c = clip_config.get_config("batch=16,steps=10")
  if objectives is not None:
    c.objectives = ConfigDict(objectives)
  c.model.update(image="pico/8", text="pico", image_stem="patch", image_size=16, max_len=8,
                 embed_dim=16)
  return c


def synthetic_batch(seed, batch=16):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, VOCAB, size=(batch, 8)).astype(np.int32)
  tokens[:, 6] = 1  # EOS
  tokens[:, 7] = 0  # pad
  return {"image": rng.integers(0, 256, size=(batch, 16, 16, 3)).astype(np.uint8),
          "text": tokens}


def run_steps(config, mesh, n_steps, batch_size=16):
  """-> trainer, final state, per-step (metrics, gradients)."""
  trainer = Trainer(config, mesh, VOCAB)
  state = trainer.init_state(0)
  history = []

  def step_and_grads(state, batch):  # one compiled program instead of two
    return trainer._train_step(state, batch), trainer._loss_and_grads(state, batch)[2]

  step_fn = jax.jit(step_and_grads, in_shardings=(trainer.state_sharding, trainer.batch_sharding),
                    out_shardings=((trainer.state_sharding, None), None))
  with jax.set_mesh(mesh):
    for i in range(n_steps):
      batch = pipeline.to_global(synthetic_batch(i, batch_size), trainer.batch_sharding)
      (state, metrics), grads = step_fn(state, batch)
      history.append((jax.device_get(metrics), jax.device_get(grads)))
  return trainer, state, history


NCLIP_SMALL = {"weight": 1.0, "prototypes": 64, "hidden_dim": 32, "bottleneck_dim": 16}
# Every objective, and every switch that changes what crosses devices.
OBJECTIVES = {
    "clip": {"clip": {"weight": 1.0}},
    "siglip": {"siglip": {"weight": 1.0}},
    "rankclip": {"clip": {"weight": 1.0}, "rankclip": {"weight": 1.0, "variant": "paper"}},
    "nclip": {"nclip": {**NCLIP_SMALL, "head_norm": "batch"}},
    "nclip-centering-ema": {"nclip": {**NCLIP_SMALL, "anti_collapse": "centering",
                                      "teacher": "ema"}},
    "nclip-sinkhorn": {"nclip": {**NCLIP_SMALL, "anti_collapse": "sinkhorn"}},
    "xclip": {"clip": {"weight": 1.0}, "nclip": {**NCLIP_SMALL, "weight": 0.5}},
    "cliplite": {"cliplite": {"weight": 1.0, "critic_dim": 32}},
    "cliplite-shuffle-prior": {"cliplite": {"weight": 1.0, "critic_dim": 32,
                                            "negatives": "shuffle", "prior_weight": 0.1}},
}
_SINGLE_DEVICE = {}


def single_device_run(name):
  if name not in _SINGLE_DEVICE:
    config = small_config(OBJECTIVES[name])
    one = parallel.make_mesh(ConfigDict(dict(data=1, fsdp=1)), devices=jax.devices()[:1])
    _SINGLE_DEVICE[name] = run_steps(config, one, 3)[1:]
  return _SINGLE_DEVICE[name]


# (2, 4) uses both axes and runs in the fast suite for every objective; (8, 1), two rows per
# device, in the slow step for the two whose batch statistics and negatives cross the most
# device boundaries there.
@pytest.mark.parametrize("name, mesh_shape", [
    *[(name, (2, 4)) for name in OBJECTIVES],
    *[pytest.param(name, (8, 1), marks=pytest.mark.slow)
      for name in ("nclip", "cliplite-shuffle-prior")]])
def test_sharded_loss_and_grads_equal_single_device(name, mesh_shape):
  """Global-batch semantics: CLIP-Lite's roll and shuffle cross device boundaries, nCLIP's
  batch mean, centre, Sinkhorn sums and head BatchNorm and the critic's BatchNorm statistics
  are global."""
  ref_state, ref_hist = single_device_run(name)
  mesh = parallel.make_mesh(ConfigDict(dict(data=mesh_shape[0], fsdp=mesh_shape[1])))
  _, state, hist = run_steps(small_config(OBJECTIVES[name]), mesh, 3)
  for (ref_metrics, ref_grads), (metrics, grads) in zip(ref_hist, hist):
    assert set(ref_metrics) == set(metrics)
    for key in ref_metrics:
      np.testing.assert_allclose(metrics[key], ref_metrics[key], rtol=1e-5, atol=1e-6,
                                 err_msg=key)
    # Some leaves have an exactly zero gradient in exact arithmetic (a bias right before a
    # batch standardisation); their float32 noise is judged against the whole gradient.
    overall = max(np.abs(np.asarray(a)).max() for a in jax.tree.leaves(ref_grads))
    for a, b in zip(jax.tree.leaves(ref_grads), jax.tree.leaves(grads)):
      scale = np.abs(np.asarray(a)).max()
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5,
                                 atol=1e-5 * scale + 1e-6 * overall)
  # Adam divides by sqrt(v): parameters agree a little less tightly than gradients.
  for part in ("params", "rest"):
    for a, b in zip(jax.tree.leaves(ref_state[part]), jax.tree.leaves(state[part])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_loss_falls_and_logit_scale_is_clamped():
  config = small_config()
  config.optim.update(lr=5e-3, warmup_steps=1)
  config.model.logit_scale_max = 2.0  # below the init ln(1/0.07) = 2.66: the clamp must act
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))
  trainer = Trainer(config, mesh, VOCAB)
  state = trainer.init_state(0)
  batch = pipeline.to_global(synthetic_batch(0), trainer.batch_sharding)
  losses, scales = [], []
  with jax.set_mesh(mesh):
    for _ in range(10):
      state, metrics = trainer.train_step(state, batch)
      losses.append(float(metrics["loss"]))
      scales.append(float(state["params"]["towers"]["logit_scale"][...]))
  assert losses[-1] < losses[0] - 0.5, losses
  assert scales[0] == pytest.approx(2.0) and max(scales) <= 2.0 + 1e-6, scales
  assert int(state["step"]) == 10


def test_checkpoint_round_trip(tmp_path):
  config = small_config()
  mesh = parallel.make_mesh(ConfigDict(dict(data=2, fsdp=4)))
  trainer, state, _ = run_steps(config, mesh, 2)
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=1, keep=2)
  assert ckpt.maybe_save(2, state, {"next_batch": 2})
  ckpt.wait()
  # Restore onto a different mesh: values equal, shardings follow the new target.
  other = Trainer(config, parallel.make_mesh(ConfigDict(dict(data=8, fsdp=1))), VOCAB)
  restored, data = checkpoint.Checkpointer(str(tmp_path), every=1, keep=2).restore(
      other.abstract_state)
  assert data == {"next_batch": 2}
  assert int(restored["step"]) == 2
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  leaf = jax.tree.leaves(restored["params"])[0]
  assert leaf.sharding.mesh.shape == other.mesh.shape
  ckpt.close()


def test_siglip_head_is_trained_and_its_scale_is_not_clamped():
  config = small_config()
  config.objectives = ConfigDict({"siglip": {"weight": 1.0, "scale_init": 3.0}})
  config.model.logit_scale_max = 1.0  # CLIP's clamp must not touch SigLIP's own scale
  config.optim.update(lr=1e-2, warmup_steps=1)
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))
  trainer = Trainer(config, mesh, VOCAB)
  state = trainer.init_state(0)
  head = state["params"]["heads"]["siglip"]
  assert float(head["log_scale"][...]) == 3.0 and float(head["bias"][...]) == -10.0
  with jax.set_mesh(mesh):
    for i in range(2):  # The warmup's first step has learning rate 0.
      state, metrics = trainer.train_step(
          state, pipeline.to_global(synthetic_batch(i), trainer.batch_sharding))
  head = state["params"]["heads"]["siglip"]
  assert float(head["log_scale"][...]) > 1.0 and float(head["bias"][...]) != -10.0
  assert {"siglip/loss", "siglip/scale", "siglip/bias"} <= set(metrics)
