"""The four cases of checkpoints gone bad, run from the command line as a user meets them:
the exit code, the one sentence printed, and that the last good checkpoint still restores
bitwise. Each starts from a copy of one 4-step run with checkpoints at steps 2 and 4."""

import json
import os
import shutil
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import damage
import read_only_folders
from cli_runs import env, saved_state, train_command
from configs import clip as clip_config
from lang_image import checkpoint, checkpoint_integrity as integrity, parallel, saved_config
from lang_image.data import pipeline
from lang_image.trainer import Trainer

pytestmark = pytest.mark.slow

NO_EVAL = ["--config.eval.zero_shot=False", "--config.eval.retrieval=False",
           "--config.eval.linear_probe=False", "--config.eval.knn=False",
           "--config.eval.pictures=False"]


def command(workdir, data_dir, steps, *extra, log_every=10):
  return train_command(workdir, data_dir, *NO_EVAL, "--config.checkpoint_every=2", *extra,
                       steps=steps, log_every=log_every)


def run(cmd, prefix=()):
  start = time.time()
  done = subprocess.run([*prefix, *cmd], env=env(), capture_output=True, text=True,
                        timeout=900)
  return done, time.time() - start


def errors_of(done):
  return [l for l in done.stderr.splitlines() if l.startswith("error:")]


def warnings_of(done, phrase):
  return [l.split("] ", 1)[1] for l in done.stderr.splitlines()
          if l.startswith("W") and phrase in l]


def steps_in(workdir):
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())


def assert_bitwise(got, want):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tiny_data_dir):
  """A finished 4-step run with checkpoints at steps 2 and 4, and their states."""
  workdir = str(tmp_path_factory.mktemp("base") / "run")
  done, _ = run(command(workdir, tiny_data_dir, 4))
  assert done.returncode == 0, done.stderr[-3000:]
  assert steps_in(workdir) == [2, 4]
  return workdir, {step: saved_state(workdir, step) for step in (2, 4)}


@pytest.fixture
def workdir(base_run, tmp_path):
  path = str(tmp_path / "run")
  shutil.copytree(base_run[0], path)
  return path


def unfinished(workdir):
  """As if the run was killed after its last checkpoint, before it wrote W/config.json: the
  same command then resumes (instead of reporting a finished run) and, training the same
  steps again, saves the same checkpoints."""
  os.remove(os.path.join(workdir, saved_config.FILE))


def test_4_kib_overwritten_in_the_newest_checkpoint(base_run, workdir, tiny_data_dir):
  changed = damage.overwrite_4_kib_silently(workdir, 4)
  unfinished(workdir)
  done, _ = run(command(workdir, tiny_data_dir, 4))  # The same command again.
  assert done.returncode == 0, done.stderr[-3000:]
  newest = os.path.join(workdir, "checkpoints", "4")
  lines = warnings_of(done, "Checkpoint ")
  assert len(lines) == 1 and lines[0].startswith(
      f"Checkpoint {newest} failed its integrity check: {len(changed)} of its "), lines
  assert changed[0] in lines[0] and lines[0].endswith("; skipping it for an older one."), lines
  assert "Resumed from checkpoint step 2 " in done.stderr
  assert steps_in(workdir) == [2, 4]
  assert_bitwise(saved_state(workdir, 2), base_run[1][2])
  # Steps 3 and 4 trained again from step 2 save the checkpoint that was damaged, bitwise.
  assert_bitwise(saved_state(workdir, 4), base_run[1][4])


