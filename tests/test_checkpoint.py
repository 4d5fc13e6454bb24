"""The Checkpointer meets trouble: torn checkpoints fall back to the one before, the last
known-good checkpoint outlives rotation, the non-finite streak is saved, and a save that
cannot be written stops the run within seconds with one sentence."""

import errno
import os
import shutil
import time

import pytest

import read_only_folders
from checkpoint_fixtures import (assert_bitwise, pico_towers, restore_warns, states, trainer,  # noqa: F401
                                 two_checkpoints)
from configs import clip as clip_config
from lang_image import checkpoint, checkpoint_storage, stopping, train
from lang_image.errors import ConfigError, TrainingError
from lang_image.trainer import Trainer


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_newest_checkpoint_falls_back_to_the_one_before(trainer, states, tmp_path,
                                                               damage, caplog):
  first, second = states
  newest = os.path.join(two_checkpoints(tmp_path, states), "2")
  files = [os.path.join(d, f) for d, _, names in os.walk(newest) for f in names]
  largest = max(files, key=os.path.getsize)
  if damage == "truncate":
    os.truncate(largest, os.path.getsize(largest) // 2)
  else:
    os.remove(largest)

  restored, data, warnings = restore_warns(trainer, tmp_path, caplog)
  assert data == {"next": 1}
  assert_bitwise(restored, first)
  assert len(warnings) == 1 and warnings[0].startswith(f"Checkpoint {newest} cannot be read: "
                                                       "array "), warnings
  # A readable sentence: what happened to which array, not a TensorStore repr.
  assert ("ends past the end of its file" if damage == "truncate" else "has damaged bytes") \
      in warnings[0] and "TensorStore" not in warnings[0] and "<" not in warnings[0], warnings
  # Training on from step 1 saves step 2 again, in place of the damaged one.
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=1, keep=3)
  ckpt.restore(trainer.abstract_state)
  assert ckpt.maybe_save(2, second, {"next": 2})
  ckpt.wait()
  assert ckpt.restore(trainer.abstract_state)[1] == {"next": 2}
  ckpt.close()


def test_no_readable_checkpoint_means_a_fresh_start(trainer, states, tmp_path, caplog):
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=1, keep=3)
  assert ckpt.maybe_save(1, states[0], {"next": 1})
  ckpt.wait()
  ckpt.close()
  step_dir = os.path.join(str(tmp_path), "checkpoints", "1")
  for d, _, names in os.walk(step_dir):
    for name in names:
      if os.path.getsize(os.path.join(d, name)) > 1000:
        os.truncate(os.path.join(d, name), 10)
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=1, keep=3)
  with caplog.at_level("WARNING"):
    assert ckpt.restore(trainer.abstract_state) is None
  assert any("starting from scratch" in r.getMessage() for r in caplog.records)
  ckpt.close()


def test_the_last_good_checkpoint_outlives_rotation_and_the_streak_is_saved(trainer, states,
                                                                              tmp_path):
  first, second = states
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=2, keep=2)
  path = lambda step: os.path.join(ckpt.directory, str(step))
  assert ckpt.maybe_save(2, first, {"next": 2})
  # A periodic save while the latest step is non-finite waits for a finite step.
  assert not ckpt.maybe_save(4, second, {"next": 4}, nonfinite_streak=1)
  assert ckpt.due(5) and not ckpt.maybe_save(5, second, {"next": 5}, nonfinite_streak=2)
  # Forced saves (preemption, the end) are made, marked with their streak; with keep=2 they
  # rotate out each other but not step 2, the newest saved while training was finite.
  for step, streak in ((6, 3), (7, 4), (8, 5)):
    assert ckpt.maybe_save(step, second, {"next": step}, force=True, nonfinite_streak=streak)
  ckpt.wait()
  assert sorted(int(s) for s in os.listdir(ckpt.directory)) == [2, 7, 8]
  assert ckpt.resume_hint() == (
      f"resume from checkpoint step 8 ({path(8)}), saved after 5 non-finite steps in a row; "
      f"the newest saved while training was finite is step 2 ({path(2)})")
  ckpt.close()

  # The streak comes back with the checkpoint: 5 of a limit of 7 are already used up.
  again = checkpoint.Checkpointer(str(tmp_path), every=2, keep=2)
  restored, data = again.restore(trainer.abstract_state)
  assert data == {"next": 8} and again.nonfinite_streak == 5
  assert_bitwise(restored, second)
  guard = stopping.NonfiniteGuard(7, again.nonfinite_streak, again.resume_hint)
  guard.observe(9, 1.0)
  with pytest.raises(TrainingError) as info:
    guard.observe(10, 1.0)
  assert str(info.value) == (
      "the last 7 steps (up to step 10) all had a non-finite loss or gradient norm, so "
      "training stopped without saving them; lower config.optim.lr, check the data or raise "
      "config.max_nonfinite_steps (0 never stops), then rerun to resume from checkpoint step "
      f"8 ({path(8)}), saved after 5 non-finite steps in a row; the newest saved while "
      f"training was finite is step 2 ({path(2)}).")
  # A finite step saves again; the older known-good checkpoint may go then.
  assert again.maybe_save(10, first, {"next": 10})
  again.wait()
  assert sorted(int(s) for s in os.listdir(again.directory)) == [8, 10]
  assert again.resume_hint().startswith(f"resume from checkpoint step 10 ({path(10)}), the "
                                        "newest, saved while training was finite")
  again.close()


