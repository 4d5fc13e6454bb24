"""The training stream: sources -> mixture -> shuffled records -> preprocessing -> batches.

    record r of the global stream = mix(shuffle_e(source_i) repeated, weights)[r]
    process p of n reads records b + p, b + p + n, ...  (disjoint, together every record
                                                         from the base b on)
    each record -> pp ops with a generator seeded by (seed, r) -> a sample, or a skip reason
    the next `batch / n` good samples of process p -> its rows of the global batch

Every record of the global stream is a pure function of (seed, r): grain's `MapDataset`
gives random access to the shuffled, repeated, mixed sources. So the data position is how
many records each process has consumed since the base b, saved with every checkpoint; a
restored run reads on from there and sees exactly the batches an uninterrupted run would have,
shuffling and augmentations included. Restored by another number of processes, the stream
continues at the first record not yet read: the new base is the number of records read
(`continue_from`). A bad sample (unreadable image, missing or empty caption, ...) is
skipped and counted per reason, and the batch is filled from the following records.
"""

from __future__ import annotations

import collections

import grain
import jax
import numpy as np
from absl import logging

from lang_image.errors import ConfigError
from lang_image.data.sources.base import REASONS, BadSample

# How many skipped samples are logged one by one (with their key) per process; the rest only
# count towards data/skipped/<reason>.
LOGGED_SKIPS = 20


class _Guarded:
  """A source whose faulty records come back as {"skipped": reason} instead of raising."""

  def __init__(self, source, index: int):
    self._source, self._index = source, index

  def __len__(self):
    return len(self._source)

  def __getitem__(self, i):
    try:
      record = self._source[i]
    except BadSample as e:
      name = getattr(self._source, "sample_name", None)  # Source.sample_name names the file.
      key = name(i) if name else f"{self._source.name} #{i}"
      return {"skipped": e.reason, "key": key, "detail": e.detail}
    return dict(record, source=self._index)


def records(sources, weights, seed: int, shuffle: bool = True) -> grain.MapDataset:
  """The endless global record stream (a random-access `MapDataset`)."""
  parts = []
  for i, source in enumerate(sources):
    ds = grain.MapDataset.source(_Guarded(source, i))
    if shuffle:
      # Each source reshuffles every epoch; source i takes seed + i.
      ds = ds.seed(seed + i).shuffle()
    parts.append(ds.repeat(None))
  if len(parts) == 1:
    return parts[0]
  return grain.MapDataset.mix(parts, list(weights))


