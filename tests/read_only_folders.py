"""Folders a process cannot write although it runs as root (as CI does).

Root writes through file permissions (CAP_DAC_OVERRIDE), so two ways are used:

- `permission`: the folder is made mode 555 and the process is started without
  CAP_DAC_OVERRIDE (and CAP_DAC_READ_SEARCH), by `setpriv`; its writes fail with EACCES,
  "Permission denied". Not root: mode 555 alone does it.
- `read_only_mount`: the folder is bind-mounted read-only onto itself; every write fails with
  EROFS, "Read-only file system", for this process too.

Each is probed first; a test that needs one skips with the reason when it is not possible.
"""

import os
import shutil
import stat
import subprocess
import tempfile

NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
               "--inh-caps=-dac_override,-dac_read_search"]


def _writes(prefix, folder) -> bool:
  probe = os.path.join(folder, "probe")
  done = subprocess.run([*prefix, "sh", "-c", f"echo x > {probe}"], capture_output=True)
  return done.returncode == 0


def permission_prefix():
  """(command prefix that starts a process unable to write a mode-555 folder, None), or
  (None, why that is not possible here)."""
  if os.geteuid() != 0:
    return [], None
  if shutil.which("setpriv") is None:
    return None, "setpriv (util-linux) is not installed, so root cannot drop CAP_DAC_OVERRIDE"
  folder = tempfile.mkdtemp()
  try:
    os.chmod(folder, 0o555)
    if _writes(NO_OVERRIDE, folder):
      return None, "setpriv could not drop CAP_DAC_OVERRIDE here (a mode-555 folder was written)"
    return NO_OVERRIDE, None
  except (OSError, subprocess.SubprocessError) as e:
    return None, f"setpriv cannot run here ({e})"
  finally:
    os.chmod(folder, 0o755)
    shutil.rmtree(folder, ignore_errors=True)


def make_unwritable(folder: str) -> None:
  os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH
           | stat.S_IXOTH)


def mount_read_only(folder: str) -> str | None:
  """Bind-mounts `folder` read-only onto itself; -> None, or why that is not possible here
  (then nothing is mounted). Undo with `unmount`."""
  if shutil.which("mount") is None:
    return "the mount command is not installed"
  bound = subprocess.run(["mount", "--bind", folder, folder], capture_output=True, text=True)
  if bound.returncode:
    return f"bind mounts are not permitted here ({bound.stderr.strip() or bound.returncode})"
  remounted = subprocess.run(["mount", "-o", "remount,ro,bind", folder], capture_output=True,
                             text=True)
  if remounted.returncode:
    unmount(folder)
    return f"a read-only remount is not permitted here ({remounted.stderr.strip()})"
  if _writes([], folder):
    unmount(folder)
    return "the read-only bind mount was still written"
  return None


def unmount(folder: str) -> None:
  subprocess.run(["umount", folder], capture_output=True)
