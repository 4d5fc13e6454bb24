"""What a run prints while it works: phases with their time, a heartbeat when nothing else is
said, progress lines with losses per term, rates and ETA, counters only when non-zero."""

import io
import time

from absl import logging

from lang_image import progress
from configs import nclip as nclip_config, clip as clip_config


class Lines(logging.logging.Handler):
  def __init__(self):
    super().__init__()
    self.lines = []

  def emit(self, record):
    self.lines.append(record.getMessage())


def capture(monkeypatch):
  lines = Lines()
  handler = logging.get_absl_handler()
  monkeypatch.setattr(handler, "handle", lambda record: (
      all(f.filter(record) for f in handler.filters) and lines.emit(record)))
  return lines


def test_phases_announce_themselves_and_a_silent_phase_gets_heartbeats(monkeypatch):
  lines = capture(monkeypatch)
  monkeypatch.setattr(progress, "HEARTBEAT_S", 0.6)
  counter = progress.Counter(10, "scenes rendered")
  with progress.watch():
    with progress.phase("Generating the data", counter):
      for _ in range(4):
        counter.add(2)
        time.sleep(0.7)
  assert lines.lines[0] == "Generating the data ..."
  beats = [l for l in lines.lines if l.startswith("... still generating the data: ")]
  assert beats and "/10 scenes rendered" in beats[-1]
  assert lines.lines[-1].startswith("Generating the data: done in ")


def test_no_heartbeat_outside_a_phase_or_after_the_run(monkeypatch):
  lines = capture(monkeypatch)
  monkeypatch.setattr(progress, "HEARTBEAT_S", 0.3)
  with progress.watch():
    time.sleep(1.5)
  time.sleep(1.2)
  assert not [l for l in lines.lines if "still" in l]


def test_progress_lines_show_losses_rates_eta_and_nonzero_counters(monkeypatch):
  lines = capture(monkeypatch)
  clock = iter([100.0, 110.0, 120.0])
  report = progress.Progress(0, 100, 32, log_every=10, tty=False, clock=lambda: next(clock))
  report(1, {"loss": 1.5, "clip/loss": 4.0, "nclip/loss": -2.5, "grad_norm": 3.0})  # t=100
  report(6, {"loss": 1.25, "clip/loss": 3.75, "nclip/loss": -2.5})  # t=110: 5 steps in 10 s
  assert lines.lines[-1] == ("step 6/100 (6%) | loss 1.25 (clip 3.75, nclip -2.5) | "
                             "0.50 steps/s, 16 pairs/s, ETA 3m08s")
  report.interval(10, {"loss": 1.0, "clip/loss": 3.0, "nclip/loss": -2.0,  # t=120
                       "nclip/mean_entropy_ratio": 0.8},
                  {"image_unreadable": 3, "caption_missing": 0})
  last = lines.lines[-1]
  assert last.startswith("step 10/100 (10%) | loss 1 (clip 3, nclip -2) | 0.45 steps/s")
  assert "image_unreadable 3" in last and "caption_missing" not in last
  assert "nclip/mean_entropy_ratio 0.8" in last and last.endswith("log-interval means")


def test_a_terminal_gets_a_bar_redrawn_in_place():
  stream = io.StringIO()
  report = progress.Progress(0, 40, 8, log_every=100, stream=stream, tty=True)
  report(1, {"loss": 2.0})
  report(40, {"loss": 1.0})
  assert stream.getvalue().count("\r[") == 2
  assert "\r[" + "#" * 30 + "] step 40/40 (100%) | loss 1" in stream.getvalue()


def test_the_negative_loss_is_explained_only_where_it_can_occur():
  notes = progress.loss_notes(nclip_config.get_config().objectives)
  assert len(notes) == 1 and "can be negative" in notes[0]
  assert progress.loss_notes(clip_config.get_config().objectives) == []
  config = nclip_config.get_config()
  config.objectives.nclip.anti_collapse = "sinkhorn"
  assert progress.loss_notes(config.objectives) == []


def test_eval_summary_is_short():
  metrics = {"zero_shot/top1": 51.234, "zero_shot/top5": 90.0, "retrieval/i2t_r1": 12.5,
             "retrieval/t2i_mean_rank": 3.0, "knn/top1": 40.0}
  assert progress.eval_summary(metrics) == ("zero-shot top1 51.2, top5 90.0, i2t R@1 12.5, "
                                            "kNN top1 40.0")


def test_slow_training_steps_get_heartbeats(monkeypatch):
  lines = capture(monkeypatch)
  monkeypatch.setattr(progress, "HEARTBEAT_S", 0.5)
  monkeypatch.setattr(progress, "LINE_S", 100.0)
  report = progress.Progress(0, 3, 8, log_every=100, tty=False)
  with progress.watch():
    report(1, {"loss": 2.0})
    time.sleep(1.6)
    report(2, {"loss": 1.0})
  assert any(l.startswith("... still training: step 1/3 dispatched") for l in lines.lines)
