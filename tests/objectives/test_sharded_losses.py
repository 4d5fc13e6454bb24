"""The shard_map losses equal the single-device global computation, and stay lean.

Each objective runs on 8 simulated devices with every device holding its rows of the batch
(`loss_impl="shard_map"`) and is compared with the plain global computation on one device:
loss, metrics, gradients (heads and tower outputs) and the heads' updated state.
"""

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from lang_image import objectives, parallel
from benchmarks import loss_program as lp

NCLIP = {"prototypes": 64, "hidden_dim": 32, "bottleneck_dim": 16}
SETUPS = {
    "clip": {"clip": {}},
    "siglip": {"siglip": {"scale_init": 2.0, "bias_init": -2.0}},
    "rankclip-code": {"clip": {}, "rankclip": {"variant": "code"}},
    "rankclip-paper": {"rankclip": {"variant": "paper"}},
    "nclip-memax-batchnorm": {"nclip": {**NCLIP, "head_norm": "batch"}},
    "nclip-centering-ema": {"nclip": {**NCLIP, "anti_collapse": "centering", "teacher": "ema"}},
    "nclip-sinkhorn": {"nclip": {**NCLIP, "anti_collapse": "sinkhorn"}},
    "cliplite-roll": {"cliplite": {"critic_dim": 24}},
    "cliplite-shuffle-prior": {"cliplite": {"critic_dim": 24, "negatives": "shuffle",
                                            "prior_weight": 0.1}},
}
BATCH = 32


def objectives_config(setup: dict) -> ConfigDict:
  return ConfigDict({name: {"weight": 1.0, **objectives.option_defaults(name), **opts}
                     for name, opts in setup.items()})


def mesh(data, fsdp, devices=None):
  return parallel.make_mesh(ConfigDict(dict(data=data, fsdp=fsdp)), devices=devices)


_REFERENCE = {}


def reference(name):
  """The global computation on one device, for two steps (the second with new rng)."""
  if name not in _REFERENCE:
    program = lp.LossProgram(objectives_config(SETUPS[name]), mesh(1, 1, jax.devices()[:1]),
                             "global")
    _REFERENCE[name] = [jax.device_get(program(lp.random_outputs(BATCH, seed=s), step=s,
                                               seed=s)) for s in (0, 7)]
  return _REFERENCE[name]


def assert_trees_close(got, want, what):
  flat_want, structure = jax.tree.flatten(want)
  flat_got = structure.flatten_up_to(got)
  for a, b in zip(flat_got, flat_want):
    b = np.asarray(b)
    # The floor: a small gradient that is a float32 sum of cancelling terms of order 0.1 (a
    # discriminator's last bias) differs by summation order alone by ~1e-8.
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5,
                               atol=1e-5 * max(float(np.abs(b).max(initial=0)), 1e-2),
                               err_msg=what)


@pytest.mark.parametrize("mesh_shape", [(8, 1), (2, 4), (1, 8)])
@pytest.mark.parametrize("name", list(SETUPS))
def test_shard_map_loss_and_grads_equal_global_single_device(name, mesh_shape):
  program = lp.LossProgram(objectives_config(SETUPS[name]), mesh(*mesh_shape), "shard_map")
  for seed, want in zip((0, 7), reference(name)):
    (loss, (metrics, rest)), (param_grads, output_grads) = jax.device_get(
        program(lp.random_outputs(BATCH, seed=seed), step=seed, seed=seed))
    (want_loss, (want_metrics, want_rest)), (want_param_grads, want_output_grads) = want
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    assert set(metrics) == set(want_metrics)
    for key in want_metrics:
      np.testing.assert_allclose(metrics[key], want_metrics[key], rtol=1e-5, atol=1e-6,
                                 err_msg=key)
    assert_trees_close(param_grads, want_param_grads, "head parameter gradients")
    assert_trees_close(output_grads, want_output_grads, "tower output gradients")
    assert_trees_close(rest, want_rest, "updated head state")


BIG_BATCH = 16384  # global; 2048 rows per device on 8 devices
LEAN = {
    "clip": {"clip": {}},
    "siglip": {"siglip": {}},
    "rankclip": {"clip": {}, "rankclip": {}},
    "nclip": {"nclip": {"prototypes": 4096, "hidden_dim": 256, "bottleneck_dim": 64,
                        "head_norm": "batch"}},
    "cliplite": {"cliplite": {"critic_dim": 256}},
}


@pytest.mark.parametrize("name", list(LEAN))
def test_no_batch_squared_buffer_at_16k(name):
  """Compiled (not run) for B = 16384 on 8 devices: no array in the per-device program is as
  large as B x B; SigLIP's ring holds nothing as large as B_local x B."""
  program = lp.LossProgram(objectives_config(LEAN[name]), mesh(8, 1), "shard_map",
                           lp.Dims(128, 128, 64))
  elements, shape = lp.largest_buffer(program.compile(BIG_BATCH))
  assert elements < BIG_BATCH * BIG_BATCH, shape
  if name == "siglip":
    assert elements < (BIG_BATCH // 8) * BIG_BATCH, shape


def test_buffer_check_sees_the_global_siglip_matrix():
  """The same check on the global computation finds SigLIP's B_local x B logits."""
  program = lp.LossProgram(objectives_config(LEAN["siglip"]), mesh(8, 1), "global",
                           lp.Dims(128, 128, 64))
  elements, _ = lp.largest_buffer(program.compile(BIG_BATCH))
  assert elements >= (BIG_BATCH // 8) * BIG_BATCH
