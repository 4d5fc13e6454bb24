"""Where a run's scalars and images go: TensorBoard always, Weights & Biases on request.

`create(workdir, config)` returns a clu MetricWriter. The console and log file get their own
short lines from `progress`; the writers here are not echoed there (clu's default writer
would print every scalar of every log step on one long line).

    config.wandb.enabled=True   adds `WandbWriter` (pip install lang_image[wandb]); it logs
                                the same scalar names and images (as wandb.Image) at the
                                same steps; config.wandb.mode='offline' (or WANDB_MODE)
                                writes under W/wandb without a network.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from clu import metric_writers

from lang_image import storage
from lang_image.errors import ConfigError


class WandbWriter(metric_writers.MetricWriter):
  """A clu MetricWriter that logs to a wandb run (scalars, images, hparams as its config)."""

  def __init__(self, workdir: str, wandb_cfg, run_config: dict | None = None):
    try:
      import wandb  # noqa: PLC0415
    except ImportError:
      raise ConfigError("config.wandb.enabled=True needs the wandb package; install it with "
                        "pip install 'lang_image[wandb]' or switch it off.") from None
    self._wandb = wandb
    # wandb keeps its files in a local folder: the workdir, or for a URL a local stand-in.
    local = (os.path.join(tempfile.gettempdir(), "lang_image_wandb", storage.safe_name(workdir))
             if storage.is_remote(workdir) else workdir)
    os.makedirs(local, exist_ok=True)
    self.run = wandb.init(
        project=wandb_cfg.project or None, entity=wandb_cfg.entity or None,
        name=wandb_cfg.name or storage.path(workdir).name,
        dir=local, mode=wandb_cfg.mode or None, config=run_config or {},
        id=_run_id(workdir), resume="allow", reinit=True)

  def write_summaries(self, step, values, metadata=None):
    self.write_scalars(step, {k: float(np.asarray(v)) for k, v in values.items()})

  def write_scalars(self, step, scalars):
    self.run.log({k: float(v) for k, v in scalars.items()}, step=int(step))

  def write_images(self, step, images):
    logged = {}
    for key, batch in images.items():
      batch = np.asarray(batch)
      if batch.ndim == 3:
        batch = batch[None]
      logged[key] = [self._wandb.Image(np.asarray(b, np.uint8)) for b in batch]
      if len(logged[key]) == 1:
        logged[key] = logged[key][0]
    self.run.log(logged, step=int(step))

  def write_videos(self, step, videos):
    pass  # lang_image writes no videos.

  def write_audios(self, step, audios, *, sample_rate):
    pass  # nor audio.

  def write_texts(self, step, texts):
    self.run.log(dict(texts), step=int(step))

  def write_histograms(self, step, arrays, num_buckets=None):
    self.run.log({k: self._wandb.Histogram(np.asarray(v)) for k, v in arrays.items()},
                 step=int(step))

  def write_hparams(self, hparams):
    self.run.config.update(dict(hparams), allow_val_change=True)

  def flush(self):
    pass  # wandb streams as it logs.

  def close(self):
    self.run.finish()


def _run_id(workdir: str) -> str:
  """One wandb run per workdir: a resumed training run continues the same wandb run."""
  path = storage.join(workdir, "wandb_run_id.txt")
  if storage.exists(path):
    return storage.read_text(path).strip()
  import uuid  # noqa: PLC0415
  run_id = uuid.uuid4().hex[:12]
  storage.write_text(path, run_id)
  return run_id


def create(workdir: str, config, *, primary: bool = True) -> metric_writers.MetricWriter:
  """TensorBoard event files in `workdir` (and wandb if configured) on the primary process;
  nothing on the others."""
  if not primary:
    return metric_writers.MultiWriter([])
  writers = [metric_writers.SummaryWriter(workdir)]
  wandb_cfg = config.get("wandb")
  if wandb_cfg is not None and wandb_cfg.enabled:
    writers.append(WandbWriter(workdir, wandb_cfg, config.to_dict()))
  return metric_writers.AsyncMultiWriter(writers)
