"""Random-access sources (lang_image/data/sources): records, planted faults, spec expansion,
index caches, unreadable shards, concurrent reads."""

from concurrent import futures
import io
import logging
import os
import shutil
import tarfile

import numpy as np
from PIL import Image
import pytest

import data_fixtures as fx
from lang_image.data import sources
from lang_image.data.sources import BadSample, DataError, base, webdataset


def decodes(data) -> bool:
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
    return True
  except Exception:  # pylint: disable=broad-except
    return False


def outcome(source, i):
  """source[i], or ("bad", reason); pixel arrays as bytes so that outcomes compare."""
  try:
    record = source[i]
  except BadSample as e:
    return ("bad", e.reason)
  if isinstance(record["image"], np.ndarray):
    record = dict(record, image=(record["image"].shape, record["image"].tobytes()))
  return record


def check_planted(source, planted: fx.Planted):
  """Every good sample has its caption and a decodable image; every planted fault shows."""
  assert len(source) == planted.n
  seen = {}
  for i in range(planted.n):
    reason = planted.reasons.get(i)
    if reason == "image_unreadable":
      record = source[i]
      assert isinstance(record["image"], bytes) and not decodes(record["image"]), i
      seen[reason] = seen.get(reason, 0) + 1
    elif reason is not None:
      with pytest.raises(BadSample) as error:
        source[i]
      assert error.value.reason == reason, (i, error.value)
      seen[reason] = seen.get(reason, 0) + 1
    else:
      record = source[i]
      assert record["caption"] == planted.captions[i], i
      assert decodes(record["image"]), i
      assert isinstance(record["key"], str) and record["key"]
  assert seen == planted.counts
  keys = [outcome(source, i)["key"] for i in range(planted.n) if i not in planted.bad]
  assert len(set(keys)) == len(keys)


@pytest.fixture(scope="module")
def wds(tmp_path_factory):
  return fx.write_wds(str(tmp_path_factory.mktemp("wds")))


@pytest.fixture(scope="module")
def tfds_data(tmp_path_factory):
  return {fmt: fx.write_tfds(str(tmp_path_factory.mktemp(fmt)), file_format=fmt)
          for fmt in ("array_record", "tfrecord")}


def test_caption_rules():
  assert base.caption_text(b" a cat \n") == "a cat"
  assert base.caption_text("a dog") == "a dog"
  assert base.caption_text([b"one", "  ", "", "two"]) == ["one", "two"]
  assert base.caption_text(np.array([b"x", b"y"], dtype=object)) == ["x", "y"]
  cases = {None: "caption_missing", 3: "caption_missing", b"  \t": "caption_empty",
           "": "caption_empty", b"caf\xe9": "caption_not_utf8",
           "caf\udce9": "caption_not_utf8"}
  for value, reason in cases.items():
    with pytest.raises(BadSample) as error:
      base.caption_text(value)
    assert error.value.reason == reason, value
  for value, reason in (([" ", b""], "caption_empty"), ([], "caption_empty"),
                        (["ok", b"\xff"], "caption_not_utf8")):
    with pytest.raises(BadSample) as error:
      base.caption_text(value)
    assert error.value.reason == reason, value


def test_bad_sample_and_data_error():
  e = BadSample("json_invalid", "line 3")
  assert (e.reason, e.detail) == ("json_invalid", "line 3")
  with pytest.raises(AssertionError):
    BadSample("no_such_reason")
  from lang_image.errors import ConfigError
  assert issubclass(DataError, ConfigError)
  assert set(base.REASONS) >= {r for f in fx.JSONL_FAULTS + fx.WDS_FAULTS
                               for r in [f.partition("/")[0]]}


def test_unknown_scheme():
  # A built-in dataset takes no path after a colon.
  for spec in ("laion:/data/x.tar", "/data/x.tar", "shapes:/data/x"):
    with pytest.raises(DataError) as error:
      sources.open_source(spec)
    message = str(error.value)
    assert f"'{spec}'" in message
    assert all(f"{kind.name} (e.g. {kind.example})" in message for kind in sources.KINDS.values())


def test_wds_records(wds, tmp_path):
  source = sources.open_source(wds.spec, index_cache_dir=str(tmp_path))
  assert source.skipped_shards == []
  check_planted(source, wds)
  record = source[1]
  assert record["key"] == "00000.tar/000000001"
  assert record["json"] == {"caption": wds.captions[1], "key": "000000001", "index": 1}
  # Sample 13 is the second of shard 00001.tar.
  assert source[13]["key"] == "00001.tar/000010001"


