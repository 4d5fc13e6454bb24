"""Cloud paths (lang_image/storage.py): URLs stay URLs, unsupported schemes get one sentence,
and a run trains and resumes with its workdir and data directory in a gs:// bucket."""

import glob
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import cli_runs
import data_fixtures
from lang_image import config as config_lib, storage
from configs import clip as clip_config

ROOT = cli_runs.ROOT


def test_urls_stay_urls_and_local_paths_become_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert storage.join("gs://bucket/run", "checkpoints", "4") == "gs://bucket/run/checkpoints/4"
  assert storage.join("run", "eval") == str(tmp_path / "run" / "eval")
  assert storage.scheme("gs://b/x") == "gs" and storage.scheme("/data/x:y") is None
  assert storage.safe_name("wds:/data/val/{0..3}.tar") == "wds__data_val__0..3_.tar"


def test_local_files_are_replaced_whole_and_appended(tmp_path):
  path = str(tmp_path / "a" / "b.txt")
  storage.write_text(path, "one\n")
  storage.append_text(path, "two\n")
  storage.write_text(path, storage.read_text(path) + "three\n")
  assert storage.read_text(path) == "one\ntwo\nthree\n"
  assert oct(os.stat(path).st_mode & 0o777) == "0o644"
  assert storage.listdir(str(tmp_path / "a")) == ["b.txt"]  # no temporary file left
  assert storage.listdir(str(tmp_path / "missing")) == []


@pytest.mark.parametrize("workdir, message", [
    ("ftp://host/run", "--workdir 'ftp://host/run' uses the URL scheme 'ftp://', which "
                       "lang_image cannot open; give a local path or a URL with one of "
                       "gs://, s3://, az://, hf://."),
    ("s3://bucket/run", "--workdir 's3://bucket/run' is on s3://, where Orbax cannot write "
                        "checkpoints (it writes to local paths and gs:// only)"),
])
def test_a_workdir_nothing_can_write_fails_in_one_sentence(workdir, message, tmp_path,
                                                           monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = clip_config.get_config("batch=8")
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(config, workdir, device_count=1)
  assert str(e.value).startswith(message) and str(e.value).count(". ") == 0
  assert os.listdir(tmp_path) == []  # nothing local was made for the URL


def test_a_data_dir_with_an_unknown_scheme_fails_in_one_sentence(tmp_path):
  config = clip_config.get_config("batch=8")
  config.data.data_dir = "memory://cache"
  with pytest.raises(config_lib.ConfigError, match=r"^config.data.data_dir 'memory://cache' "
                     r"uses the URL scheme 'memory://', which lang_image cannot open"):
    config_lib.validate(config, str(tmp_path), device_count=1)


def test_main_refuses_an_unknown_scheme_before_training_and_makes_no_folder(tmp_path):
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "main.py"), f"--config={ROOT}/configs/clip.py",
       "--workdir=gcs://bucket/run"], cwd=tmp_path, env=cli_runs.env(), capture_output=True,
      text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: --workdir 'gcs://bucket/run' uses the URL scheme 'gcs://'")
  assert os.listdir(tmp_path) == []


def _run_on_fake_bucket(store, cwd, spec, steps=4):
  """main.py through tests/fake_gcs.py: workdir gs://bucket/run, data dir gs://bucket/data,
  training (and evaluation) data `spec`."""
  command = [sys.executable, os.path.join(ROOT, "tests", "fake_gcs.py"),
             os.path.join(ROOT, "main.py"),
             f"--config={ROOT}/configs/clip.py:steps={steps},batch=16,data={spec}",
             "--workdir=gs://bucket/run", "--config.data.data_dir=gs://bucket/data",
             "--config.data.vocab_size=300", "--config.model.image_size=32",
             "--config.log_every=1", "--config.checkpoint_every=2",
             f"--config.eval.dataset={spec}", "--config.eval.source_examples=32",
             "--config.eval.batch_size=32", "--config.eval.linear_probe=False",
             "--config.eval.knn=False"]
  env = dict(cli_runs.env(), LANG_IMAGE_FAKE_GCS_ROOT=str(store))
  return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_trains_and_resumes_with_workdir_data_dir_and_shards_in_a_gs_bucket(tmp_path):
  """A run whose --workdir, config.data.data_dir and webdataset shards are gs:// URLs, offline.

  Why this filesystem: every library here reaches storage through etils.epath, which knows
  only gs://, s3://, az:// and hf:// (fsspec's memory:// and tf.io.gfile's ram:// are refused
  by epath, so clu's writer and Orbax could not open them), and Orbax writes arrays only to
  local paths and gs:// (tensorstore's gcs driver). So the test uses gs:// itself: lang_image,
  clu, epath and Orbax take their real gs:// code paths (Orbax's commit-file protocol instead
  of renames, its per-bucket queries, tensorstore's kvstore spec for a bucket), and
  tests/fake_gcs.py replaces only the transport underneath (epath's fsspec filesystem, the
  tensorstore driver, the google-cloud-storage client, TensorFlow's event file writer) with a
  local directory that, like GCS, refuses appends.

  It trains 4 steps (checkpoints at 2 and 4), deletes checkpoint 4 and resumes from 2, and
  checks that the resumed step-4 parameters equal the first run's bit for bit; that the
  shards' index cache, the tokenizer trained on first use, the evaluation JSON, pictures,
  TensorBoard events, train_metrics.jsonl and config.json are all in the bucket (the shards
  are only there); and that no folder named after a URL scheme appears anywhere.
  """
  store, cwd = tmp_path / "store", tmp_path / "cwd"
  (store / "bucket").mkdir(parents=True)
  cwd.mkdir()
  data_fixtures.write_wds(str(store / "bucket" / "shards"), shards=2)
  spec = "wds:gs://bucket/shards/{00000..00001}.tar"
  first = _run_on_fake_bucket(store, cwd, spec)
  assert first.returncode == 0, first.stderr[-3000:]
  run = store / "bucket" / "run"
  assert sorted(os.listdir(run / "checkpoints")) == ["2", "4"]
  assert os.listdir(run / "eval") == ["step_00000004.json"]
  assert (run / "config.json").exists() and glob.glob(str(run / "events.out.tfevents.*"))
  assert glob.glob(str(run / "pictures" / "*" / "similarity.png"))
  assert len(glob.glob(str(store / "bucket" / "data" / "index" / "*.npz"))) == 2  # 2 shards
  assert len(glob.glob(str(store / "bucket" / "data" / "tokenizers" / "*.model"))) == 1
  state = cli_runs.saved_state(str(run), 4)

  shutil.rmtree(run / "checkpoints" / "4")
  resumed = _run_on_fake_bucket(store, cwd, spec)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resumed from checkpoint step 2 in gs://bucket/run/checkpoints" in resumed.stderr
  for a, b in zip(jax.tree.leaves(state["params"]),
                  jax.tree.leaves(cli_runs.saved_state(str(run), 4)["params"])):
    np.testing.assert_array_equal(a, b)
  # The bucket cannot append: the metrics file was rewritten, keeping the first run's lines.
  steps = [json.loads(line)["step"] for line in (run / "train_metrics.jsonl").read_text()
           .splitlines()]
  assert steps == [1, 2, 3, 4, 3, 4]
  made = [p for p in glob.glob(str(tmp_path / "**"), recursive=True) + os.listdir(ROOT)
          if os.path.basename(p).rstrip("/").endswith(":")]
  assert made == [] and os.listdir(cwd) == []
