"""Paths that may live on cloud storage: the workdir, the data directory (shard index cache,
tokenizers), webdataset shards, tokenizer files and evaluation outputs.

A path is either local (made absolute, `~` expanded) or a URL whose scheme etils.epath serves
(`gs://`, `s3://`, `az://`, `hf://`): epath reaches them through tf.io.gfile when TensorFlow is
installed (s3:// then needs tensorflow-io's filesystem plugin) or through fsspec (gcsfs, s3fs,
...) otherwise. Orbax, clu's TensorBoard writer and tfds take the same epath paths. Nothing
here turns a URL into a local path: `gs://b/x` is never a local folder `gs:`.

Object stores have no append and no atomic rename; `write_text` / `write_bytes` write a
remote file in one piece (an object appears whole when its upload completes) and a local one
through a temporary file and a rename, and `append_text` rewrites a remote file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

from etils import epath

# URL schemes etils.epath knows (etils/epath/gpath.py); anything else would be taken for a
# local relative path such as './foo:/bar'.
SCHEMES = ("gs", "s3", "az", "hf")
# Where Orbax (tensorstore) can write checkpoints: local (or mounted) paths and gs://.
CHECKPOINT_SCHEMES = ("gs",)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(ValueError):
  """A path that cannot be used; the message is one sentence naming the fix."""


def scheme(path) -> str | None:
  """'gs' for 'gs://b/x', None for a local path."""
  match = _URL.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
  return match.group(1).lower() if match else None


def is_remote(path) -> bool:
  return scheme(path) is not None


def check(path, what: str) -> None:
  """Raises StorageError if `path` names a URL scheme nothing here can open."""
  found = scheme(path)
  if found is not None and found not in SCHEMES:
    raise StorageError(
        f"{what} '{path}' uses the URL scheme '{found}://', which lang_image cannot open; "
        f"give a local path or a URL with one of {', '.join(s + '://' for s in SCHEMES)}.")


def path(p, what: str = "path") -> epath.Path:
  """An epath.Path for a local path (absolute) or a supported URL."""
  check(p, what)
  if is_remote(p):
    return epath.Path(os.fspath(p))
  return epath.Path(os.path.abspath(os.path.expanduser(os.fspath(p))))


def join(base, *parts) -> str:
  """`base/parts...` as a string, keeping a URL a URL."""
  return os.fspath(path(base).joinpath(*parts))


def safe_name(name: str) -> str:
  """`name` (an eval set such as 'wds:/data/val/{0..3}.tar') as one file name: characters
  other than letters, digits, '.', '-' and '_' become '_', so that no folder named 'wds:' (or
  a path) is made from it."""
  return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "_"


def exists(p) -> bool:
  return path(p).exists()


def makedirs(p) -> None:
  path(p).mkdir(parents=True, exist_ok=True)


def read_bytes(p) -> bytes:
  return path(p).read_bytes()


def read_text(p) -> str:
  return path(p).read_text()


def write_bytes(p, data: bytes) -> None:
  """Writes `data` to `p` so that readers see the old file or the new one, never a part."""
  target = path(p)
  target.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(p):
    target.write_bytes(data)
    return
  fd, tmp = tempfile.mkstemp(dir=os.fspath(target.parent), prefix=f".{target.name}.",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users.
    os.replace(tmp, os.fspath(target))
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(p, text: str) -> None:
  write_bytes(p, text.encode("utf-8"))


def append_text(p, text: str) -> None:
  """Appends to a local file; rewrites a remote one (object stores cannot append)."""
  if not is_remote(p):
    target = path(p)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(os.fspath(target), "a", encoding="utf-8") as f:
      f.write(text)
    return
  old = read_text(p) if exists(p) else ""
  write_text(p, old + text)


def size_and_mtime(p) -> tuple[int, int]:
  """(bytes, modification time in ns; seconds precision for a URL) of a file."""
  if not is_remote(p):
    st = os.stat(os.fspath(p))
    return st.st_size, st.st_mtime_ns
  st = path(p).stat()
  return int(st.length), int(st.mtime) * 10**9


@contextlib.contextmanager
def ranged_reader(p):
  """read(offset, size) -> bytes on one open file, for reading members out of a large file:
  pread on a local file (safe from several threads), seek and read on a URL."""
  if not is_remote(p):
    fd = os.open(os.fspath(p), os.O_RDONLY)
    try:
      yield lambda offset, size: os.pread(fd, size, offset)
    finally:
      os.close(fd)
    return
  with path(p).open("rb") as f:
    def read(offset, size):
      f.seek(offset)
      return f.read(size)
    yield read


def glob_url(pattern: str) -> list[str]:
  """The URLs matching `pattern`, whose wildcards (* ? [) must lie in its last component."""
  directory, _, name = pattern.rpartition("/")
  if any(c in directory for c in "*?["):
    raise StorageError(f"'{pattern}' has wildcards before its last '/', which lang_image "
                       "cannot expand on cloud storage; list the directories explicitly.")
  return sorted(os.fspath(m) for m in path(directory).glob(name))


def listdir(p) -> list[str]:
  """Names in directory `p` (empty if it does not exist)."""
  directory = path(p)
  if not directory.exists():
    return []
  return sorted(child.name for child in directory.iterdir())
