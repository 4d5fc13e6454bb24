"""Storage errors met while saving or restoring checkpoints, as short readable phrases.

Orbax and TensorStore raise many kinds of errors; a user needs the cause ("permission
denied", "the disk is full") and, for a damaged checkpoint, which array could not be read and
why, not a status repr such as

    OUT_OF_RANGE: Error reading "opt_state.1.0.mu.towers...value/0.0" in OCDBT database at
    local file "/w/checkpoints/4/state/": Requested byte range [8491025, 8672959) is not
    valid for value of size 7866368
"""

from __future__ import annotations

import errno
import json
import re

# errno -> (cause, what to do about it).
_OS_CAUSES = {
    errno.EACCES: ("permission denied", "make the folder writable for this user"),
    errno.EPERM: ("operation not permitted", "make the folder writable for this user"),
    errno.EROFS: ("the file system is read-only", "remount it writable"),
    errno.ENOSPC: ("the disk is full", "free some space or lower config.keep_checkpoints"),
    errno.EDQUOT: ("the disk quota is exceeded",
                   "free some space, raise the quota or lower config.keep_checkpoints"),
    errno.EIO: ("an input/output error", "check the disk or network file system"),
    errno.ESTALE: ("a stale network file handle", "check the network file system"),
    errno.ETIMEDOUT: ("the storage timed out", "check the network file system"),
    errno.ENOENT: ("a file or folder vanished", "check that nothing else deletes files there"),
}
# TensorStore / absl status codes -> what they say about the array being read.
_STATUS = {
    "OUT_OF_RANGE": "ends past the end of its file",
    "DATA_LOSS": "has damaged bytes",
    "FAILED_PRECONDITION": "has damaged bytes",
    "NOT_FOUND": "is in a file that is missing",
    "PERMISSION_DENIED": "is in a file this user may not read",
    "RESOURCE_EXHAUSTED": "could not be read for want of memory or quota",
    "DEADLINE_EXCEEDED": "timed out",
    "UNAVAILABLE": "is on storage that is unavailable",
    "INVALID_ARGUMENT": "has invalid metadata",
}
_STATUS_TEXT = re.compile(r"^\s*([A-Z][A-Z_]+[A-Z]): (.*)$", re.S)
_ARRAY = re.compile(r'Error (?:reading|opening|writing) "([^"]+)"')
_DETAIL = re.compile(r'"[^"]*": ([^"]*)$')


def _chain(error: BaseException):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def os_error(error: BaseException) -> OSError | None:
  """The first OSError with an errno in the chain of `error`, if any."""
  return next((e for e in _chain(error) if isinstance(e, OSError) and e.errno), None)


def write_cause(error: BaseException) -> tuple[str, str]:
  """(cause, fix) of a failed save, e.g. ("permission denied", "make the folder writable")."""
  found = os_error(error)
  if found is not None:
    cause, fix = _OS_CAUSES.get(found.errno, (found.strerror or str(found),
                                              "check the folder's file system"))
    return cause, fix
  text = " ".join(str(e) for e in _chain(error))
  for phrase, errnum in (("No space left on device", errno.ENOSPC),
                         ("Disk quota exceeded", errno.EDQUOT),
                         ("Read-only file system", errno.EROFS),
                         ("Permission denied", errno.EACCES), ("PERMISSION_DENIED", errno.EACCES),
                         ("RESOURCE_EXHAUSTED", errno.ENOSPC)):
    if phrase in text:
      return _OS_CAUSES[errnum]
  if any(isinstance(e, TimeoutError) for e in _chain(error)):
    return "the storage timed out", "check the disk or network file system"
  return _first_line(error), "check the folder's file system"


def read_problem(error: BaseException) -> str:
  """Why a checkpoint could not be read, as a phrase such as 'array params/x ends past the end
  of its file (requested byte range ...)'."""
  for e in _chain(error):
    if isinstance(e, json.JSONDecodeError):
      return f"a metadata file is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
    if isinstance(e, FileNotFoundError):
      return f"file {e.filename} is missing" if e.filename else "a file is missing"
    if isinstance(e, OSError) and e.errno:
      return f"{_OS_CAUSES.get(e.errno, (e.strerror,))[0]} ({e.filename or 'a file'})"
  # Orbax wraps TensorStore's error (whose text has the status code) in its own.
  for e in _chain(error):
    status = _STATUS_TEXT.match(str(e).strip())
    if status is not None:
      return _status_phrase(*status.groups())
  return _first_line(list(_chain(error))[-1])


def _status_phrase(code: str, rest: str) -> str:
  array = _ARRAY.search(rest)
  detail = _DETAIL.search(rest.splitlines()[0])
  detail = detail.group(1).strip() if detail else ""
  if detail:
    detail = f" ({detail[:1].lower()}{detail[1:160]})"
  if array is None or code not in _STATUS:
    return f"{code.lower().replace('_', ' ')}{detail}"
  name = array.group(1).split("/")[0].replace(".", "/")
  return f"array {name} {_STATUS[code]}{detail}"


def _first_line(error: BaseException) -> str:
  line = (str(error).strip().splitlines() or [""])[0][:200]
  return f"{type(error).__name__}: {line}" if line else type(error).__name__
