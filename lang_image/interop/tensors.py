"""Named tensors of a PyTorch-world checkpoint, read as float32 numpy arrays.

Formats: `.safetensors` (read with the safetensors package; PyTorch only for bfloat16 tensors),
PyTorch pickles (`.pt`, `.pth`, `.bin`: `torch.load(weights_only=True)`, memory-mapped) and
TorchScript archives (OpenAI's released `.pt` files: `torch.jit.load(...).state_dict()`). A
training checkpoint that wraps its weights in {"state_dict": ...} is unwrapped, and the
"module." prefix of DistributedDataParallel is dropped.
"""

from __future__ import annotations

import os
import warnings
import zipfile

import numpy as np

from lang_image.errors import ConfigError

INTEROP_EXTRA = "pip install -e '.[interop]'"


class CheckpointError(ConfigError):
  """A checkpoint that cannot be read or whose architecture lang_image does not model."""


def require(module: str, why: str):
  try:
    return __import__(module)
  except ImportError:
    raise CheckpointError(f"{why} needs the '{module}' package; install the interop extra "
                          f"({INTEROP_EXTRA}).") from None


class Tensors:
  """name -> tensor of one or more files; shapes without reading the data where possible."""

  def __init__(self, paths: list[str]):
    self._arrays: dict[str, object] = {}
    self._files: dict[str, str] = {}
    for path in paths:
      if path.endswith(".safetensors"):
        self._index_safetensors(path)
      else:
        self._arrays.update(_load_torch(path))
    if not self._files and not self._arrays:
      raise CheckpointError(f"'{', '.join(paths)}' holds no tensors.")

  def _index_safetensors(self, path: str) -> None:
    require("safetensors", f"reading '{path}'")
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
      for name in f.keys():
        self._files[name] = path

  def names(self) -> set[str]:
    return set(self._files) | set(self._arrays)

  def shape(self, name: str) -> tuple[int, ...]:
    if name in self._arrays:
      return tuple(self._arrays[name].shape)
    from safetensors import safe_open
    with safe_open(self._files[name], framework="numpy") as f:
      return tuple(f.get_slice(name).get_shape())

  def array(self, name: str) -> np.ndarray:
    if name in self._arrays:
      return _to_numpy(self._arrays[name])
    from safetensors import safe_open
    path = self._files[name]
    with safe_open(path, framework="numpy") as f:
      if f.get_slice(name).get_dtype() != "BF16":
        return np.asarray(f.get_tensor(name), np.float32)
    require("torch", f"reading the bfloat16 tensor '{name}' of '{path}'")
    with safe_open(path, framework="pt") as f:
      return _to_numpy(f.get_tensor(name))


def _to_numpy(tensor) -> np.ndarray:
  if isinstance(tensor, np.ndarray):
    return tensor.astype(np.float32)
  import torch
  return tensor.detach().to(torch.float32).cpu().numpy()


def _is_torchscript(path: str) -> bool:
  if not zipfile.is_zipfile(path):
    return False
  with zipfile.ZipFile(path) as z:
    return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def _load_torch(path: str) -> dict:
  torch = require("torch", f"reading '{path}'")
  try:
    if _is_torchscript(path):
      with warnings.catch_warnings():  # OpenAI released TorchScript, which torch deprecates.
        warnings.simplefilter("ignore", DeprecationWarning)
        state = torch.jit.load(path, map_location="cpu").state_dict()
    else:
      state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
  except Exception as e:  # torch raises assorted types for foreign or damaged files.
    raise CheckpointError(f"'{path}' is not a PyTorch checkpoint that can be read safely "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                          "give a state_dict saved with torch.save or a .safetensors file."
                          ) from None
  if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
    state = state["state_dict"]
  if not isinstance(state, dict):
    raise CheckpointError(f"'{path}' holds a {type(state).__name__}, not a state_dict of "
                          "named tensors; save model.state_dict().")
  out = {}
  for name, value in state.items():
    if hasattr(value, "shape"):
      out[name[len("module."):] if name.startswith("module.") else name] = value
  return out


def open_files(paths: list[str]) -> Tensors:
  for path in paths:
    if not os.path.isfile(path):
      raise CheckpointError(f"checkpoint file '{path}' does not exist.")
  return Tensors(paths)
