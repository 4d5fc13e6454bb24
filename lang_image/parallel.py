"""Device mesh and shardings, declared as data.

The mesh has axes ('data', 'fsdp'). The batch is split over both axes (every device holds
B / n_devices pairs). Parameters and optimizer state are sharded by `STATE_RULES`: the
first rule whose regex matches a leaf's path decides; 'fsdp' shards the leaf's largest
dimension that the fsdp axis divides, 'replicate' keeps a full copy on every device.
"""

from __future__ import annotations

import math
import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lang_image.errors import ConfigError

AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")

# Small leaves (norms, biases, scales) are not worth splitting.
STATE_RULES = (
    (r".*(norm|scale|bias).*", "replicate"),
    (r".*", "fsdp"),
)
MIN_FSDP_SIZE = 2 ** 14


def mesh_shape(mesh_cfg, device_count: int) -> tuple[int, int]:
  """Resolves `config.mesh` (data, fsdp; -1 means 'the rest') against the device count."""
  sizes = {"data": int(mesh_cfg.data), "fsdp": int(mesh_cfg.fsdp)}
  free = [k for k, v in sizes.items() if v == -1]
  if len(free) > 1:
    raise ConfigError("config.mesh has -1 for more than one axis; give explicit sizes for all "
                      "but one of 'data' and 'fsdp'.")
  if any(v == 0 or v < -1 for v in sizes.values()):
    raise ConfigError(f"config.mesh sizes must be positive or -1, got {sizes}.")
  fixed = math.prod(v for v in sizes.values() if v != -1)
  if free:
    if device_count % fixed:
      raise ConfigError(f"config.mesh {sizes} cannot cover {device_count} devices: "
                        f"{device_count} is not divisible by {fixed}; change the mesh sizes.")
    sizes[free[0]] = device_count // fixed
  if sizes["data"] * sizes["fsdp"] != device_count:
    raise ConfigError(f"config.mesh {sizes} uses {sizes['data'] * sizes['fsdp']} devices but "
                      f"{device_count} are present; make data * fsdp equal {device_count} "
                      "or use -1 for one axis.")
  return sizes["data"], sizes["fsdp"]


def make_mesh(mesh_cfg, devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  shape = mesh_shape(mesh_cfg, len(devices))
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
