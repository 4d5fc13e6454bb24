"""Writes the repository's address into the notebooks from the one place it is kept: the
`Repository:` line of notebooks/README.md.

    python notebooks/sync_repository.py           # rewrite the notebooks from that line
    python notebooks/sync_repository.py --check   # exit 1 if a notebook does not match it

Each notebook gets an "Open in Colab" badge for that address in its first cell and clones it
on Colab. While the line says `none` (no public address yet), the first cell says how to
open the notebook locally instead, and on Colab the notebook stops with one sentence.
"""

import argparse
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "README.md")
ADDRESS_LINE = re.compile(r"^Repository: (\S+)\s*$", re.MULTILINE)
GITHUB = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+$")
BEGIN = "<!-- repository: written by notebooks/sync_repository.py -->"
END = "<!-- /repository -->"
URL_LINE = re.compile(r'^REPO_URL = ".*"$', re.MULTILINE)


def address(readme_text: str) -> str:
  """The address named by the README's `Repository:` line; '' for `none`."""
  found = ADDRESS_LINE.findall(readme_text)
  if len(found) != 1:
    raise SystemExit(f"{README} needs exactly one line 'Repository: https://github.com/OWNER/"
                     f"NAME' (or 'Repository: none'); it has {len(found)}.")
  value = found[0]
  if value == "none":
    return ""
  if not GITHUB.match(value):
    raise SystemExit(f"Repository address {value!r} in {README} is not of the form "
                     "https://github.com/OWNER/NAME (Colab opens notebooks from GitHub); fix "
                     "that line.")
  return value


def how_to_open(url: str, name: str) -> str:
  """The markdown between BEGIN and END in a notebook's first cell."""
  local = (f"Locally, from a checkout: `pip install -e '.[test]' jupyterlab && jupyter lab "
           f"notebooks/{name}`, or open the file in VS Code (its Jupyter extension uses the "
           "`ipykernel` that `.[test]` installs).")
  if not url:
    return local
  colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
  return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
          f"({colab}/blob/main/notebooks/{name})\n\n{local}")


def synced(notebook: dict, url: str, name: str) -> dict:
  """The notebook with the address written into its first markdown and first code cell."""
  cells = notebook["cells"]
  markdown = next(c for c in cells if c["cell_type"] == "markdown")
  code = next(c for c in cells if c["cell_type"] == "code")
  text = "".join(markdown["source"])
  start, stop = text.find(BEGIN), text.find(END)
  if start < 0 or stop < start:
    raise SystemExit(f"notebooks/{name}: its first markdown cell needs the lines {BEGIN} and "
                     f"{END} around the text this script writes.")
  text = f"{text[:start]}{BEGIN}\n{how_to_open(url, name)}\n{text[stop:]}"
  source = "".join(code["source"])
  if len(URL_LINE.findall(source)) != 1:
    raise SystemExit(f'notebooks/{name}: its first code cell needs one line REPO_URL = "...".')
  source = URL_LINE.sub(f"REPO_URL = {json.dumps(url)}", source)
  markdown["source"] = text.splitlines(keepends=True)
  code["source"] = source.splitlines(keepends=True)
  return notebook


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if a notebook does not match the README")
  args = parser.parse_args(argv)
  with open(README, encoding="utf-8") as f:
    url = address(f.read())
  stale = []
  for path in sorted(glob.glob(os.path.join(HERE, "*.ipynb"))):
    with open(path, encoding="utf-8") as f:
      before = f.read()
    notebook = synced(json.loads(before), url, os.path.basename(path))
    after = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if after != before:
      stale.append(os.path.basename(path))
      if not args.check:
        with open(path, "w", encoding="utf-8") as f:
          f.write(after)
  if args.check and stale:
    print(f"{', '.join(stale)} do not match the Repository line of {README}; run python "
          "notebooks/sync_repository.py.", file=sys.stderr)
    return 1
  done = "rewrote " + ", ".join(stale) if stale and not args.check else "notebooks match"
  print(f"{done}; repository address: {url or 'none (they say how to open them locally)'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
