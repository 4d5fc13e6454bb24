"""Config helpers: compact arg strings and validation before anything compiles.

A config file's `get_config(arg)` receives the text after the colon in
`--config=configs/clip.py:model=B/16,batch=4096`; `parse_arg` turns it into typed values.
`validate` checks a finished config against the machine and raises `ConfigError` with one
sentence that names the problem and the fix.
"""

from __future__ import annotations

import math
import os
import uuid

import ml_collections


# How the objective's loss runs over the mesh (lang_image/objectives/global_batch.py).
LOSS_IMPLS = ("shard_map", "global")


# config.data.pp by kind of data: the embedded images are stored at the small model's size
# (the model resizes them), real images get CLIP's mild random crop.
DEFAULT_PP = {
    "shapes": "decode|choose_caption|tokenize",
    "files": "decode|random_resized_crop(scale=(0.9, 1.0))|choose_caption|tokenize",
}


class ConfigError(ValueError):
  """A user-fixable problem with the config or the environment."""


class TrainingError(RuntimeError):
  """Training cannot go on (the loss stays non-finite, the disk is full); one sentence."""


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses 'k1=v1,k2=v2' into a ConfigDict typed like `defaults`."""
  values = ml_collections.ConfigDict(defaults)
  if not arg:
    return values
  for item in arg.split(","):
    if not item.strip():
      continue
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep:
      raise ConfigError(f"config argument '{item}' has no '=': write it as key=value, "
                        f"with keys among {sorted(defaults)}.")
    if key not in defaults:
      raise ConfigError(f"unknown config argument '{key}'; {_did_you_mean(key, defaults)}"
                        f"the known ones are {sorted(defaults)}.")
    values[key] = _convert(key, raw.strip(), defaults[key])
  return values


def _did_you_mean(name: str, known) -> str:
  """A "did you mean 'x'? " hint naming the known name closest to `name`, or ""."""
  import difflib
  close = difflib.get_close_matches(name, list(known), n=1)
  return f"did you mean '{close[0]}'? " if close else ""


def _convert(key, raw, default):
  kind = type(default)
  try:
    if kind is bool:
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(raw)
      return raw.lower() in ("true", "1")
    return kind(raw)
  except ValueError:
    raise ConfigError(f"config argument {key}={raw!r} is not a valid {kind.__name__}; "
                      f"give a value like {default!r}.") from None


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


def default_data_dir() -> str:
  return os.environ.get("LANG_IMAGE_DATA_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "lang_image"))


def validate(config, workdir: str | None, device_count: int | None = None,
             platform: str | None = None) -> None:
  """Raises ConfigError on the first problem found; compiles nothing. `device_count` and
  `platform` ('cpu', 'gpu', 'tpu') describe the devices the run will use (default: jax's)."""
  # Imported here so that reading a config file stays cheap.
  from lang_image import objectives
  from lang_image.models import attention_kernels, variants

  device = None
  if device_count is None or platform is None:
    import jax
    device = jax.devices()[0]
    device_count = jax.device_count() if device_count is None else device_count
    platform = device.platform if platform is None else platform
  if config.get("init"):
    # The model and tokenizer fields become those of the weights named by config.init.
    from lang_image.interop import init as interop_init
    interop_init.configure(config)
  from lang_image.models.pretrainer import IMAGE_NORMS
  if config.model.get("image_norm", "minus_one_one") not in IMAGE_NORMS:
    raise ConfigError(f"unknown config.model.image_norm {config.model.image_norm!r}; use one "
                      f"of {list(IMAGE_NORMS)}.")
  data, fsdp = mesh_shape(config.mesh, device_count)
  if config.batch_size <= 0 or config.batch_size % (data * fsdp):
    raise ConfigError(f"global batch {config.batch_size} is not divisible by the {data * fsdp} "
                      f"data-parallel devices (mesh data={data}, fsdp={fsdp}); pick a batch "
                      f"that is a multiple of {data * fsdp}.")
  microbatches = int(config.get("microbatches", 1))
  if microbatches < 1 or config.batch_size % (data * fsdp * microbatches):
    raise ConfigError(f"config.microbatches={microbatches} does not split the global batch "
                      f"{config.batch_size} evenly over the {data * fsdp} devices; pick "
                      f"microbatches >= 1 dividing {config.batch_size // (data * fsdp)}.")
  if config.get("loss_impl", "shard_map") not in LOSS_IMPLS:
    raise ConfigError(f"unknown config.loss_impl {config.loss_impl!r}; use one of "
                      f"{list(LOSS_IMPLS)}.")
  if config.total_steps <= 0:
    raise ConfigError(f"config.total_steps must be positive, got {config.total_steps}.")
  for name, least in (("log_every", 1), ("checkpoint_every", 0), ("keep_checkpoints", 1),
                      ("eval_every", 0), ("max_nonfinite_steps", 0)):
    if int(config.get(name, least)) < least:
      raise ConfigError(f"config.{name} must be at least {least}, got {config[name]}.")
  if not (math.isfinite(config.optim.lr) and config.optim.lr > 0):
    raise ConfigError(f"config.optim.lr must be a positive finite number, got {config.optim.lr}.")
  objectives.check_config(config.objectives)
  try:
    vit = variants.parse_vit(config.model.image)
    variants.parse_text(config.model.text)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  from lang_image.models import layers, two_tower
  if config.model.dtype not in two_tower.DTYPES:
    raise ConfigError(f"unknown config.model.dtype {config.model.dtype!r}; use one of "
                      f"{list(two_tower.DTYPES)}.")
  if config.model.get("matmul_precision", "default") not in layers.MATMUL_PRECISIONS:
    raise ConfigError(f"unknown config.model.matmul_precision {config.model.matmul_precision!r}; "
                      f"use one of {list(layers.MATMUL_PRECISIONS)}.")
  if config.model.get("remat", "none") not in layers.REMAT_POLICIES:
    raise ConfigError(f"unknown config.model.remat {config.model.remat!r}; use one of "
                      f"{list(layers.REMAT_POLICIES)}.")
  try:
    attention_kernels.check(config.model, platform, device)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if config.model.image_size % vit.patch:
    raise ConfigError(f"image size {config.model.image_size} is not divisible by patch "
                      f"{vit.patch} of '{config.model.image}'; change config.model.image_size.")
  if config.model.get("image_stem") == "conv" and vit.patch & (vit.patch - 1):
    raise ConfigError(f"the conv image stem needs a power-of-two patch, and "
                      f"'{config.model.image}' has {vit.patch}; set "
                      "config.model.image_stem='patch' or pick patch 8, 16 or 32.")
  _check_data_dir(config.data.data_dir)
  _check_data(config.data)
  if workdir is not None:
    _check_workdir(workdir)


def _check_data(data_cfg) -> None:
  """The data spec and preprocessing parse (the sources are opened, and so checked, later
  but still before anything compiles)."""
  from lang_image.data import ops, pipeline
  from lang_image.data.sources import SCHEMES
  for spec, _ in pipeline.parse_mixture(data_cfg.name):
    scheme = spec.partition(":")[0]
    if spec != "shapes" and (":" not in spec or scheme not in SCHEMES):
      raise ConfigError(f"config.data.name '{spec}' names no known data: use 'shapes' or a "
                        f"source with one of the schemes {list(SCHEMES)}, e.g. "
                        "wds:/data/{00000..00099}.tar or csv:/data/train.csv.")
  ops.parse(data_cfg.get("pp") or pipeline.default_pp(data_cfg.name))
  if int(data_cfg.get("threads", 1)) < 1:
    raise ConfigError(f"config.data.threads must be at least 1, got {data_cfg.threads}.")


def _check_data_dir(path: str) -> None:
  if not path:  # The default cache directory is created on first use.
    return
  from lang_image import storage
  try:
    storage.check(path, "config.data.data_dir")
  except storage.StorageError as e:
    raise ConfigError(str(e)) from None
  if storage.is_remote(path):
    return  # Created on first use, like the default; a missing bucket fails then.
  if not os.path.isdir(path):
    raise ConfigError(f"data directory '{path}' does not exist; create it, point "
                      "config.data.data_dir at the right place, or leave it empty for the "
                      "default cache.")
  if not os.access(path, os.R_OK | os.X_OK):
    raise ConfigError(f"data directory '{path}' is not readable; fix its permissions or "
                      "choose another config.data.data_dir.")


def _check_workdir(workdir: str) -> None:
  """The workdir can be written: a local folder, or a URL of a storage Orbax writes
  checkpoints to (lang_image.storage); a probe file is written and removed."""
  from lang_image import storage
  try:
    storage.check(workdir, "--workdir")
  except storage.StorageError as e:
    raise ConfigError(str(e)) from None
  scheme = storage.scheme(workdir)
  if scheme is not None and scheme not in storage.CHECKPOINT_SCHEMES:
    raise ConfigError(f"--workdir '{workdir}' is on {scheme}://, where Orbax cannot write "
                      "checkpoints (it writes to local paths and gs:// only); use gs:// or a "
                      "local path such as the bucket mounted with a FUSE driver.")
  if scheme == "gs":
    try:
      import google.cloud.storage  # noqa: F401  (Orbax asks it about gs:// buckets)
    except ImportError:
      raise ConfigError(f"--workdir '{workdir}' is on gs://, and Orbax needs the "
                        "google-cloud-storage package there; install it with "
                        "pip install -e '.[gcs]'.") from None
  probe = storage.join(workdir, f".write_probe_{os.getpid()}_{uuid.uuid4().hex[:8]}")
  try:
    storage.write_bytes(probe, b"")
    storage.path(probe).unlink()
  except Exception as e:  # noqa: BLE001 (OSError locally; assorted errors from cloud clients)
    reason = getattr(e, "strerror", None) or (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ConfigError(f"workdir '{workdir}' cannot be written ({reason}); choose a "
                      "writable --workdir.") from None


def load_config_file(spec: str):
  """Loads 'path/to/file.py[:arg]' the way --config does, without applying overrides."""
  import importlib.util
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file '{path}' does not exist; pass e.g. "
                      "--config=configs/clip.py.")
  module_spec = importlib.util.spec_from_file_location("_lang_image_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def explain_override(config, override: str) -> str | None:
  """One sentence for a bad `--config.a.b=value`, or None if the field exists."""
  name, _, value = override.partition("=")
  node, walked = config, []
  for part in name.split("."):
    if not hasattr(node, "keys") or part not in node.keys():
      known = sorted(node.keys()) if hasattr(node, "keys") else []
      where = "config." + ".".join(walked) if walked else "the config"
      return (f"--config.{name} names no field: {where} has no '{part}'; "
              f"{_did_you_mean(part, known)}"
              f"its fields are {known}.")
    node, walked = node[part], walked + [part]
  if hasattr(node, "keys") or isinstance(node, str) or node is None:
    return None
  try:
    _convert(name, value, node)
  except ConfigError:
    return (f"--config.{name}={value} is not a valid {type(node).__name__} "
            f"(the default is {node!r}).")
  return None