def test_a_bad_sample_of_a_brace_pattern_is_named_by_its_shard(wds):
  from lang_image.data import stream
  source = sources.open_source(wds.spec)
  assert "{" in wds.spec
  bad = next(i for i in sorted(wds.reasons) if i >= 12 and wds.reasons[i] != "image_unreadable")
  skipped = stream._Guarded(source, 0)[bad]  # What the stream logs and counts.
  shard = os.path.join(os.path.dirname(wds.spec.partition(":")[2]), f"{bad // 12:05d}.tar")
  assert skipped["skipped"] == wds.reasons[bad]
  assert skipped["key"].startswith(f"{shard} #{bad % 12} (key "), skipped["key"]
  assert "{" not in skipped["key"]


def test_wds_keys(wds):
  # The sidecar field as caption: the sample without .txt is good then.
  source = sources.open_source(wds.spec, text_key="json:caption")
  for i in range(wds.n):
    reason = wds.reasons.get(i)
    if reason in ("caption_missing", "caption_empty", "caption_not_utf8"):
      assert source[i]["caption"] == fx.caption(i)
    elif reason in ("json_invalid", "image_missing"):
      assert outcome(source, i) == ("bad", reason)
  # Only PNG images: every sample stored as JPEG or WEBP lacks its image.
  only_png = sources.open_source(wds.spec, image_key=".PNG")
  for i in range(6):
    got = outcome(only_png, i)
    if fx.FORMATS[i % 3] == "png":
      assert got["caption"] == fx.caption(i) and got["image"].startswith(b"\x89PNG")
    else:
      assert got == ("bad", "image_missing")
  # Alternatives are tried in order.
  webp_first = sources.open_source(wds.spec, image_key="webp;jpg;png")
  assert webp_first[0]["image"][:2] == b"\xff\xd8" and webp_first[2]["image"][8:12] == b"WEBP"


def test_expand_patterns(tmp_path):
  for name in ("a-000.tar", "a-001.tar", "a-002.tar", "b-9.tar", "b-10.tar"):
    (tmp_path / name).write_bytes(b"")
  d = str(tmp_path)
  assert webdataset.expand_patterns(f"{d}/a-{{000..002}}.tar") == [
      f"{d}/a-000.tar", f"{d}/a-001.tar", f"{d}/a-002.tar"]
  assert webdataset.expand_patterns(f"{d}/b-{{9..10}}.tar") == [f"{d}/b-9.tar", f"{d}/b-10.tar"]
  # Globs sort; '::' joins patterns in order, keeping a path listed twice once.
  assert webdataset.expand_patterns(f"{d}/b-*.tar :: {d}/a-00[12].tar::{d}/b-9.tar") == [
      f"{d}/b-10.tar", f"{d}/b-9.tar", f"{d}/a-001.tar", f"{d}/a-002.tar"]
  # A range with a gap keeps the missing path, to be reported as a bad shard.
  assert webdataset.expand_patterns(f"{d}/a-{{001..003}}.tar")[-1] == f"{d}/a-003.tar"
  for pattern, words in ((f"{d}/c-*.tar", "matches no file"),
                         (f"{d}/c-{{0..3}}.tar", "matches no file"),
                         (f"{d}/a-{{000,001}}.tar", "'::'"),
                         (f"{d}/a-{{002..000}}.tar", "backwards")):
    with pytest.raises(DataError, match=words):
      webdataset.expand_patterns(pattern)


def test_wds_numbering_follows_spec_order(wds):
  d = os.path.dirname(wds.files[0])
  whole = sources.open_source(wds.spec)
  source = sources.open_source(f"wds:{d}/00002.tar::{d}/0000{{0..1}}.tar")
  assert source.shards == [f"{d}/00002.tar", f"{d}/00000.tar", f"{d}/00001.tar"]
  assert len(source) == 36
  # 00002.tar holds samples 24..35 of the whole, 00000.tar 0..11, 00001.tar 12..23.
  for i, j in enumerate([*range(24, 36), *range(0, 24)]):
    assert outcome(source, i) == outcome(whole, j), i


def test_wds_index_cache(wds, tmp_path, monkeypatch):
  cache = str(tmp_path / "cache")
  first = sources.open_source(wds.spec, index_cache_dir=cache)
  assert len(os.listdir(cache)) == 4
  expected = [outcome(first, i) for i in range(wds.n)]

  def no_tar(*args, **kwargs):
    raise tarfile.ReadError("tar headers must not be read")

  monkeypatch.setattr(tarfile, "open", no_tar)
  with pytest.raises(DataError, match="tar headers must not be read"):
    sources.open_source(wds.spec)
  cached = sources.open_source(wds.spec, index_cache_dir=cache)
  assert [outcome(cached, i) for i in range(wds.n)] == expected
  # A changed shard is indexed again.
  shard = wds.files[2]
  os.utime(shard, ns=(os.stat(shard).st_atime_ns, os.stat(shard).st_mtime_ns + 10**9))
  with pytest.raises(DataError, match="00002.tar"):
    sources.open_source(wds.spec, index_cache_dir=cache)


