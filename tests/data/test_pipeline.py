"""The training stream on the embedded data: batch k is a pure function of (seed, k), so
resuming is exact."""

import jax
import numpy as np
from ml_collections import ConfigDict

from configs import clip as clip_config
from lang_image import parallel
from lang_image.data import pipeline


def open_tiny(data_dir):
  config = clip_config.get_config("batch=64,data=shapes")
  config.data.update(variant="tiny", data_dir=data_dir)
  return config, pipeline.open_for(config)


def stream(config, dataset, start=0, seed=0, batch=64):
  mesh = parallel.make_mesh(ConfigDict(dict(data=2, fsdp=4)))
  return pipeline.TrainStream(dataset, config.data, batch, parallel.batch_sharding(mesh), seed,
                              state={"next_batch": start} if start else None)


def test_restarted_stream_continues_exactly(tiny_data_dir):
  config, dataset = open_tiny(tiny_data_dir)
  uninterrupted = [jax.device_get(next(stream_)) for stream_ in [stream(config, dataset)]
                   for _ in range(6)]
  resumed = stream(config, dataset, start=4)
  for expected in uninterrupted[4:]:
    got = jax.device_get(next(resumed))
    np.testing.assert_array_equal(got["image"], expected["image"])
    np.testing.assert_array_equal(got["text"], expected["text"])
  assert resumed.position == 6


def test_batches_are_sharded_and_epochs_reshuffle(tiny_data_dir):
  config, dataset = open_tiny(tiny_data_dir)
  s = stream(config, dataset)
  batch = next(s)
  assert batch["image"].shape == (64, 64, 64, 3) and batch["image"].dtype == np.uint8
  assert batch["text"].shape == (64, config.model.max_len)
  assert len(batch["image"].sharding.device_set) == 8
  # With batch 16 an epoch of the tiny train split (2,000) is a whole number of batches, so
  # batches k and k + per_epoch cover the same positions of consecutive epochs.
  small = stream(config, dataset, batch=16)
  per_epoch = len(dataset.source("train")) // 16
  assert per_epoch * 16 == len(dataset.source("train"))
  for k in (0, 7):
    assert not np.array_equal(small.local_batch_at(16 * k)[0]["image"],
                              small.local_batch_at(16 * (k + per_epoch))[0]["image"])
  other_seed = stream(config, dataset, seed=1, batch=16).local_batch_at(0)[0]
  assert not np.array_equal(small.local_batch_at(0)[0]["image"], other_seed["image"])
