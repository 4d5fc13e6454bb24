"""The shapes dataset (see `shapes`) as a TFDS builder stored in array_record.

array_record gives `tfds.data_source` random access, which the grain input
pipeline needs. Nothing is downloaded: `prepare` renders every example locally
on first use and later calls just reopen the files.
"""

from __future__ import annotations

import collections
from concurrent import futures
import contextlib
import io
import multiprocessing
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import logging  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from lang_image import progress  # noqa: E402
from lang_image.data import shapes  # noqa: E402

NAME = "lang_image_shapes"


class LangImageShapes(tfds.core.GeneratorBasedBuilder):
  """Coloured shapes on light backgrounds, each with an English caption."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="default", description="~50k training scenes."),
      tfds.core.BuilderConfig(name="tiny", description="A few thousand scenes, for tests."),
  ]
  DEFAULT_CONFIG_NAME = "default"
  # Set by `prepare` for the duration of the generation.
  _render_pool: futures.Executor | None = None

  def _info(self) -> tfds.core.DatasetInfo:
    size = shapes.IMAGE_SIZE
    return self.dataset_info_from_configs(
        description=shapes.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
            "caption": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=shapes.CLASSES),
            "n_objects": np.int32,
            "held_out": np.bool_,
        }),
        # Record i of a split is then shapes.generate(split, i): the files can
        # be checked against the generator, and grain shuffles at read time.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is rendered locally.
    return {split: self._generate_examples(split) for split in shapes.SPLITS}

  def _generate_examples(self, split: str):
    # Images arrive as PNG bytes: TFDS's own encoder runs a TF graph per
    # image and is several times slower than PIL.
    n = shapes.SPLIT_SIZES[self.builder_config.name][split]
    chunks = [(split, start, min(start + _CHUNK, n), shapes.DEFAULT_SEED)
              for start in range(0, n, _CHUNK)]
    index = 0
    counter = getattr(self, "_counter", None)
    for examples in render_chunks(self._render_pool, shapes.encoded_examples, chunks):
      for example in examples:
        yield index, example
        index += 1
      if counter is not None:
        counter.add(len(examples))


_CHUNK = 500
# Chunks submitted ahead of the writer: keeps workers busy, bounds memory.
_AHEAD = 16


def render_chunks(pool, render, chunks):
  """`render(*chunk)` for each chunk, in order, by `pool`'s workers if given."""
  done = 0
  if pool is not None:
    pending = collections.deque()
    try:
      for chunk in chunks:
        pending.append(pool.submit(render, *chunk))
        if len(pending) >= _AHEAD:
          yield pending.popleft().result()
          done += 1
      while pending:
        yield pending.popleft().result()
        done += 1
    except futures.process.BrokenProcessPool:
      # E.g. a script without a `__main__` guard, re-run by each spawned
      # worker; the examples do not depend on who renders them.
      logging.warning("Rendering workers failed; continuing in this process.")
  for chunk in chunks[done:]:
    yield render(*chunk)


@contextlib.contextmanager
def worker_pool():
  """Rendering processes, or None where parallelism would not pay."""
  if hasattr(os, "sched_getaffinity"):
    workers = len(os.sched_getaffinity(0))
  else:
    workers = os.cpu_count() or 1
  workers = min(workers, 8)
  if workers < 2:
    yield None
    return
  # Spawned rather than forked: the parent may already run TF or JAX
  # threads, which do not survive a fork.
  context = multiprocessing.get_context("spawn")
  with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
    yield pool


@contextlib.contextmanager
def quiet():
  """Hides TFDS's progress bars, prints and INFO/WARNING chatter."""
  bars = tfds.core.utils.tqdm_utils._active  # pylint: disable=protected-access
  verbosity = logging.get_verbosity()
  tfds.disable_progress_bar()
  logging.set_verbosity(logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    logging.set_verbosity(verbosity)
    tfds.display_progress_bar(bars)


def _builder(data_dir: str, config: str) -> LangImageShapes:
  return LangImageShapes(config=config, data_dir=data_dir, file_format="array_record")


def prepare(data_dir: str, config: str = "default") -> tfds.core.DatasetBuilder:
  """Returns the builder for `config` under `data_dir`, generating it if needed.

  Generation runs once (~25 s for 'default' on two cores, 1 s for 'tiny');
  afterwards this only reads the dataset's metadata. Never touches the network.
  """
  if config not in shapes.SPLIT_SIZES:
    raise ValueError(f"unknown shapes config {config!r}; known: {list(shapes.SPLIT_SIZES)}")
  # Opening an unprepared builder warns about the missing metadata.
  with quiet():
    builder = _builder(data_dir, config)
    if builder.is_prepared():
      return builder
  download_config = tfds.download.DownloadConfig(
      try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP)
  counter = progress.Counter(sum(shapes.SPLIT_SIZES[config].values()), "scenes rendered")
  with progress.phase(f"Generating {NAME}/{config} in {data_dir} (one-off)", counter), \
      quiet(), worker_pool() as pool:
    builder._render_pool = pool  # pylint: disable=protected-access
    builder._counter = counter  # pylint: disable=protected-access
    builder.download_and_prepare(download_config=download_config,
                                 file_format="array_record")
  # A fresh builder reads back the finished metadata (split sizes, shards).
  return _builder(data_dir, config)
