"""The training stream on in-memory sources: exact resume, disjoint hosts, mixtures, skips."""

import collections

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from lang_image import parallel
from lang_image.data import ops, pipeline, stream as stream_lib
from lang_image.data import preprocess as preprocess_lib
from lang_image.data.sources.base import BadSample

LOCAL = 8


class NumberSource:
  """Sample i: an image whose pixels spell (source id, i) and the caption 'sample i'; the
  indices in `bad` raise BadSample with their reason."""

  def __init__(self, n, ident=0, bad=None, size=12):
    self.name, self.n, self.ident, self.bad, self.size = f"numbers{ident}", n, ident, bad or {}, size
    self.skipped_shards = []

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if i in self.bad:
      raise BadSample(self.bad[i])
    image = np.zeros((self.size, self.size + 4, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = self.ident, i % 256, i // 256
    return {"image": image, "caption": [f"sample {i}", f"also {i}"], "key": f"{self.name}/{i}"}


class NumberTokenizer:
  vocab_size = 100

  def encode(self, texts, max_len):
    out = np.zeros((len(texts), max_len), np.int32)
    for row, text in zip(out, texts):
      word, number = text.split()
      row[:3] = (1 if word == "sample" else 2, int(number) % 100, int(number) // 100)
    return out


def dataset(sources, weights=None, pp="decode|choose_caption|tokenize"):
  preprocess = preprocess_lib.Preprocess(pp, ops.Context(image_size=8, max_len=4,
                                              tokenizer=NumberTokenizer()))
  return pipeline.Dataset(NumberTokenizer(), 4, [], [], sources,
                          weights or [1.0] * len(sources), preprocess)


def data_cfg(shuffle=True):
  return ConfigDict(dict(threads=2, prefetch=4, shuffle=shuffle))


def make(ds, state=None, proc=0, n_proc=1, seed=0, shuffle=True):
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))
  return stream_lib.TrainStream(ds, data_cfg(shuffle), LOCAL * n_proc,
                                parallel.batch_sharding(mesh), seed, state=state,
                                process_index=proc, process_count=n_proc)


def ids(batch):
  """(source, index) of every row of a local batch."""
  image = batch["image"]
  return [(int(s), int(lo) + 256 * int(hi))
          for s, lo, hi in zip(image[:, 0, 0, 0], image[:, 0, 0, 1], image[:, 0, 0, 2])]


def read(stream, k):
  return [stream.next_local() for _ in range(k)]


def assert_same(batches, expected):
  assert len(batches) == len(expected)
  for got, want in zip(batches, expected):
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["text"], want["text"])


AUGMENTED = "decode|random_resized_crop(8, scale=(0.3, 1.0))|flip_lr|choose_caption|tokenize"


@pytest.mark.parametrize("pp", ["decode|choose_caption|tokenize", AUGMENTED])
def test_resumed_stream_sees_the_uninterrupted_batches(pp):
  """Two sources mixed 3:1 with bad samples and random augmentations: read 5 batches, save
  the position, restore a fresh stream from it: the next 6 batches are those of a run that
  never stopped (images, crops, flips, caption choices, skips)."""
  sources = [NumberSource(37, 0, bad={3: "caption_empty", 20: "image_unreadable"}),
             NumberSource(23, 1, bad={5: "json_invalid"})]
  ds = dataset(sources, [3.0, 1.0], pp)
  uninterrupted = read(make(ds), 11)
  first = make(ds)
  read(first, 5)
  state = first.state()
  assert state["next_batch"] == 5 and state["next_record"] >= 5 * LOCAL
  resumed = make(ds, state=state)
  assert_same(read(resumed, 6), uninterrupted[5:])
  assert resumed.skipped == first.skipped + collections.Counter(
      {k: v for k, v in (resumed.skipped - first.skipped).items()})
  # Random access gives the same batches as iteration.
  batch, _ = make(ds).local_batch_at(0)
  np.testing.assert_array_equal(batch["image"], uninterrupted[0]["image"])


