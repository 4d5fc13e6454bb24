"""Runs that meet trouble: non-finite steps are skipped (and stop the run if they persist),
preemption saves and exits cleanly, a run killed at any moment resumes exactly. (Damaged
checkpoints and failing saves: test_checkpoint.py, test_checkpoint_integrity.py.)"""

import json
import os
import random
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from cli_runs import env, saved_state, train_command as command
from lang_image import parallel, stopping, train
from lang_image.trainer import Trainer
from lang_image.data import pipeline
from test_train import VOCAB, pico_towers, small_config, synthetic_batch  # noqa: F401


def one_device_mesh():
  return parallel.make_mesh(ConfigDict(dict(data=1, fsdp=1)), devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def trainer():
  return Trainer(small_config(), one_device_mesh(), VOCAB)


@pytest.fixture(scope="module")
def states(trainer):
  """Two different states, built once: initialising compiles for seconds."""
  first = trainer.init_state(0)
  return first, jax.tree.map(lambda x: x + 1, first)


def float_batch(seed, nan=False):
  """synthetic_batch with float32 pixels (the model takes them as it takes uint8), so that a
  batch can hold NaN without another compiled program."""
  batch = synthetic_batch(seed)
  batch["image"] = batch["image"].astype(np.float32)
  if nan:
    batch["image"][3, 5, 7, 0] = np.nan
  return batch


def test_nonfinite_step_is_skipped_and_the_next_one_trains(trainer, states):
  state = jax.tree.map(jnp.copy, states[0])  # The step donates its input.
  with jax.set_mesh(trainer.mesh):
    def step(i, nan=False):
      new, metrics = trainer.train_step(
          state, pipeline.to_global(float_batch(i, nan), trainer.batch_sharding))
      return new, jax.device_get(metrics)

    state, metrics = step(0)
    assert metrics["nonfinite"] == 0.0 and np.isfinite(metrics["loss"])
    before = jax.device_get(state)  # The step donates its input state.
    state, metrics = step(1, nan=True)
    assert metrics["nonfinite"] == 1.0
    assert metrics["loss"] == 0.0 and metrics["grad_norm"] == 0.0  # zeros, not NaN
    after = jax.device_get(state)
    assert int(after["step"]) == int(before["step"]) + 1  # the counter still advances
    for part in ("params", "opt_state", "rest", "rng"):
      for a, b in zip(jax.tree.leaves(before[part]), jax.tree.leaves(after[part]), strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), part  # bit for bit
    state, metrics = step(2)
    assert metrics["nonfinite"] == 0.0 and np.isfinite(metrics["loss"])
    trained = jax.device_get(state)["params"]
    assert any(not np.array_equal(a, b)
               for a, b in zip(jax.tree.leaves(after["params"]), jax.tree.leaves(trained)))
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(trained))


def test_guard_stops_after_consecutive_nonfinite_steps():
  guard = stopping.NonfiniteGuard(3)
  for step, flag in enumerate([1, 1, 0, 1, 1], 1):  # a finite step resets the count
    guard.observe(step, np.float32(flag))
  with pytest.raises(train.TrainingError, match=r"last 3 steps \(up to step 6\)"):
    guard.observe(6, np.float32(1))
  resumed = stopping.NonfiniteGuard(3, streak=2)  # A streak saved with the checkpoint.
  with pytest.raises(train.TrainingError, match=r"last 3 steps \(up to step 9\)"):
    resumed.observe(9, np.float32(1))
  never = stopping.NonfiniteGuard(0)
  for step in range(100):
    never.observe(step, np.float32(1))


def test_interval_means_leave_out_skipped_steps():
  means = train._interval_means({"loss": np.float32(6.0), "nonfinite": np.float32(1.0)}, 4)
  assert means == {"loss": 2.0, "nonfinite_steps": 1}
  assert train._interval_means({"loss": np.float32(0.0), "nonfinite": np.float32(2.0)}, 2) == {
      "nonfinite_steps": 2}