def test_a_restored_state_holding_nan(base_run, workdir, tiny_data_dir):
  # Checkpoint 4 rewritten as a version that saved any state would have: intact bytes,
  # checksums that match, and one optimizer array holding a NaN.
  config = clip_config.get_config("steps=4,batch=64,data=shapes")
  config.data.update(data_dir=tiny_data_dir, variant="tiny")
  trainer = Trainer(config, parallel.make_mesh(config.mesh),
                    pipeline.open_for(config).tokenizer.vocab_size)
  ckpt = checkpoint.Checkpointer(workdir, 2, 3)
  state, data = ckpt.restore(trainer.abstract_state, 4)
  ckpt.close()
  hit = jax.tree_util.tree_leaves_with_path(state["opt_state"])[3][0]
  state["opt_state"] = jax.tree_util.tree_map_with_path(
      lambda p, x: x.at[(0,) * x.ndim].set(jnp.nan) if p == hit else x, state["opt_state"])
  checksums, nonfinite = integrity.Summarizer().summarize(state)
  assert len(nonfinite) == 1
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  manager.delete(4)
  manager.save(4, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data),
      integrity=ocp.args.JsonSave(integrity.record(checksums, data, 0))))
  manager.wait_until_finished()
  manager.close()
  unfinished(workdir)

  done, _ = run(command(workdir, tiny_data_dir, 4))  # The same command again.
  assert done.returncode == 0, done.stderr[-3000:]
  newest = os.path.join(workdir, "checkpoints", "4")
  assert warnings_of(done, "Checkpoint ") == [
      f"Checkpoint {newest} holds NaN or infinite values in 1 of its {len(checksums)} arrays "
      f"({nonfinite[0]}); skipping it for an older one."]
  assert "Resumed from checkpoint step 2 " in done.stderr
  assert_bitwise(saved_state(workdir, 2), base_run[1][2])
  assert_bitwise(saved_state(workdir, 4), base_run[1][4])


def test_the_rerun_after_a_nonfinite_stop_stops_again_and_names_the_good_checkpoint(
    base_run, workdir, tiny_data_dir):
  # A learning rate of 1e30 makes every update non-finite (its norm overflows), so every step
  # from step 5 on is skipped, and the save due at step 6 waits for a finite step.
  cmd = command(workdir, tiny_data_dir, 12, "--config.optim.lr=1e30",
                "--config.max_nonfinite_steps=3")
  sentence = (
      "error: the last 3 steps (up to step 7) all had a non-finite loss or gradient norm, so "
      "training stopped without saving them; lower config.optim.lr, check the data or raise "
      "config.max_nonfinite_steps (0 never stops), then rerun to resume from checkpoint step "
      f"4 ({os.path.join(workdir, 'checkpoints', '4')}), the newest, saved while training was "
      "finite.")
  for attempt in ("first", "rerun"):
    done, _ = run(cmd)
    assert done.returncode == 1, (attempt, done.stderr[-3000:])
    assert errors_of(done) == [sentence], (attempt, done.stderr[-3000:])
    assert "Resumed from checkpoint step 4 " in done.stderr, attempt
    assert steps_in(workdir) == [2, 4], attempt
  assert_bitwise(saved_state(workdir, 4), base_run[1][4])


def test_the_nonfinite_streak_is_saved_and_counts_on_after_a_restart(base_run, workdir,
                                                                       tiny_data_dir):
  # Preempted (SIGTERM) inside a non-finite streak: the checkpoint carries the streak.
  log = os.path.join(workdir, "first.log")
  cmd = command(workdir, tiny_data_dir, 40, "--config.optim.lr=1e30",
                "--config.max_nonfinite_steps=30", log_every=1)
  with open(log, "w") as err:
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=err)
  try:
    deadline = time.time() + 600
    while "non-finite loss or gradient norm" not in open(log).read():
      assert proc.poll() is None and time.time() < deadline, open(log).read()[-3000:]
      time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, open(log).read()[-3000:]
  finally:
    if proc.poll() is None:
      proc.kill()
  saved = max(steps_in(workdir))
  with open(os.path.join(workdir, "checkpoints", str(saved), "integrity", "metadata")) as f:
    streak = json.load(f)["nonfinite_streak"]
  assert saved >= 5 and streak >= 1

  done, _ = run(command(workdir, tiny_data_dir, 40, "--config.optim.lr=1e30",
                        f"--config.max_nonfinite_steps={streak + 2}"))
  assert done.returncode == 1, done.stderr[-3000:]
  path = lambda step: os.path.join(workdir, "checkpoints", str(step))
  assert errors_of(done) == [
      f"error: the last {streak + 2} steps (up to step {saved + 2}) all had a non-finite loss "
      "or gradient norm, so training stopped without saving them; lower config.optim.lr, "
      "check the data or raise config.max_nonfinite_steps (0 never stops), then rerun to "
      f"resume from checkpoint step {saved} ({path(saved)}), saved after {streak} non-finite "
      f"steps in a row; the newest saved while training was finite is step 4 ({path(4)})."]
  assert_bitwise(saved_state(workdir, 4), base_run[1][4])


