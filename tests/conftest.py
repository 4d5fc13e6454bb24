"""Eight simulated CPU devices for every test and the session's persistent compilation cache
(both set before jax is imported)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import subprocess  # noqa: E402
import types  # noqa: E402

import pytest  # noqa: E402

import cli_runs  # noqa: E402

for _name, _value in cli_runs.COMPILE_CACHE_ENV.items():  # before jax is imported
  os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """The embedded dataset's 'tiny' variant and its tokenizer, generated once per session."""
  from lang_image.data import shapes_tfds
  from lang_image.data.sources import shapes_source
  path = str(tmp_path_factory.mktemp("data"))
  shapes_tfds.prepare(path, "tiny")
  shapes_source.shapes_tokenizer(path, "tiny", 1000)
  return path


@pytest.fixture(scope="session")
def tiny_scenes_dir(tmp_path_factory):
  """The scenes benchmark's 'tiny' variant and its tokenizer, generated once per session."""
  from lang_image.data import scenes_tfds
  from lang_image.data.sources import scenes_source
  path = str(tmp_path_factory.mktemp("scenes"))
  scenes_tfds.prepare(path, "tiny")
  scenes_source.scenes_tokenizer(path, "tiny", 1000)
  return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_data_dir):
  """One finished training run from the command line, shared by the tests that need a trained
  model: CLIP, 60 steps on the tiny data, 1 device, checkpoints and evaluations at steps 30
  and 60, two captions per image for retrieval. `.workdir`, `.result` (CompletedProcess)."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  result = subprocess.run(
      cli_runs.train_command(workdir, tiny_data_dir, "--config.checkpoint_every=30",
                             "--config.eval_every=30", "--config.eval.captions_per_image=2"),
      env=cli_runs.env(), capture_output=True, text=True, timeout=900)
  return types.SimpleNamespace(workdir=workdir, result=result)