def test_augmentations_are_random_but_seeded():
  ds = dataset([NumberSource(40)], pp=AUGMENTED)
  a, b, c = (make(ds, seed=s).next_local()["image"] for s in (0, 0, 1))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_processes_read_disjoint_records_covering_each_epoch():
  """Two processes: in every epoch each record is read by exactly one of them."""
  n = 64
  ds = dataset([NumberSource(n)])
  streams = [make(ds, proc=p, n_proc=2) for p in range(2)]
  per_epoch = n // (2 * LOCAL)
  for epoch in range(2):
    seen = [[i for b in read(s, per_epoch) for i in ids(b)] for s in streams]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == [(0, i) for i in range(n)]
  # The global batch of 2 processes x 8 rows is the 1-process stream's batch of 16 (records
  # interleaved), so the data order does not depend on the host count.
  single = stream_lib.TrainStream(ds, data_cfg(), 16, parallel.batch_sharding(
      parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))), 0, process_index=0,
      process_count=1)
  whole = set(ids(single.next_local()))
  halves = [set(ids(make(ds, proc=p, n_proc=2).next_local())) for p in range(2)]
  assert whole == halves[0] | halves[1]


def test_each_process_resumes_from_its_own_position():
  """Skips differ between processes, so each keeps its own record position."""
  ds = dataset([NumberSource(50, bad={i: "caption_missing" for i in range(0, 50, 7)})])
  full = [read(make(ds, proc=p, n_proc=2), 7) for p in range(2)]
  first = [make(ds, proc=p, n_proc=2) for p in range(2)]
  for s in first:
    read(s, 3)
  saved = {"next_batch": 3, "processes": [s.state() for s in first]}
  assert saved["processes"][0]["next_record"] != saved["processes"][1]["next_record"]
  for p in range(2):
    assert_same(read(make(ds, state=saved, proc=p, n_proc=2), 4), full[p][3:])


def test_skipped_samples_are_counted_per_reason_exactly():
  """Without shuffling, one epoch of 60 records with 12 planted faults is 48 good samples = 6
  batches: the counts equal the planted faults."""
  bad = {1: "caption_empty", 2: "caption_empty", 10: "image_unreadable", 17: "json_invalid",
         30: "caption_not_utf8", 31: "caption_missing", 32: "image_missing", 40: "caption_empty",
         44: "image_unreadable", 50: "image_unreadable", 51: "json_invalid", 58: "caption_empty"}
  ds = dataset([NumberSource(60, bad=bad)])
  s = make(ds, shuffle=False)
  rows = [i for b in read(s, 6) for i in ids(b)]
  assert rows == [(0, i) for i in range(60) if i not in bad]
  assert s.skipped == collections.Counter(bad.values())
  assert stream_lib.skipped_totals(s) == {r: collections.Counter(bad.values()).get(r, 0)
                                          for r in stream_lib.REASONS}
  assert s.state()["next_record"] == 60  # Record 59, the last, completes batch 6.


def test_undecodable_images_are_skipped_by_the_decode_op():
  class Encoded(NumberSource):
    def __getitem__(self, i):
      record = super().__getitem__(i)
      if i in (4, 9):
        record["image"] = b"\xff\xd8\xff\xe0 not really a jpeg"
      else:
        import io
        from PIL import Image
        buffer = io.BytesIO()
        Image.fromarray(record["image"]).save(buffer, format="PNG")
        record["image"] = buffer.getvalue()
      return record

  s = make(dataset([Encoded(24)]), shuffle=False)
  rows = [i for b in read(s, 2) for i in ids(b)]
  assert rows == [(0, i) for i in range(18) if i not in (4, 9)]
  assert s.skipped == {"image_unreadable": 2}


def test_mixture_weights_set_the_proportions():
  ds = dataset([NumberSource(500, 0), NumberSource(500, 1)], [0.75, 0.25])
  rows = [i for b in read(make(ds), 50) for i in ids(b)]
  share = np.mean([source == 0 for source, _ in rows])
  assert abs(share - 0.75) < 0.02


