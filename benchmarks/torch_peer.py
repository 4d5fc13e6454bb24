"""The PyTorch peer of benchmarks/train_step.py: Hugging Face transformers' CLIPModel at the
dimensions of a lang_image two-tower model, one full training step (forward, CLIP loss,
backward, gradient clipping, AdamW) per call.

open_clip would be the closer peer, but it imports torchvision's compiled operators at
import time, and torchvision has no CPU build installable next to the CPU torch==2.13.0
(its PyPI wheel is CUDA-linked); transformers' CLIPModel needs only torch.

Needs the interop extra: pip install -e '.[interop]' (torch==2.13.0, transformers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

INSTALL_HINT = ("the PyTorch comparison needs torch and transformers: "
                "pip install -e '.[interop]'")


def import_torch():
  """(torch, transformers), or an ImportError that says how to install them."""
  try:
    import torch
    import transformers
  except ImportError as e:
    raise ImportError(f"{INSTALL_HINT} ({e})") from None
  return torch, transformers


@dataclasses.dataclass(frozen=True)
class PeerDims:
  image_size: int
  patch: int
  image_width: int
  image_depth: int
  image_heads: int
  image_mlp: int
  text_len: int
  text_width: int
  text_depth: int
  text_heads: int
  text_mlp: int
  vocab_size: int
  embed_dim: int


class TorchClipStep:
  """One CLIPModel training step on a fixed random batch; `precision` is "float32" or
  "bf16_autocast" (torch.autocast on the CPU or CUDA, parameters and AdamW in float32)."""

  def __init__(self, dims: PeerDims, batch: int, precision: str, *, lr: float = 1e-3,
               weight_decay: float = 0.1, grad_clip: float = 1.0, eos_id: int = 1,
               device: str = "cpu", seed: int = 0):
    torch, transformers = import_torch()
    if precision not in ("float32", "bf16_autocast"):
      raise ValueError(f"Unknown torch precision {precision!r}; known: float32, bf16_autocast.")
    self.torch = torch
    self.precision = precision
    self.device = device
    torch.manual_seed(seed)
    # Exact (erf) GELU like lang_image's default; pre-LN blocks, LayerNorm eps 1e-5.
    common = dict(hidden_act="gelu", layer_norm_eps=1e-5, attention_dropout=0.0)
    vision = dict(hidden_size=dims.image_width, intermediate_size=dims.image_mlp,
                  num_hidden_layers=dims.image_depth, num_attention_heads=dims.image_heads,
                  image_size=dims.image_size, patch_size=dims.patch, num_channels=3,
                  projection_dim=dims.embed_dim, **common)
    text = dict(hidden_size=dims.text_width, intermediate_size=dims.text_mlp,
                num_hidden_layers=dims.text_depth, num_attention_heads=dims.text_heads,
                max_position_embeddings=dims.text_len, vocab_size=dims.vocab_size,
                projection_dim=dims.embed_dim, eos_token_id=eos_id, pad_token_id=0,
                bos_token_id=eos_id, **common)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision,
                                     projection_dim=dims.embed_dim)
    config._attn_implementation = "sdpa"
    self.model = transformers.CLIPModel(config).to(device).train()
    decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
    self.optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98), eps=1e-6)
    self.grad_clip = grad_clip
    gen = torch.Generator().manual_seed(seed)
    self.pixels = torch.rand((batch, 3, dims.image_size, dims.image_size), generator=gen)
    self.pixels = (self.pixels * 2 - 1).to(device)
    ids = torch.randint(3, dims.vocab_size, (batch, dims.text_len), generator=gen)
    ids[:, -1] = eos_id
    self.ids = ids.to(device)
    self.parameters = sum(p.numel() for p in self.model.parameters())

  def _autocast(self):
    if self.precision == "bf16_autocast":
      return self.torch.autocast(self.device.split(":")[0], dtype=self.torch.bfloat16)
    return contextlib.nullcontext()

  def step(self) -> float:
    """Runs one training step; returns its loss."""
    torch = self.torch
    self.optimizer.zero_grad(set_to_none=True)
    with self._autocast():
      out = self.model(input_ids=self.ids, pixel_values=self.pixels, return_loss=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
    self.optimizer.step()
    loss = out.loss.detach()
    if self.device.startswith("cuda"):
      torch.cuda.synchronize()
    return float(loss)

  def timed_step(self) -> float:
    start = time.perf_counter()
    self.step()
    return time.perf_counter() - start

  def versions(self) -> dict:
    import transformers
    return {"torch": self.torch.__version__, "transformers": transformers.__version__,
            "torch_threads": self.torch.get_num_threads(),
            "torch_cpu_capability": self.torch.backends.cpu.get_cpu_capability()}