def test_wds_bad_shards(wds, tmp_path, caplog):
  d = tmp_path / "shards"
  shutil.copytree(os.path.dirname(wds.files[0]), d)
  garbage = str(d / "00004.tar")
  with open(garbage, "wb") as f:
    f.write(b"this is not a tar file\n" * 200)
  spec = f"wds:{d}/{{00000..00004}}.tar"
  with pytest.raises(DataError) as error:
    sources.open_source(spec)
  assert garbage in str(error.value) and "skip_bad_shards=True" in str(error.value)
  with caplog.at_level(logging.WARNING):
    source = sources.open_source(spec, skip_bad_shards=True)
  assert source.skipped_shards == [garbage]
  assert any(garbage in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
  check_planted(source, wds)
  # A missing shard of a range, and a truncated one, are bad shards too.
  os.unlink(garbage)
  with open(d / "00003.tar", "r+b") as f:
    f.truncate(os.path.getsize(d / "00003.tar") // 2)
  with pytest.raises(DataError) as error:
    sources.open_source(spec)
  assert "00003.tar" in str(error.value) and "1 other shard" in str(error.value)
  source = sources.open_source(spec, skip_bad_shards=True)
  assert source.skipped_shards == [str(d / "00003.tar"), garbage]
  assert len(source) == 36
  # Nothing left to read fails whatever the flag.
  with pytest.raises(DataError, match="none of the 2 shards"):
    sources.open_source(f"wds:{d}/{{00003..00004}}.tar", skip_bad_shards=True)


def test_wds_truncated_header(tmp_path):
  planted = fx.write_wds(str(tmp_path), shards=1, faults=False)
  with tarfile.open(planted.files[0]) as tar:
    second = tar.getmembers()[1].offset
  with open(planted.files[0], "r+b") as f:
    f.truncate(second + 100)  # Inside the second member's header.
  with pytest.raises(DataError, match="00000.tar"):
    sources.open_source(planted.spec)


# How csv_separator may be given (backslash-t is what bash passes for '\t') -> the separator.
@pytest.mark.parametrize("given, separator", [(",", ","), ("\t", "\t"), ("\\t", "\t"),
                                              ("tab", "\t"), (";", ";")])
def test_csv_records(tmp_path, given, separator):
  planted = fx.write_csv(str(tmp_path), separator=separator)
  source = sources.open_source(planted.spec, csv_separator=given)
  check_planted(source, planted)
  quoted = source[5]["caption"]
  assert separator in quoted and '"' in quoted and "\n" in quoted
  assert source[7]["key"] == "row 7"


def test_csv_columns(tmp_path):
  planted = fx.write_csv(str(tmp_path), faults=False)
  with open(planted.files[0], encoding="utf-8", newline="") as f:
    text = f.read()
  renamed = tmp_path / "renamed.csv"
  renamed.write_text(text.replace("id,filepath,title", "\ufeffid,path, caption "),
                     encoding="utf-8", newline="")
  with pytest.raises(DataError) as error:
    sources.open_source(f"csv:{renamed}")
  assert "'filepath'" in str(error.value) and "['id', 'path', 'caption']" in str(error.value)
  source = sources.open_source(f"csv:{renamed}", image_key="path", text_key="caption")
  check_planted(source, planted)
  with pytest.raises(DataError, match="csv_separator"):
    sources.open_source(planted.spec, csv_separator="\t")
  with pytest.raises(DataError, match="'tabs' is not one character; use e.g."):
    sources.open_source(planted.spec, csv_separator="tabs")
  with pytest.raises(DataError, match="nothing.csv"):
    sources.open_source(f"csv:{tmp_path}/nothing.csv")


def test_jsonl_records(tmp_path):
  planted = fx.write_jsonl(str(tmp_path))
  with open(planted.files[0], "rb") as f:
    assert len(f.readlines()) > planted.n  # Blank lines do not count as samples.
  source = sources.open_source(planted.spec)
  check_planted(source, planted)
  assert isinstance(source[7]["caption"], list) and len(source[7]["caption"]) == 2
  custom = sources.open_source(planted.spec, text_key="id")
  assert outcome(custom, 0) == ("bad", "caption_missing")  # A number is no caption.


@pytest.mark.parametrize("file_format", ["array_record", "tfrecord"])
def test_tfds_records(tfds_data, file_format, tmp_path):
  planted = tfds_data[file_format]
  source = sources.open_source(planted.spec, tfds_data_dir=planted.data_dir,
                               index_cache_dir=str(tmp_path))
  assert source.file_format == file_format
  check_planted(source, planted)
  # Nested features; pixels come back as arrays.
  nested = sources.open_source(planted.spec, tfds_data_dir=planted.data_dir,
                               image_key="pixels", text_key="captions/text")
  for i in range(planted.n):
    if planted.reasons.get(i) == "caption_empty":
      assert outcome(nested, i) == ("bad", "caption_empty")
    else:
      record = nested[i]
      assert record["caption"] == [fx.caption(i), f"another view of {fx.caption(i)}"]
      np.testing.assert_array_equal(record["image"], fx.pixels(i))
  # Slices of the split.
  part = sources.open_source("tfds:planted_pairs:train[12:20]",
                             tfds_data_dir=planted.data_dir)
  assert len(part) == 8 and part[0]["caption"] == fx.caption(12)
  assert part[7]["caption"] == fx.caption(19)


def test_tfds_errors(tfds_data, tmp_path):
  data_dir = tfds_data["array_record"].data_dir
  with pytest.raises(DataError) as error:
    sources.open_source("tfds:planted_pairs:train", tfds_data_dir=str(tmp_path))
  assert "not prepared" in str(error.value) and "tfds build planted_pairs" in str(error.value)
  with pytest.raises(DataError) as error:
    sources.open_source("tfds:planted_pairs:train", tfds_data_dir=data_dir, text_key="text")
  assert "['caption', 'captions/text', 'image', 'pixels']" in str(error.value)
  with pytest.raises(DataError, match="no split 'validation'"):
    sources.open_source("tfds:planted_pairs:validation", tfds_data_dir=data_dir)
  for spec in ("tfds:planted_pairs", "tfds::train"):
    with pytest.raises(DataError, match="does not parse"):
      sources.open_source(spec, tfds_data_dir=data_dir)
  versioned = sources.open_source("tfds:planted_pairs@1.0.0:train", tfds_data_dir=data_dir)
  assert len(versioned) == 30
  with pytest.raises(DataError, match="not prepared"):
    sources.open_source("tfds:planted_pairs@2.0.0:train", tfds_data_dir=data_dir)


@pytest.mark.parametrize("kind", ["wds", "csv", "jsonl", "array_record", "tfrecord"])
def test_concurrent_reads_match_sequential(kind, wds, tfds_data, tmp_path):
  if kind in tfds_data:
    planted = tfds_data[kind]
  else:
    planted = wds if kind == "wds" else getattr(fx, f"write_{kind}")(str(tmp_path))
  source = sources.open_source(planted.spec, tfds_data_dir=planted.data_dir)
  sequential = [outcome(source, i) for i in range(len(source))]
  order = np.random.default_rng(0).permutation(np.tile(np.arange(len(source)), 4))
  with futures.ThreadPoolExecutor(8) as pool:
    concurrent = list(pool.map(lambda i: (i, outcome(source, int(i))), order))
  for i, got in concurrent:
    assert got == sequential[i], i
  assert sum(isinstance(o, tuple) for o in sequential) == sum(
      n for r, n in planted.counts.items() if r != "image_unreadable")


@pytest.mark.parametrize("file_format", ["array_record", "tfrecord"])
def test_tfds_missing_files(tfds_data, file_format, tmp_path):
  planted = tfds_data[file_format]
  copy = tmp_path / "copy"
  shutil.copytree(planted.data_dir, copy)
  lost = [os.path.join(root, f) for root, _, names in os.walk(copy) for f in names
          if file_format in f]
  assert lost
  os.unlink(lost[0])
  with pytest.raises(DataError, match=os.path.basename(lost[0])):
    sources.open_source(planted.spec, tfds_data_dir=str(copy))


def test_empty_sources(tfds_data, tmp_path):
  (tmp_path / "header_only.csv").write_text("filepath,title\n")
  (tmp_path / "blank.jsonl").write_text("\n  \n")
  tarfile.open(tmp_path / "empty.tar", "w").close()
  for spec in (f"csv:{tmp_path}/header_only.csv", f"jsonl:{tmp_path}/blank.jsonl",
               f"wds:{tmp_path}/empty.tar", "tfds:planted_pairs:train[5:5]"):
    with pytest.raises(DataError, match="no rows|no members|is empty"):
      sources.open_source(spec, tfds_data_dir=tfds_data["array_record"].data_dir)