def stderr_lines(path):
  with open(path) as f:
    return f.read().splitlines()


def step_of(lines, phrase):
  """The step number right after `phrase` in the first line that has it; None if none does."""
  line = next((l for l in lines if phrase in l), None)
  return None if line is None else int(line.split(phrase)[1].split()[0].rstrip(":"))


def start_and_signal(cmd, log, ready, sig):
  """Starts `cmd` with stderr to `log`, sends `sig` once ready(stderr lines) holds; returns
  (exit code, seconds from the signal to the exit, stderr lines)."""
  with open(log, "w") as err:
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=err,
                            start_new_session=True)
  try:
    deadline = time.time() + 300
    while not ready(stderr_lines(log)):
      assert proc.poll() is None, "\n".join(stderr_lines(log)[-30:])
      assert time.time() < deadline, "the run did not get going"
      time.sleep(0.2)
    signalled = time.time()
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    return code, time.time() - signalled, stderr_lines(log)
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()


@pytest.mark.slow
def test_preempted_run_saves_its_step_exits_cleanly_and_resumes(tmp_path, tiny_data_dir):
  workdir = str(tmp_path / "run")
  ckpts = os.path.join(workdir, "checkpoints")
  # Only the preemption saves: the periodic checkpoint comes far later.
  cmd = command(workdir, tiny_data_dir, "--config.checkpoint_every=5000",
                steps=10000, log_every=2)
  metrics_file = os.path.join(workdir, train.TRAIN_METRICS)

  code, seconds, lines = start_and_signal(
      cmd, str(tmp_path / "first.log"), lambda _: os.path.exists(metrics_file), signal.SIGTERM)
  assert code == 0, "\n".join(lines[-30:])
  assert seconds < 30, seconds
  stopped = step_of(lines, "Preempted at step ")
  assert stopped is not None and stopped >= 2, lines[-30:]
  assert [int(s) for s in os.listdir(ckpts) if s.isdigit()] == [stopped]

  # The restart resumes there; Ctrl-C (SIGINT) stops it the same way, later.
  code, _, lines = start_and_signal(
      cmd, str(tmp_path / "second.log"),
      lambda lines: step_of(lines, "Resumed from checkpoint step ") is not None,
      signal.SIGINT)
  assert code == 0, "\n".join(lines[-30:])
  assert step_of(lines, "Resumed from checkpoint step ") == stopped
  again = step_of(lines, "Preempted at step ")
  assert again is not None and again > stopped
  assert max(int(s) for s in os.listdir(ckpts) if s.isdigit()) == again