@pytest.mark.parametrize("how", ["permission", "read_only_mount"])
def test_a_checkpoint_folder_that_cannot_be_written(base_run, workdir, tiny_data_dir, how):
  ckpts = os.path.join(workdir, "checkpoints")
  prefix = []
  if how == "permission":
    prefix, why_not = read_only_folders.permission_prefix()
    if why_not:
      pytest.skip(f"no unwritable folder for root: {why_not}")
    read_only_folders.make_unwritable(ckpts)
    cause, fix = "permission denied", "make the folder writable for this user"
  else:
    why_not = read_only_folders.mount_read_only(ckpts)
    if why_not:
      pytest.skip(f"no read-only folder for root: {why_not}")
    cause, fix = "the file system is read-only", "remount it writable"
  try:
    done, seconds = run(command(workdir, tiny_data_dir, 8), prefix)
  finally:
    if how == "permission":
      os.chmod(ckpts, 0o755)
    else:
      read_only_folders.unmount(ckpts)
  assert done.returncode == 2, done.stderr[-3000:]
  assert errors_of(done) == [
      f"error: the checkpoint folder {ckpts} cannot be written ({cause}), so this run could "
      f"not save its progress; {fix} or choose another --workdir, then run the same command."]
  assert "Traceback" not in done.stderr and "Resumed from" not in done.stderr
  assert seconds < 120, seconds  # Before any training step: no wait on Orbax's timeouts.
  assert steps_in(workdir) == [2, 4]
  assert_bitwise(saved_state(workdir, 2), base_run[1][2])
  assert_bitwise(saved_state(workdir, 4), base_run[1][4])


def test_a_disk_that_fills_during_the_run(tmp_path, tiny_data_dir):
  """The disk fills after the checkpoint of step 4: the save of step 8 fails in Orbax's
  background writer, and the run stops within seconds with one sentence."""
  workdir = str(tmp_path / "run")
  ckpts = os.path.join(workdir, "checkpoints")
  os.makedirs(ckpts)
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", ckpts],
                           capture_output=True, text=True)
  if mounted.returncode:
    pytest.skip(f"no small disk to fill: mounting a tmpfs is not permitted here "
                f"({mounted.stderr.strip()})")
  try:
    cmd = train_command(workdir, tiny_data_dir, *NO_EVAL, "--config.checkpoint_every=4",
                        steps=40)
    with open(str(tmp_path / "log"), "w") as err:
      proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
      deadline = time.time() + 600
      while not os.path.isdir(os.path.join(ckpts, "4")):
        assert proc.poll() is None and time.time() < deadline, open(err.name).read()[-3000:]
        time.sleep(0.1)
      filled = time.time()
      before = saved_state(workdir, 4)
      with open(os.path.join(ckpts, "filler"), "wb") as f:
        try:
          while True:
            f.write(b"\0" * 2**20)
        except OSError:
          pass
      code = proc.wait(timeout=300)
      seconds = time.time() - filled
    finally:
      if proc.poll() is None:
        proc.kill()
    stderr = open(err.name).read()
    assert code == 1, stderr[-3000:]
    assert seconds < 60, seconds
    assert [l for l in stderr.splitlines() if l.startswith("error:")] == [
        f"error: the checkpoint of step 8 could not be written to {ckpts} (the disk is full); "
        "the checkpoints already there are intact (newest: step 4): free some space or lower "
        "config.keep_checkpoints, then run the same command to resume."], stderr[-3000:]
    assert "Traceback" not in stderr
    assert steps_in(workdir) == [4]
    assert_bitwise(saved_state(workdir, 4), before)
  finally:
    subprocess.run(["umount", ckpts], capture_output=True)