class TrainStream:
  """Endless global batches of {"image", "text"} sharded over the mesh.

  `state()` is this process's data position (JSON); pass it back as `state=` to resume.
  `skipped` counts this process's skipped samples per reason since the run began.
  """

  def __init__(self, dataset, data_cfg, global_batch: int, sharding, seed: int,
               state: dict | None = None, process_index: int | None = None,
               process_count: int | None = None):
    n_proc = jax.process_count() if process_count is None else process_count
    proc = jax.process_index() if process_index is None else process_index
    if global_batch % n_proc:
      raise ConfigError(f"global batch {global_batch} is not divisible by the {n_proc} "
                        "processes; pick a multiple of the process count.")
    self.local_batch = global_batch // n_proc
    self._sharding = sharding
    self._preprocess = dataset.preprocess

    def transform(record, rng):
      if "skipped" in record:
        return record
      try:
        return self._preprocess(record, rng)
      except BadSample as e:
        return {"skipped": e.reason, "key": record.get("key", "?"), "detail": e.detail}

    stream = records(dataset.train_sources, dataset.train_weights, seed,
                     shuffle=data_cfg.shuffle)
    self.base, self.next_record, self.position = 0, 0, 0
    self.skipped = collections.Counter()
    if state:
      self._restore(state, proc, n_proc)
    # Augmentations are seeded by the global record index, so they do not depend on how many
    # processes read the stream.
    self._records = stream.random_map(transform, seed=seed).slice(
        slice(self.base + proc, None, n_proc))
    self._logged = 0
    options = grain.ReadOptions(num_threads=data_cfg.threads,
                                prefetch_buffer_size=data_cfg.prefetch)
    self._iter = iter(self._records.slice(slice(self.next_record, None))
                      .to_iter_dataset(options))

  def _restore(self, state: dict, proc: int, n_proc: int) -> None:
    self.position = int(state.get("next_batch", 0))
    self.base = int(state.get("base", 0))
    processes = state.get("processes")
    if processes is None and "next_record" in state:  # One process's own `state()`.
      processes = [state] * n_proc
    if processes is None:  # A position saved as a batch index only: nothing was skipped.
      self.next_record = self.position * self.local_batch
    elif len(processes) == n_proc:
      mine = processes[proc]
      self.next_record = int(mine["next_record"])
      self.skipped.update({k: int(v) for k, v in mine.get("skipped", {}).items()})
    else:
      self.base, passed_over = continue_from(self.base, [int(p["next_record"])
                                                         for p in processes])
      if proc == 0:  # The run's totals per reason stay what they were.
        for p in processes:
          self.skipped.update({k: int(v) for k, v in p.get("skipped", {}).items()})
      if passed_over:
        logging.warning("The data position was saved by %d processes that had read unequal "
                        "shares, and %d are reading now: the stream continues after the "
                        "furthest record read, passing over %d unread records.",
                        len(processes), n_proc, passed_over)

  def state(self) -> dict:
    """This process's position: records consumed, batches produced, skips per reason."""
    return {"next_batch": self.position, "base": self.base, "next_record": self.next_record,
            "skipped": dict(sorted(self.skipped.items()))}

  def local_batch_at(self, next_record: int) -> tuple[dict, int]:
    """This process's rows of the batch that starts at its record `next_record`, read by
    random access (tests, debugging) -> (batch, the record after it)."""
    samples = []
    while len(samples) < self.local_batch:
      sample = self._records[next_record]
      next_record += 1
      if "skipped" not in sample:
        samples.append(sample)
    return _stack(samples), next_record

  def next_local(self) -> dict:
    """This process's rows of the next batch, as numpy arrays."""
    samples = []
    while len(samples) < self.local_batch:
      sample = next(self._iter)
      self.next_record += 1
      if "skipped" in sample:
        self._skip(sample)
      else:
        samples.append(sample)
    self.position += 1
    return _stack(samples)

  def _skip(self, sample: dict) -> None:
    self.skipped[sample["skipped"]] += 1
    if self._logged < LOGGED_SKIPS:
      self._logged += 1
      logging.warning("Skipped sample %s (%s: %s)%s", sample["key"], sample["skipped"],
                      sample.get("detail", ""),
                      "; later skips are only counted" if self._logged == LOGGED_SKIPS else "")

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    return to_global(self.next_local(), self._sharding)


def _stack(samples: list[dict]) -> dict:
  try:
    return {"image": np.stack([s["image"] for s in samples]),
            "text": np.stack([s["text"] for s in samples])}
  except ValueError:
    shapes = sorted({tuple(np.shape(s["image"])) for s in samples})
    raise ConfigError(f"preprocessed images differ in shape ({shapes[:3]}); end "
                      "config.data.pp's image ops with a fixed-size op such as "
                      "random_resized_crop or resize_small|central_crop.") from None


def to_global(local: dict, sharding) -> dict:
  """Builds global batch-sharded arrays from each process's rows."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def gather_state(stream: TrainStream) -> dict:
  """Every process's position, for the checkpoint (a collective on multi-process runs)."""
  local = stream.state()
  if jax.process_count() == 1:
    processes = [local]
  else:
    from jax.experimental import multihost_utils
    counts = np.asarray([local["next_record"], *(local["skipped"].get(r, 0) for r in REASONS)],
                        np.int64)
    table = np.asarray(multihost_utils.process_allgather(counts))
    processes = [{"next_record": int(row[0]),
                  "skipped": {r: int(n) for r, n in zip(REASONS, row[1:]) if n}}
                 for row in table]
  return {"next_batch": stream.position, "base": stream.base, "processes": processes}


def continue_from(base: int, next_records: list[int]) -> tuple[int, int]:
  """Where a stream read by n processes (process p read records base + p + n k for
  k < next_records[p]) continues when another number of processes takes over
  -> (new base, records passed over unread).

  When the records read are exactly base ... base + T - 1 (each process has read its share of
  a prefix: always so for one process, and for many when skipped samples did not make their
  counts drift apart), the new base is base + T: the next record. Otherwise it is the record
  after the furthest one read, so that none is read twice, and the unread ones before it are
  passed over."""
  n = len(next_records)
  total = sum(next_records)
  end = max((base + p + n * (m - 1) + 1 for p, m in enumerate(next_records) if m > 0),
            default=base)
  return end, end - base - total


def skipped_totals(stream: TrainStream) -> dict:
  """Skipped samples per reason summed over processes, since the run began (a collective on
  multi-process runs): the `data/skipped/<reason>` metrics."""
  counts = np.asarray([stream.skipped.get(r, 0) for r in REASONS], np.int64)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    counts = np.asarray(multihost_utils.process_allgather(counts)).sum(0)
  return {r: int(n) for r, n in zip(REASONS, counts)}