def test_a_position_saved_as_a_batch_index_still_resumes():
  """Checkpoints that hold only the batch index (written before record positions)."""
  ds = dataset([NumberSource(40)])
  uninterrupted = read(make(ds), 5)
  assert_same(read(make(ds, state={"next_batch": 2}), 3), uninterrupted[2:])


def test_global_batches_are_sharded():
  ds = dataset([NumberSource(40)])
  mesh = parallel.make_mesh(ConfigDict(dict(data=2, fsdp=4)))
  s = stream_lib.TrainStream(ds, data_cfg(), 16, parallel.batch_sharding(mesh), 0)
  batch = next(s)
  assert batch["image"].shape == (16, 12, 16, 3) and len(batch["image"].sharding.device_set) == 8
  assert jax.device_get(batch["text"]).shape == (16, 4)


def test_images_of_different_sizes_need_a_fixed_size_op():
  sources = [NumberSource(10, 0, size=12), NumberSource(10, 1, size=16)]
  with pytest.raises(pipeline.ConfigError, match="fixed-size op"):
    read(make(dataset(sources)), 3)
  fixed = make(dataset(sources, pp="decode|resize(8)|choose_caption|tokenize"))
  assert read(fixed, 3)[0]["image"].shape == (LOCAL, 8, 8, 3)


def _global_stream(ds, batch, state=None, proc=0, n_proc=1):
  """Unshuffled, so that the planted faults stay where they are put."""
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))
  return stream_lib.TrainStream(ds, data_cfg(shuffle=False), batch, parallel.batch_sharding(mesh), 0,
                                state=state, process_index=proc, process_count=n_proc)


def _rows(batches):
  """Every row of some local batches as bytes (image, then text), sorted."""
  return sorted(b["image"][i].tobytes() + b["text"][i].tobytes()
                for b in batches for i in range(len(b["image"])))


@pytest.mark.parametrize("pp", ["decode|choose_caption|tokenize", AUGMENTED])
def test_another_process_count_continues_at_the_next_record(pp):
  """Saved by 1 process after 3 batches of 16 (3 samples skipped on the way: 51 records, an
  odd count), resumed by 2: together they read exactly the rows of the batches the 1 process
  would have read next, augmentations included. (The faults all lie before the resume point: a fault after it is
  skipped by whichever process reads it, which then reads one record further than its peer.)"""
  ds = dataset([NumberSource(97, bad={i: "caption_missing" for i in range(5, 30, 11)})], pp=pp)
  single = _global_stream(ds, 16)
  read(single, 3)
  saved = {"next_batch": 3, "base": 0, "processes": [single.state()]}
  assert single.skipped["caption_missing"] >= 1
  following = read(single, 2)
  halves = [_global_stream(ds, 16, saved, p, 2) for p in range(2)]
  assert [h.base for h in halves] == [saved["processes"][0]["next_record"]] * 2
  # The run's skip counts carry over once (on process 0).
  assert dict(halves[0].skipped) == saved["processes"][0]["skipped"] and not halves[1].skipped
  resumed = [read(h, 2) for h in halves]
  assert _rows(following) == _rows(resumed[0] + resumed[1])


def test_where_a_stream_continues_when_the_process_count_changes():
  # One process, or shares of a prefix: the next record, nothing passed over.
  assert stream_lib.continue_from(0, [5]) == (5, 0)
  assert stream_lib.continue_from(10, [3, 3]) == (16, 0)
  assert stream_lib.continue_from(0, [3, 2]) == (5, 0)  # read 0, 2, 4 and 1, 3
  # Unequal shares (different skips): after the furthest record read; record 4 is passed over.
  assert stream_lib.continue_from(0, [2, 3]) == (6, 1)  # read 0, 2 and 1, 3, 5
  assert stream_lib.continue_from(7, [0, 0]) == (7, 0)
