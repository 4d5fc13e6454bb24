"""Eight simulated CPU devices for every test (set before jax is imported)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """The embedded dataset's 'tiny' variant and its tokenizer, generated once per session."""
  from lang_image.data import shapes_tfds, tokenizer
  path = str(tmp_path_factory.mktemp("data"))
  shapes_tfds.prepare(path, "tiny")
  tokenizer.shapes_tokenizer(path, "tiny", 1000)
  return path
