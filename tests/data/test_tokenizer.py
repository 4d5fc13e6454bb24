"""Tests of SentencePiece training and fixed-length encoding."""

import os
import subprocess
import sys

import numpy as np
import pytest

from lang_image.data import shapes
from lang_image.data import tokenizer as tokenizer_lib

N_TRAIN = shapes.SPLIT_SIZES["tiny"]["train"]


def _captions(split="train", n=N_TRAIN):
  return [shapes.describe(split, i)["caption"] for i in range(n)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tok") / "shapes.model")
  return tokenizer_lib.train_sentencepiece(_captions(), path, vocab_size=1000)


@pytest.fixture(scope="module")
def tok(model_path):
  return tokenizer_lib.Tokenizer(model_path)


def test_special_ids(tok):
  assert (tok.pad_id, tok.eos_id) == (0, 1)
  # A small corpus gives fewer pieces than asked for, instead of an error.
  assert 40 < tok.vocab_size < 1000


def test_round_trip_captions(tok):
  texts = _captions() + _captions("test", 200)
  ids = tok.encode(texts, 32)
  assert ids.shape == (len(texts), 32) and ids.dtype == np.int32
  assert tok.decode(ids) == texts
  assert tok.decode(ids[0]) == texts[:1]


def test_class_words_are_single_pieces(tok):
  for word in list(shapes.COLOURS) + list(shapes.SHAPES):
    ids = tok.encode(word, 4)[0]
    assert ids.tolist() == [ids[0], tok.eos_id, 0, 0], word


def test_padding_and_eos(tok):
  ids = tok.encode(["a red star.", "a photo of one blue circle in the top left corner."], 24)
  for row in ids:
    length = int((row != tok.pad_id).sum())
    assert row[length - 1] == tok.eos_id
    assert (row[length:] == tok.pad_id).all()
    assert (row[:length - 1] != tok.eos_id).all()
  assert (ids[0] != 0).sum() < (ids[1] != 0).sum()


def test_truncation_keeps_eos(tok):
  text = "a photo of one blue circle in the top left corner."
  full = tok.encode(text, 32)[0]
  n = int((full != 0).sum())
  cut = tok.encode([text, text.encode()], 5)
  assert cut.shape == (2, 5)
  np.testing.assert_array_equal(cut[0], cut[1])
  assert cut[0, -1] == tok.eos_id
  np.testing.assert_array_equal(cut[0, :4], full[:4])
  assert n > 5
  assert tok.decode(cut)[0] == "a photo of one"
  assert tok.encode(text, 1).tolist() == [[tok.eos_id]]


def test_case_folded(tok):
  np.testing.assert_array_equal(tok.encode("A Red STAR.", 8), tok.encode("a red star.", 8))


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def test_training_is_deterministic_and_atomic(tmp_path, model_path):
  again = tokenizer_lib.train_sentencepiece(_captions(), str(tmp_path / "a.model"), 1000)
  assert _read(again) == _read(model_path)
  # Nothing but the model is left behind.
  assert os.listdir(tmp_path) == ["a.model"]
  other = tokenizer_lib.train_sentencepiece(_captions()[:300], str(tmp_path / "b.model"), 1000)
  assert _read(other) != _read(again)


def test_shapes_tokenizer_kept_with_dataset(tmp_path):
  from lang_image.data import shapes_tfds
  from lang_image.data.sources.shapes_source import shapes_tokenizer
  data_dir = str(tmp_path)
  path = shapes_tokenizer(data_dir, "tiny", vocab_size=500)
  builder = shapes_tfds.prepare(data_dir, "tiny")
  assert os.path.dirname(path) == os.fspath(builder.data_dir)
  assert os.path.basename(path) == "tokenizer_500.model"
  mtime = os.stat(path).st_mtime_ns
  assert shapes_tokenizer(data_dir, "tiny", vocab_size=500) == path
  assert os.stat(path).st_mtime_ns == mtime
  stored = [e["caption"] for e in builder.as_data_source("validation")]
  tok = tokenizer_lib.Tokenizer(path)
  assert tok.decode(tok.encode(stored, 32)) == [c.decode() for c in stored]


def test_cli(tmp_path):
  out = str(tmp_path / "cli.model")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=root)
  result = subprocess.run(
      [sys.executable, "-m", "lang_image.train_tokenizer", "--variant=tiny", f"--output={out}",
       f"--data_dir={tmp_path}"],
      capture_output=True, text=True, env=env, check=True, timeout=60)
  assert os.path.exists(out)
  assert "vocab size:" in result.stdout and out in result.stdout


def test_cli_builds_a_tokenizer_from_any_source(tmp_path):
  """--source takes a data spec (here a mixture of webdataset shards and a CSV with planted
  faults): the model covers their captions, faulty samples are counted, not fatal."""
  import data_fixtures
  wds = data_fixtures.write_wds(str(tmp_path / "wds"))
  table = data_fixtures.write_csv(str(tmp_path / "csv"))
  out = str(tmp_path / "own.model")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run(
      [sys.executable, "-m", "lang_image.train_tokenizer", f"--source=2*{wds.spec};{table.spec}",
       "--vocab_size=200", f"--output={out}", f"--data_dir={tmp_path}"],
      capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=root), timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  tok = tokenizer_lib.Tokenizer(out)
  captions = [c for c in wds.captions + table.captions if isinstance(c, str)]
  assert tok.decode(tok.encode(captions, 64)) == [" ".join(c.lower().split()) for c in captions]
  # Caption faults are found without decoding images: the wds caption/json faults and the
  # CSV's empty and non-UTF-8 titles.
  assert "caption_empty" in result.stdout and "json_invalid" in result.stdout
