"""Both notebooks run top to bottom, with tiny settings, in a fresh Jupyter kernel."""

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

from cli_runs import COMPILE_CACHE_ENV, ROOT

# Towers of one 32-wide block and small nCLIP heads: the quickstart trains in seconds.
TINY_XCLIP = {
    "model.image": "w32-d1-h2-mlp64/8", "model.text": "w32-d1-h2-mlp64",
    "model.embed_dim": 32, "model.image_size": 32,
    "objectives.nclip.prototypes": 64, "objectives.nclip.hidden_dim": 32,
    "objectives.nclip.bottleneck_dim": 16,
    "eval.linear_probe": False, "eval.knn": False, "eval.batch_size": 240, "eval_every": 0,
}


def execute(name, tmp_path):
  """Runs notebooks/<name>.ipynb; fails on the first cell that raises. Returns the notebook."""
  notebook = nbformat.read(os.path.join(ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}}).execute()
  nbformat.write(notebook, str(tmp_path / f"{name}.ipynb"))  # kept for inspection
  return notebook


def outputs(notebook, kind):
  return [o for cell in notebook.cells if cell.cell_type == "code"
          for o in cell.get("outputs", []) if o.get("output_type") == kind]


@pytest.fixture(scope="module")
def notebook_env(tiny_data_dir):
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    patch.setenv("LANG_IMAGE_DATA_DIR", tiny_data_dir)
    for name, value in COMPILE_CACHE_ENV.items():
      patch.setenv(name, value)
    yield patch


@pytest.fixture(scope="module")
def quickstart(notebook_env, tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("quickstart")
  workdir = str(tmp_path / "run")
  notebook_env.setenv("LANG_IMAGE_NB_STEPS", "20")
  notebook_env.setenv("LANG_IMAGE_NB_BATCH", "32")
  notebook_env.setenv("LANG_IMAGE_NB_DATA", "tiny")
  notebook_env.setenv("LANG_IMAGE_NB_WORKDIR", workdir)
  notebook_env.setenv("LANG_IMAGE_NB_OVERRIDES", json.dumps(TINY_XCLIP))
  return workdir, execute("quickstart", tmp_path)


def test_quickstart_trains_and_shows_zero_shot_predictions(quickstart):
  workdir, notebook = quickstart
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["20"]
  with open(os.path.join(workdir, "config.json")) as f:
    assert set(json.load(f)["objectives"]) == {"clip", "nclip"}
  # Training curves, the prediction grid and the two run pictures are shown as images.
  assert len([o for o in outputs(notebook, "display_data") if "image/png" in o["data"]]) == 4
  printed = "".join(o["text"] for o in outputs(notebook, "stream") if o["name"] == "stdout")
  assert printed.count(" -> ") == 8  # one line per image with the custom class names
  # The training cell shows its phases and progress.
  logged = "".join(o["text"] for o in outputs(notebook, "stream") if o["name"] == "stderr")
  assert "Compiling the training step" in logged and "step 20/20 (100%) | loss " in logged


def test_compare_objectives_shows_runs_side_by_side(quickstart, trained_run, notebook_env,
                                                    tmp_path):
  assert trained_run.result.returncode == 0, trained_run.result.stderr[-3000:]
  notebook_env.setenv("LANG_IMAGE_NB_WORKDIRS", f"{trained_run.workdir},{quickstart[0]}")
  notebook = execute("compare_objectives", tmp_path)
  printed = "".join(o["text"] for o in outputs(notebook, "stream") if o["name"] == "stdout")
  assert "clip: step 60" in printed and "clip+nclip: step 20" in printed
  assert "| zero_shot/top1 |" in printed
  assert len([o for o in outputs(notebook, "display_data") if "image/png" in o["data"]]) == 2
