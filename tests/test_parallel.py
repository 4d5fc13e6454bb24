"""Mesh construction and the sharding rules."""

import jax
import numpy as np
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from lang_image import parallel


def test_mesh_fills_minus_one():
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=4)))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 4}
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)), devices=jax.devices()[:1])
  assert mesh.size == 1


def test_fsdp_rule_shards_largest_divisible_dim():
  assert parallel.leaf_spec("params.towers.image.blocks.0.mlp.fc1.kernel", (256, 1024), 4) == \
      P(None, "fsdp")
  assert parallel.leaf_spec("params.w", (1000, 256), 8) == P("fsdp", None)
  assert parallel.leaf_spec("params.w", (1001, 256), 8) == P(None, "fsdp")
  assert parallel.leaf_spec("params.ln.scale", (1024, 1024), 4) == P()
  assert parallel.leaf_spec("params.w", (256, 1024), 1) == P()
  assert parallel.leaf_spec("params.w", (16, 16), 4) == P()  # too small to split


def test_state_shardings_follow_rules():
  mesh = parallel.make_mesh(ConfigDict(dict(data=2, fsdp=4)))
  state = {"params": {"kernel": np.zeros((128, 256)), "bias": np.zeros((256,))}}
  shardings = parallel.state_shardings(mesh, state)
  assert shardings["params"]["kernel"].spec == P(None, "fsdp")
  assert shardings["params"]["bias"].spec == P()
