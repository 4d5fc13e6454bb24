"""Command lines of training and evaluation runs for the end-to-end tests."""

import atexit
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One persistent XLA compilation cache for a test session: the test processes themselves
# (tests/conftest.py), pytest-xdist's workers and every process a test starts (a resumed run,
# the standalone evaluator, a notebook) reuse what another compiled for the same program and
# devices instead of compiling again. The process that makes the folder removes it at exit;
# xdist's workers inherit its path from the controlling process.
_CACHE_VAR = "LANG_IMAGE_TEST_XLA_CACHE"
if not os.environ.get(_CACHE_VAR):
  os.environ[_CACHE_VAR] = tempfile.mkdtemp(prefix="lang_image_test_xla_cache_")
  atexit.register(shutil.rmtree, os.environ[_CACHE_VAR], True)
COMPILE_CACHE_ENV = {
    "JAX_COMPILATION_CACHE_DIR": os.environ[_CACHE_VAR],
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def train_command(workdir, data_dir, *extra, steps=60, config="clip", log_every=10):
  """main.py on the tiny `shapes` data (conftest's tiny_data_dir) with small settings, plus
  `extra` flags (main.py refuses a flag given twice, so `log_every` is set here)."""
  return [sys.executable, os.path.join(ROOT, "main.py"),
          f"--config={os.path.join(ROOT, 'configs', config + '.py')}"
          f":steps={steps},batch=64,data=shapes",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.data.variant=tiny", f"--config.log_every={log_every}",
          "--config.eval.batch_size=240", *extra]


def env(devices=1):
  """The test environment: `devices` simulated CPU devices, the repo importable, the shared
  compilation cache."""
  e = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
           **COMPILE_CACHE_ENV)
  e["PYTHONPATH"] = ROOT
  return e


def saved_state(workdir, step):
  """A checkpoint's train state as host numpy arrays, whatever mesh wrote it."""
  import jax
  import numpy as np
  import orbax.checkpoint as ocp
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(path)
  tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return checkpointer.restore(path, restore_args=args)


def train_losses(workdir):
  """{step: train/loss} from a run's TensorBoard event files."""
  import glob
  from tensorboard.backend.event_processing import event_accumulator
  import tensorflow as tf
  losses = {}
  for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
    acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    acc.Reload()
    losses.update({e.step: float(tf.make_ndarray(e.tensor_proto))
                   for e in acc.Tensors("train/loss")})
  return losses
