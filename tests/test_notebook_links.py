"""The notebooks' repository address is kept in one place (notebooks/README.md) and written
into them by notebooks/sync_repository.py."""

import json
import os
import shutil
import subprocess
import sys

from cli_runs import ROOT

NOTEBOOKS = os.path.join(ROOT, "notebooks")
NAMES = ("compare_objectives.ipynb", "quickstart.ipynb")


def sync(directory, *args):
  return subprocess.run([sys.executable, os.path.join(directory, "sync_repository.py"), *args],
                        capture_output=True, text=True, timeout=60)


def copy_with_address(tmp_path, line):
  """A copy of notebooks/ whose README names `line` as the repository."""
  directory = tmp_path / "notebooks"
  shutil.copytree(NOTEBOOKS, directory)
  readme = directory / "README.md"
  readme.write_text(readme.read_text().replace("\nRepository: none", f"\nRepository: {line}"))
  return str(directory)


def cells(path):
  with open(path, encoding="utf-8") as f:
    notebook = json.load(f)
  first = lambda kind: "".join(next(c for c in notebook["cells"]
                                    if c["cell_type"] == kind)["source"])
  return first("markdown"), first("code")


def test_committed_notebooks_match_the_one_address():
  result = sync(NOTEBOOKS, "--check")
  assert result.returncode == 0, result.stderr
  for name in NAMES:
    markdown, code = cells(os.path.join(NOTEBOOKS, name))
    assert 'REPO_URL = ""' in code and "if not REPO_URL:" in code
    assert f"jupyter lab notebooks/{name}" in markdown and "VS Code" in markdown
  placeholders = []
  for path in ("README.md", "notebooks/README.md", *(f"notebooks/{n}" for n in NAMES)):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
      placeholders += [path] if "OWNER/lang_image" in f.read() else []
  assert not placeholders


def test_an_address_becomes_badges_and_the_clone_url(tmp_path):
  url = "https://github.com/someone/lang_image"
  directory = copy_with_address(tmp_path, url)
  assert sync(directory, "--check").returncode == 1
  result = sync(directory)
  assert result.returncode == 0 and "rewrote compare_objectives.ipynb, quickstart.ipynb" in (
      result.stdout)
  for name in NAMES:
    markdown, code = cells(os.path.join(directory, name))
    assert (f"(https://colab.research.google.com/github/someone/lang_image/blob/main/notebooks/"
            f"{name})") in markdown
    assert f'REPO_URL = "{url}"' in code
  assert sync(directory, "--check").returncode == 0
  # Back to no address: the notebooks are byte for byte the committed ones again.
  readme = os.path.join(directory, "README.md")
  shutil.copy(os.path.join(NOTEBOOKS, "README.md"), readme)
  assert sync(directory).returncode == 0
  for name in NAMES:
    with open(os.path.join(directory, name), "rb") as a, open(
        os.path.join(NOTEBOOKS, name), "rb") as b:
      assert a.read() == b.read()


def test_an_address_colab_cannot_open_is_refused(tmp_path):
  directory = copy_with_address(tmp_path, "https://gitlab.com/someone/lang_image")
  result = sync(directory)
  assert result.returncode == 1
  assert "is not of the form https://github.com/OWNER/NAME" in result.stderr