@pytest.mark.slow
def test_persistently_nonfinite_run_stops_with_one_error_and_saves_none_of_it(
    tmp_path, tiny_data_dir):
  workdir = str(tmp_path / "run")
  # An infinite logit scale makes every step's loss non-finite; every update is skipped, so
  # the periodic saves wait for a finite step that never comes.
  result = subprocess.run(
      command(workdir, tiny_data_dir, "--config.model.logit_scale_init=inf",
              "--config.max_nonfinite_steps=5", "--config.checkpoint_every=2"),
      env=env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 1, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "last 5 steps (up to step 5)" in errors[0], result.stderr[-3000:]
  assert errors[0].endswith("then rerun to start from scratch (no checkpoint has been saved)."), \
      errors[0]
  assert os.listdir(os.path.join(workdir, "checkpoints")) == []


def checkpoint_steps(ckpts):
  """Steps of the complete checkpoints (Orbax renames a checkpoint into place when done)."""
  return sorted(int(s) for s in os.listdir(ckpts) if s.isdigit()) if os.path.isdir(ckpts) else []


def saving_now(ckpts):
  """Names of checkpoints being written (Orbax's temporary directories)."""
  try:
    return [s for s in os.listdir(ckpts) if "tmp" in s]
  except FileNotFoundError:
    return []


def logged_step(metrics_file):
  """The newest step in train_metrics.jsonl (log_every=1), 0 before the first."""
  try:
    with open(metrics_file) as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return 0
  return max((json.loads(l)["step"] for l in lines if l.endswith("}")), default=0)


def final_state(workdir, step):
  with open(os.path.join(workdir, "checkpoints", str(step), "data", "metadata")) as f:
    return saved_state(workdir, step), json.load(f)


@pytest.mark.slow
def test_run_killed_at_five_random_moments_ends_bitwise_equal_to_an_uninterrupted_one(
    tmp_path, tiny_data_dir):
  steps = 40
  extra = ["--config.checkpoint_every=4", "--config.keep_checkpoints=2",
           "--config.eval.zero_shot=False", "--config.eval.retrieval=False",
           "--config.eval.linear_probe=False", "--config.eval.knn=False",
           "--config.eval.pictures=False"]

  def cmd(workdir):
    return command(workdir, tiny_data_dir, *extra, steps=steps, log_every=1)

  reference = str(tmp_path / "reference")
  done = subprocess.run(cmd(reference), env=env(), capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]

  workdir = str(tmp_path / "chaos")
  ckpts = os.path.join(workdir, "checkpoints")
  metrics_file = os.path.join(workdir, train.TRAIN_METRICS)
  rng = random.Random(20261123)
  moments = ["starting", "saving", "training", "training", "training"]
  rng.shuffle(moments)
  history = []  # (moment, step logged at the kill, complete checkpoints, resumed step)
  for moment in moments + ["finish"]:
    log = str(tmp_path / f"run{len(history)}.log")
    before, complete = logged_step(metrics_file), checkpoint_steps(ckpts)
    with open(log, "w") as err:
      proc = subprocess.Popen(cmd(workdir), env=env(), stdout=subprocess.DEVNULL, stderr=err,
                              start_new_session=True)
    try:
      if moment == "finish":
        assert proc.wait(timeout=600) == 0, "\n".join(stderr_lines(log)[-30:])
      else:
        deadline = time.time() + 300
        if moment == "starting":  # Importing, restoring or compiling: before any new step.
          wait = rng.uniform(2.0, 8.0)
          ready = lambda: time.time() - started > wait and logged_step(metrics_file) == before
        elif moment == "saving":  # An Orbax temporary directory is there: mid-save.
          ready = lambda: bool(saving_now(ckpts))
        else:  # Some random time into training.
          wait, seen = rng.uniform(0.0, 2.5), []
          def ready():
            if not seen and logged_step(metrics_file) > before:
              seen.append(time.time())
            return bool(seen) and time.time() - seen[0] > wait
        started = time.time()
        while not ready():
          assert proc.poll() is None, (f"the run ended before the '{moment}' kill:\n"
                                       + "\n".join(stderr_lines(log)[-30:]))
          assert time.time() < deadline, f"no '{moment}' moment came"
          time.sleep(0.0005 if moment == "saving" else 0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if moment == "saving":
          assert saving_now(ckpts), "the kill came after the save had finished"
    finally:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    lines = stderr_lines(log)
    resumed = step_of(lines, "Resumed from checkpoint step ")
    fresh = any("starting from scratch" in l for l in lines)
    history.append((moment, logged_step(metrics_file), checkpoint_steps(ckpts), resumed))
    if moment != "starting":  # The run got past its restore (a 'starting' kill may not).
      # From the newest complete checkpoint the kills before left, or from scratch if none.
      assert (resumed, fresh) == ((complete[-1], False) if complete else (None, True)), history

  assert history[-1][2][-1] == steps, history
  assert sum(m == "training" for m, *_ in history) == 3
  assert any(h[1] > 0 for h in history[:-1]), history  # Kills landed mid-run, not only before.
  got, got_data = final_state(workdir, steps)
  want, want_data = final_state(reference, steps)
  assert got_data == want_data
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for path, a, b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(got),
                        jax.tree.leaves(want)):
    assert a.dtype == b.dtype and a.shape == b.shape, path[0]
    assert a.tobytes() == b.tobytes(), (jax.tree_util.keystr(path[0]), history)
