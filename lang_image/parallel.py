"""Device mesh and shardings, declared as data.

The mesh has axes ('data', 'fsdp'). The batch is split over both axes (every device holds
B / n_devices pairs). Parameters and optimizer state are sharded by `STATE_RULES`: the
first rule whose regex matches a leaf's path decides; 'fsdp' shards the leaf's largest
dimension that the fsdp axis divides, 'replicate' keeps a full copy on every device.
"""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lang_image import config as config_lib

AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")

# Small leaves (norms, biases, scales) are not worth splitting.
STATE_RULES = (
    (r".*(norm|scale|bias).*", "replicate"),
    (r".*", "fsdp"),
)
MIN_FSDP_SIZE = 2 ** 14


def make_mesh(mesh_cfg, devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  shape = config_lib.mesh_shape(mesh_cfg, len(devices))
  return Mesh(np.asarray(devices).reshape(shape), AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def leaf_spec(path: str, shape: tuple[int, ...], fsdp_size: int, rules=STATE_RULES) -> P:
  for pattern, action in rules:
    if re.fullmatch(pattern, path):
      break
  else:
    action = "replicate"
  if action == "replicate" or fsdp_size == 1 or int(np.prod(shape)) < MIN_FSDP_SIZE:
    return P()
  # Largest dimension first; ties go to the earliest so the choice is stable.
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def state_shardings(mesh: Mesh, state, rules=STATE_RULES):
  """NamedShardings for every leaf of a train-state pytree (arrays or ShapeDtypeStructs)."""
  fsdp_size = mesh.shape["fsdp"]

  def one(path, leaf):
    name = ".".join(_key_str(k) for k in path)
    return NamedSharding(mesh, leaf_spec(name, tuple(np.shape(leaf)), fsdp_size, rules))

  return jax.tree_util.tree_map_with_path(one, state)


def _key_str(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)
