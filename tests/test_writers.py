"""The metric writers: TensorBoard always; wandb (offline here) beside it on request, with the
same scalars at the same steps and the same images."""

import glob
import os
import time

import numpy as np
import pytest
from ml_collections import ConfigDict
from tensorboard.backend.event_processing import event_accumulator

import wandb_log
from lang_image import writers
from lang_image.errors import ConfigError


def config(enabled):
  return ConfigDict(dict(seed=3, optim=dict(lr=0.1),
                         wandb=dict(enabled=enabled, project="lang_image_test", entity="",
                                    name="", mode="offline")))


def tensorboard(workdir):
  acc = event_accumulator.EventAccumulator(workdir, size_guidance={"tensors": 0})
  acc.Reload()
  return acc


def write_some(writer):
  writer.write_hparams({"seed": 3, "optim.lr": 0.1})
  writer.write_scalars(10, {"train/loss": 2.5, "train/clip/loss": 4.0})
  writer.write_scalars(20, {"train/loss": -1.25, "eval/zero_shot/top1": 37.5})
  image = np.zeros((1, 12, 20, 3), np.uint8)
  image[0, :, :10, 0] = 255
  writer.write_images(20, {"pictures/curves": image})
  writer.flush()
  writer.close()


def test_wandb_offline_writes_the_same_scalars_and_images_as_tensorboard(tmp_path, monkeypatch):
  pytest.importorskip("wandb")
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  workdir = str(tmp_path / "run")
  write_some(writers.create(workdir, config(True)))
  (log,) = glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))
  # wandb's service process writes the log behind the run; wait for the last row.
  deadline = time.monotonic() + 60
  while len(rows := wandb_log.history(log)) < 2 and time.monotonic() < deadline:
    time.sleep(0.5)
  logged = {(row["_step"], k): v for row in rows for k, v in row.items()
            if not k.startswith("_") and not k.startswith("pictures/")}
  tb = tensorboard(workdir)
  from_tb = {}
  for tag in tb.Tags()["tensors"]:
    if tag.startswith(("train/", "eval/")):  # (besides pictures/ and the hparams plugin's)
      for event in tb.Tensors(tag):
        from_tb[(event.step, tag)] = float(np.asarray(
            __import__("tensorflow").make_ndarray(event.tensor_proto)))
  assert logged == from_tb == {(10, "train/loss"): 2.5, (10, "train/clip/loss"): 4.0,
                               (20, "train/loss"): -1.25, (20, "eval/zero_shot/top1"): 37.5}
  image_row = next(row for row in rows if "pictures/curves/path" in row)
  assert image_row["_step"] == 20
  assert (image_row["pictures/curves/width"], image_row["pictures/curves/height"]) == (20, 12)
  assert os.path.isfile(os.path.join(os.path.dirname(log), "files",
                                     image_row["pictures/curves/path"]))
  assert "pictures/curves" in tb.Tags()["tensors"]


def test_wandb_is_off_by_default(tmp_path):
  workdir = str(tmp_path / "run")
  write_some(writers.create(workdir, config(False)))
  assert not os.path.exists(os.path.join(workdir, "wandb"))
  assert "train/loss" in tensorboard(workdir).Tags()["tensors"]


def test_other_processes_write_nothing(tmp_path):
  write_some(writers.create(str(tmp_path), config(True), primary=False))
  assert os.listdir(tmp_path) == []


def test_missing_wandb_is_one_sentence(tmp_path, monkeypatch):
  import builtins
  real_import = builtins.__import__
  monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (
      (_ for _ in ()).throw(ImportError(name)) if name == "wandb" else real_import(name, *a, **k)))
  with pytest.raises(ConfigError, match=r"needs the wandb package; install it with pip "
                                        r"install 'lang_image\[wandb\]'"):
    writers.create(str(tmp_path), config(True))
