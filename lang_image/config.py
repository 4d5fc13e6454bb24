"""Config helpers: compact arg strings and validation before anything compiles.

A config file's `get_config(arg)` receives the text after the colon in
`--config=configs/clip.py:model=B/16,batch=4096`; `parse_arg` turns it into typed values.
`validate` checks a finished config against the machine and raises `ConfigError` with one
sentence that names the problem and the fix.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import uuid

import jax
import ml_collections

from lang_image import objectives, parallel, storage
from lang_image.data import checks as data_checks
from lang_image.errors import ConfigError
from lang_image.interop import pretrained
from lang_image.models import checks as model_checks


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
    values[key] = convert(key, raw.strip(), defaults[key])
  return values


def _did_you_mean(name: str, known) -> str:
  """A "did you mean 'x'? " hint naming the known name closest to `name`, or ""."""
  close = difflib.get_close_matches(name, list(known), n=1)
  return f"did you mean '{close[0]}'? " if close else ""


def convert(key, raw, default):
  """`raw` (a command-line string) as the type of `default`; ConfigError if it is not one."""
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


def validate(config, workdir: str | None, device_count: int | None = None,
             platform: str | None = None) -> None:
  """Raises ConfigError on the first problem found; compiles nothing.

  The run's own fields (mesh, batch, loop, optimizer) are checked here; each part of the
  config by the package that uses it. `device_count` and `platform` ('cpu', 'gpu', 'tpu')
  describe the devices the run will use (default: jax's).
  """
  device = None
  if device_count is None or platform is None:
    device = jax.devices()[0]
    device_count = jax.device_count() if device_count is None else device_count
    platform = device.platform if platform is None else platform
  if config.init:
    # The model and tokenizer fields become those of the weights named by config.init.
    pretrained.configure(config)
  _check_run(config, device_count)
  objectives.check_config(config.objectives)
  model_checks.check_config(config.model, platform, device)
  data_checks.check_config(config.data)
  if workdir is not None:
    _check_workdir(workdir)


def _check_run(config, device_count: int) -> None:
  if config.batch_size <= 0:
    raise ConfigError(f"config.batch_size must be a positive number of pairs, got "
                      f"{config.batch_size}; pass batch=N in the config argument or "
                      "--config.batch_size=N.")
  data, fsdp = parallel.mesh_shape(config.mesh, device_count)
  if config.batch_size % (data * fsdp):
    raise ConfigError(f"global batch {config.batch_size} is not divisible by the {data * fsdp} "
                      f"data-parallel devices (mesh data={data}, fsdp={fsdp}); pick a batch "
                      f"that is a multiple of {data * fsdp}.")
  microbatches = int(config.microbatches)
  if microbatches < 1 or config.batch_size % (data * fsdp * microbatches):
    raise ConfigError(f"config.microbatches={microbatches} does not split the global batch "
                      f"{config.batch_size} evenly over the {data * fsdp} devices; pick "
                      f"microbatches >= 1 dividing {config.batch_size // (data * fsdp)}.")
  if config.loss_impl not in objectives.LOSS_IMPLS:
    raise ConfigError(f"unknown config.loss_impl {config.loss_impl!r}; use one of "
                      f"{list(objectives.LOSS_IMPLS)}.")
  if config.total_steps <= 0:
    raise ConfigError(f"config.total_steps must be positive, got {config.total_steps}.")
  for name, least in (("log_every", 1), ("checkpoint_every", 0), ("keep_checkpoints", 1),
                      ("eval_every", 0), ("max_nonfinite_steps", 0)):
    if int(config[name]) < least:
      raise ConfigError(f"config.{name} must be at least {least}, got {config[name]}.")
  if not (math.isfinite(config.optim.lr) and config.optim.lr > 0):
    raise ConfigError(f"config.optim.lr must be a positive finite number, got {config.optim.lr}.")


def _check_workdir(workdir: str) -> None:
  """The workdir can be written: a local folder, or a URL of a storage Orbax writes
  checkpoints to (lang_image.storage); a probe file is written and removed."""
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
    convert(name, value, node)
  except ConfigError:
    return (f"--config.{name}={value} is not a valid {type(node).__name__} "
            f"(the default is {node!r}).")
  return None