@pytest.fixture
def read_only_mount():
  """mount(folder): makes `folder` a read-only bind mount of itself, for this process too."""
  mounted = []

  def mount(folder):
    why_not = read_only_folders.mount_read_only(folder)
    if why_not:
      pytest.skip(f"no read-only folder for root: {why_not}")
    mounted.append(folder)
  yield mount
  for folder in mounted:
    read_only_folders.unmount(folder)


def test_a_save_that_cannot_be_written_stops_within_seconds(trainer, states, tmp_path,
                                                            read_only_mount):
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=2, keep=3)
  assert ckpt.maybe_save(2, states[0], {"next": 2})
  ckpt.wait()
  read_only_mount(ckpt.directory)
  start = time.time()
  with pytest.raises(TrainingError) as info:
    # The write fails in the background; the steps after it see that at once.
    for step in range(4, 100):
      ckpt.maybe_save(step, states[1], {"next": step})
      time.sleep(0.05)
  assert time.time() - start < 10
  assert str(info.value) == (
      f"the checkpoint of step 4 could not be written to {ckpt.directory} (the file system is "
      "read-only); the checkpoints already there are intact (newest: step 2): remount it "
      "writable, then run the same command to resume.")
  start = time.time()
  ckpt.wait(quiet=True)
  ckpt.close()  # No wait on Orbax's timeouts.
  assert time.time() - start < 10
  assert os.listdir(ckpt.directory) == ["2"]
  # Before training, such a folder is found at once.
  with pytest.raises(ConfigError, match=(
      f"^the checkpoint folder {ckpt.directory} cannot be written \\(the file system is "
      "read-only\\), so this run could not save its progress; remount it writable or choose "
      "another --workdir, then run the same command.$")):
    checkpoint.Checkpointer(str(tmp_path), every=2, keep=3).prepare_to_save(
        trainer.abstract_state)
  again = checkpoint.Checkpointer(str(tmp_path), every=2, keep=3)
  restored, data = again.restore(trainer.abstract_state)
  assert data == {"next": 2}
  assert_bitwise(restored, states[0])
  again.close()


def test_a_disk_too_full_for_the_checkpoints_fails_before_training(tmp_path, tiny_data_dir,
                                                                   monkeypatch):
  config = clip_config.get_config("steps=10,batch=64,data=shapes")
  config.data.update(data_dir=tiny_data_dir, variant="tiny")
  config.keep_checkpoints = 2
  usage = shutil.disk_usage(str(tmp_path))
  monkeypatch.setattr(checkpoint_storage.shutil, "disk_usage",
                      lambda path: usage._replace(free=5 * 2**20))
  compiled = []
  monkeypatch.setattr(Trainer, "init_state", lambda *a: compiled.append(a))
  with pytest.raises(ConfigError) as info:
    train.run(config, str(tmp_path / "w"))
  message = str(info.value)
  assert "has 5.0 MiB free but this run's checkpoints need about" in message, message
  assert "(3 x " in message and "lower config.keep_checkpoints" in message, message
  assert not compiled  # Nothing was initialised (compiled) before the check.


def test_a_save_that_fills_the_disk_stops_with_one_sentence(trainer, states, tmp_path,
                                                             monkeypatch):
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=1, keep=3)
  assert ckpt.maybe_save(1, states[0], {"next": 1})
  ckpt.wait()

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(ckpt._manager, "save", full)
  with pytest.raises(TrainingError) as info:
    ckpt.maybe_save(2, states[1], {"next": 2})
  assert str(info.value) == (
      f"the checkpoint of step 2 could not be written to {ckpt.directory} (the disk is full); "
      "the checkpoints already there are intact (newest: step 1): free some space or lower "
      "config.keep_checkpoints, then run the same command to resume.")

  monkeypatch.undo()

  # An asynchronous save's failure surfaces when waiting, wrapped in another error.
  def failing(error):
    def wait():
      try:
        raise error
      except OSError as e:
        raise RuntimeError("async save failed") from e
    return wait
  for step, error, quiet, message in (
      (3, OSError(errno.EDQUOT, "Disk quota exceeded"), False,
       r"step 3 could not be written .* \(the disk quota is exceeded\).* free some space, "
       "raise the quota or lower"),
      (4, RuntimeError("tensorstore broke"), True, None),  # A stopping run logs it instead.
      (5, RuntimeError("tensorstore broke"), False, r"\(RuntimeError: tensorstore broke\)")):
    assert ckpt.maybe_save(step, states[1], {"next": step})
    ckpt._manager.wait_until_finished()  # The real save completes...
    monkeypatch.setattr(ckpt._manager, "wait_until_finished", failing(error))  # ...but fails.
    if quiet:
      ckpt.wait(quiet=True)
    else:
      with pytest.raises(TrainingError, match=message):
        ckpt.wait()
    monkeypatch.undo()
  ckpt.close()
