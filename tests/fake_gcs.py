"""A gs:// bucket on local disk, for offline tests of cloud workdirs.

    LANG_IMAGE_FAKE_GCS_ROOT=/tmp/store python tests/fake_gcs.py main.py --workdir=gs://b/run ...

runs a script with every `gs://bucket/key` it touches stored at `/tmp/store/bucket/key`. What
is replaced is only the transport at the bottom of each library, the layer that would speak to
Google Cloud Storage; everything above it takes its real gs:// code path:

  etils.epath (lang_image.storage, clu, Orbax's metadata and step directories): epath's fsspec
      backend (EPATH_USE_TF=false), as on machines without TensorFlow, with this module's
      filesystem registered for the 'gs' protocol where gcsfs would be;
  Orbax's arrays: Orbax builds its tensorstore 'gcs' kvstore spec for the path, and this
      module turns it into a 'file' spec on the same key under the store;
  the google-cloud-storage client, which Orbax asks whether a bucket has a hierarchical
      namespace: a stand-in module whose buckets have none;
  TensorBoard event files (tf.summary, whose gs:// goes to TensorFlow's C++ GCS client): the
      file writer is given the key's place in the store.

Like GCS, the bucket has no append: opening an object for appending fails.
"""

from __future__ import annotations

import os
import runpy
import sys
import types

ROOT_ENV = "LANG_IMAGE_FAKE_GCS_ROOT"


def local(url: str) -> str:
  """The store's file for 'gs://bucket/key'."""
  rest = str(url).split("://", 1)[1]
  return os.path.join(os.environ[ROOT_ENV], rest)


def _key(local_path: str) -> str:
  """The inverse of `local`, without the scheme: 'bucket/key'."""
  return os.path.relpath(local_path, os.environ[ROOT_ENV])


def _filesystem_class():
  from fsspec.implementations.local import LocalFileSystem

  class FakeGcsFileSystem(LocalFileSystem):
    protocol = ("gs", "gcs")
    root_marker = ""

    def __init__(self, *args, finalize_on_close=True, **kwargs):
      del finalize_on_close  # gcsfs's option, which epath passes.
      super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
      path = os.fspath(path)
      if path.startswith(("gs://", "gcs://")):
        return local(path).rstrip("/") or "/"
      return super()._strip_protocol(path)

    def glob(self, path, **kwargs):
      # Like gcsfs, names come back as 'bucket/key' (epath puts 'gs://' before them).
      return [_key(p) for p in super().glob(path, **kwargs)]

    def walk(self, path, *args, **kwargs):
      for root, dirs, files in super().walk(path, *args, **kwargs):
        yield _key(root), dirs, files

    def _open(self, path, mode="rb", **kwargs):
      if "a" in mode:
        raise OSError(f"{path}: GCS objects cannot be appended to")
      return super()._open(path, mode=mode, **kwargs)

  return FakeGcsFileSystem


def install() -> None:
  """Routes gs:// to the store (module docstring); call before anything opens a gs:// path."""
  if not os.environ.get(ROOT_ENV):
    raise SystemExit(f"{ROOT_ENV} is not set: give the directory that holds the buckets.")
  os.environ["EPATH_USE_TF"] = "false"
  import fsspec
  cls = _filesystem_class()
  for protocol in cls.protocol:
    fsspec.register_implementation(protocol, cls, clobber=True)

  import google.cloud
  client = types.ModuleType("google.cloud.storage")

  class Client:
    def get_bucket(self, name):
      return types.SimpleNamespace(name=name, hierarchical_namespace_enabled=False)
  client.Client = Client
  sys.modules["google.cloud.storage"] = client
  google.cloud.storage = client

  from orbax.checkpoint._src.path import gcs_utils

  def kvstore_for_gcs(ckpt_path: str) -> dict:
    return {"driver": "file", "path": local(ckpt_path)}
  gcs_utils.get_kvstore_for_gcs = kvstore_for_gcs

  import tensorflow as tf
  create = tf.summary.create_file_writer

  def create_file_writer(logdir, *args, **kwargs):
    logdir = os.fspath(logdir)
    if logdir.startswith("gs://"):
      logdir = local(logdir)
    return create(logdir, *args, **kwargs)
  tf.summary.create_file_writer = create_file_writer


if __name__ == "__main__":
  install()
  script = sys.argv[1]
  sys.argv = sys.argv[1:]
  sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
  runpy.run_path(script, run_name="__main__")
