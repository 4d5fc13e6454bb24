"""Checkpoint checksums (lang_image/checkpoint_integrity.py) and what restore does with a
checkpoint whose bytes or values went bad: skipped with one warning, for the one before."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import damage
from checkpoint_fixtures import (assert_bitwise, pico_towers, restore_warns, states, trainer,  # noqa: F401
                                 two_checkpoints)
from lang_image import checkpoint, checkpoint_integrity as integrity
from lang_image.errors import TrainingError

M32 = (1 << 32) - 1


def reference_checksum(x: np.ndarray) -> str:
  """The checksum of the module docstring, in Python integers: words = the element bits as
  unsigned integers of their item size; key_i = words_i * 0x9E3779B1 + i * 0x27D4EB2F;
  lane = sum over i of fmix32(key_i + seed) modulo 2**32, for two seeds."""
  unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize]
  words = x.astype(np.uint8) if x.dtype == bool else x.view(unsigned)

  def fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)

  lanes = []
  for seed in (0x243F6A88, 0x85A308D3):
    total = 0
    for i, w in enumerate(words.ravel().tolist()):
      total += fmix32((int(w) * 0x9E3779B1 + i * 0x27D4EB2F + seed) & M32)
    lanes.append(total & M32)
  return f"{lanes[0]:08x}{lanes[1]:08x}"


def test_checksums_follow_the_math_ignore_the_sharding_and_see_one_flipped_bit():
  rng = np.random.default_rng(0)
  tree = {"f32": rng.normal(size=(8, 6)).astype(np.float32),
          "bf16": rng.normal(size=(3, 4)).astype(jnp.bfloat16),
          "i8": rng.integers(-128, 127, size=(9,)).astype(np.int8),
          "flags": rng.random(5) > 0.5,
          "key": rng.integers(0, 2**32, size=(2,), dtype=np.uint32)}
  summarizer = integrity.Summarizer()
  checksums, nonfinite = summarizer.summarize(jax.tree.map(jnp.asarray, tree))
  assert nonfinite == []
  assert checksums == {name: reference_checksum(np.asarray(x)) for name, x in tree.items()}

  # Spread over 8 devices, either axis: the same checksums.
  mesh = jax.make_mesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
  for spec in (P("d", None), P(None, "d")):
    big = rng.normal(size=(8, 16)).astype(np.float32)
    sharded = jax.device_put(big, NamedSharding(mesh, spec))
    assert summarizer.summarize({"w": sharded})[0] == {"w": reference_checksum(big)}

  # One flipped bit, and two sign bits flipped at an even distance, change the checksum.
  flipped = tree["f32"].copy()
  flipped.view(np.uint32)[3, 2] ^= 1
  signs = tree["f32"].copy()
  signs[0, 0], signs[0, 2] = -signs[0, 0], -signs[0, 2]
  for changed in (flipped, signs):
    assert summarizer.summarize({"f32": jnp.asarray(changed)})[0]["f32"] != checksums["f32"]

  # Non-finite floats are named; integers never are.
  bad = dict(tree, f32=tree["f32"].copy(), bf16=tree["bf16"].copy())
  bad["f32"][1, 1], bad["bf16"][0, 0] = np.nan, np.inf
  assert summarizer.summarize(jax.tree.map(jnp.asarray, bad))[1] == ["bf16", "f32"]


def test_4_kib_overwritten_inside_the_newest_checkpoint_is_caught_by_its_checksums(
    trainer, states, tmp_path, caplog):
  ckpts = two_checkpoints(tmp_path, states)
  newest = os.path.join(ckpts, "2")
  # Orbax alone restores the damaged state without a word: values changed silently.
  changed = damage.overwrite_4_kib_silently(str(tmp_path), 2)

  state, data, warnings = restore_warns(trainer, tmp_path, caplog)
  assert data == {"next": 1}
  assert_bitwise(state, states[0])
  assert len(warnings) == 1, warnings
  assert warnings[0].startswith(f"Checkpoint {newest} failed its integrity check: "), warnings
  assert (f"{len(changed)} of its {len(jax.tree.leaves(states[1]))} arrays no longer "
          f"match{'es' if len(changed) == 1 else ''} the checksum saved with") in warnings[0]
  assert all(name in warnings[0] for name in changed[:3]), (changed, warnings)
  assert warnings[0].endswith(
      "; skipping it for an older one."), warnings


def test_a_restored_state_holding_nan_is_skipped_like_a_damaged_one(trainer, states, tmp_path,
                                                                     caplog):
  ckpts = two_checkpoints(tmp_path, states)
  # Step 2 rewritten as a version that saved any state would have: intact bytes, checksums
  # that match, an optimizer array holding NaN.
  poisoned = jax.tree.map(lambda x: x, states[1])
  leaf_path, leaf = jax.tree_util.tree_leaves_with_path(poisoned["opt_state"])[1]
  name = "opt_state/" + integrity.array_name(leaf_path)
  poisoned["opt_state"] = jax.tree_util.tree_map_with_path(
      lambda p, x: x.at[(0,) * x.ndim].set(jnp.nan) if p == leaf_path else x,
      poisoned["opt_state"])
  checksums, nonfinite = integrity.Summarizer().summarize(poisoned)
  assert nonfinite == [name]
  manager = ocp.CheckpointManager(ckpts)
  manager.delete(2)
  manager.save(2, args=ocp.args.Composite(
      state=ocp.args.StandardSave(poisoned), data=ocp.args.JsonSave({"next": 2}),
      integrity=ocp.args.JsonSave(integrity.record(checksums, {"next": 2}, 0))))
  manager.wait_until_finished()
  manager.close()

  state, data, warnings = restore_warns(trainer, tmp_path, caplog)
  assert data == {"next": 1}
  assert_bitwise(state, states[0])
  total = len(jax.tree.leaves(states[0]))
  assert warnings == [f"Checkpoint {os.path.join(ckpts, '2')} holds NaN or infinite values in "
                      f"1 of its {total} arrays ({name}); skipping it for an older one."]


def test_a_state_holding_nan_is_never_saved(trainer, states, tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=1, keep=3)
  assert ckpt.maybe_save(1, states[0], {"next": 1})
  bad = dict(states[1], params=jax.tree.map(lambda x: x * jnp.inf, states[1]["params"]))
  with pytest.raises(TrainingError) as info:
    ckpt.maybe_save(2, bad, {"next": 2}, force=True)
  message = str(info.value)
  assert message.startswith("the state at step 2 holds NaN or infinite values (params/"), message
  assert message.endswith(f"then rerun to resume from checkpoint step 1 ("
                          f"{os.path.join(ckpt.directory, '1')}), the newest, saved while "
                          "training was finite."), message
  ckpt.close()
  assert sorted(os.listdir(ckpt.directory)) == ["1"]
