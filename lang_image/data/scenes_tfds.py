"""The scenes dataset (see `scenes`) as a TFDS builder in array_record, kept per version.

The builder's files live under DATA_DIR/scenes-<version>/, where the version is a hash of
the generator's source and parameters (`scenes.version()`): a changed generator writes a new
directory instead of reading a stale one. Nothing is downloaded; rendering runs in worker
processes where there are several cores (shapes_tfds.worker_pool).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from lang_image import progress  # noqa: E402
from lang_image.data import scenes, shapes_tfds  # noqa: E402

NAME = "lang_image_scenes"
_CHUNK = 400


class LangImageScenes(tfds.core.GeneratorBasedBuilder):
  """Scenes of one to four textured shapes, each with a web-like caption and its labels."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Versions of the generator are told apart by the directory."}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="default", description="~40k training scenes."),
      tfds.core.BuilderConfig(name="tiny", description="A few thousand scenes, for tests."),
  ]
  DEFAULT_CONFIG_NAME = "default"
  _render_pool = None  # Set by `prepare` for the duration of the generation.

  def _info(self) -> tfds.core.DatasetInfo:
    size = scenes.IMAGE_SIZE
    labels = {name: np.int32 for name in scenes.STORED_LABELS}
    return self.dataset_info_from_configs(
        description=scenes.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
            "caption": tfds.features.Text(),
            "held_out": np.bool_,
            **labels,
        }),
        # Record i of a split is scenes.generate(split, i).
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is rendered locally.
    return {split: self._generate_examples(split) for split in scenes.SPLITS}

  def _generate_examples(self, split: str):
    n = scenes.SPLIT_SIZES[self.builder_config.name][split]
    chunks = [(split, start, min(start + _CHUNK, n)) for start in range(0, n, _CHUNK)]
    index = 0
    counter = getattr(self, "_counter", None)
    for examples in shapes_tfds.render_chunks(self._render_pool, scenes.encoded_examples,
                                              chunks):
      for example in examples:
        yield index, example
        index += 1
      if counter is not None:
        counter.add(len(examples))


def versioned_dir(data_dir: str) -> str:
  """Where this version of the generator keeps its data under `data_dir`."""
  return os.path.join(data_dir, f"scenes-{scenes.version()}")


def _builder(data_dir: str, config: str) -> LangImageScenes:
  return LangImageScenes(config=config, data_dir=versioned_dir(data_dir),
                         file_format="array_record")


def prepare(data_dir: str, config: str = "default") -> tfds.core.DatasetBuilder:
  """The builder for `config` under `data_dir`, generated there on first use (in at most a
  minute for 'default' on two cores, a few seconds for 'tiny'). Never touches the network."""
  if config not in scenes.SPLIT_SIZES:
    raise ValueError(f"unknown scenes variant {config!r}; use one of "
                     f"{list(scenes.SPLIT_SIZES)} (config.data.variant).")
  with shapes_tfds.quiet():
    builder = _builder(data_dir, config)
    if builder.is_prepared():
      return builder
  download_config = tfds.download.DownloadConfig(
      try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP)
  counter = progress.Counter(sum(scenes.SPLIT_SIZES[config].values()), "scenes rendered")
  with progress.phase(f"Generating {NAME}/{config} in {versioned_dir(data_dir)} (one-off)",
                      counter), shapes_tfds.quiet(), shapes_tfds.worker_pool() as pool:
    builder._render_pool = pool  # pylint: disable=protected-access
    builder._counter = counter  # pylint: disable=protected-access
    builder.download_and_prepare(download_config=download_config, file_format="array_record")
  return _builder(data_dir, config)
