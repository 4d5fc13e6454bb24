"""RankCLIP and CLIP-Lite against restatements, in torch float64, of what their released code
computes (github Jam1ezhang/RankCLIP `list_MLE` / `get_loss`; github 4m4n5/CLIP-Lite
`MILinearBlock`, `GlobalDiscriminatorDot`, `JSDInfoMaxLoss`), written for these tests with
torch's own modules and defaults (nn.BatchNorm1d, nn.LayerNorm, autograd). The primary
references are the float64 numpy ones of test_rankclip_forms.py and test_cliplite.py; this
file checks that lang_image and torch agree on the same semantics, running statistics
included.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lang_image.objectives import Context, clip, cliplite, rankclip

torch = pytest.importorskip("torch", reason="torch (the interop extra) is not installed")
F = torch.nn.functional


def torch_list_mle(pred, true, perm, eps=1e-10, padding=-1.0):
  """The released list_MLE, with its random column shuffle given as `perm`."""
  pred, true = pred[:, perm], true[:, perm]
  true_sorted, index = true.sort(descending=True, dim=-1, stable=True)
  mask = true_sorted == padding
  ranked = torch.gather(pred, 1, index).masked_fill(mask, float("-inf"))
  top, _ = ranked.max(dim=1, keepdim=True)
  shifted = ranked - top
  tails = torch.cumsum(shifted.exp().flip(dims=[1]), dim=1).flip(dims=[1])
  per_position = (torch.log(tails + eps) - shifted).masked_fill(mask, 0.0)
  return per_position.sum(dim=1).mean()


def torch_rankclip_loss(image, text, log_scale, epoch, epochs, perms):
  """The released get_loss (one device, no in-modal augmentation): CLIP + ramped ranking."""
  s = log_scale.exp()
  per_image = s * image @ text.t()
  per_text = per_image.t()
  target = torch.arange(len(image))
  contrastive = (F.cross_entropy(per_image, target) + F.cross_entropy(per_text, target)) / 2
  weight = min(2.0, max(0.0, 3.0 * (min(epoch, epochs) - 1) / (epochs - 1)))
  image_image, text_text = s * image @ image.t(), s * text @ text.t()
  in_modal = (torch_list_mle(image_image, text_text, perms[2])
              + torch_list_mle(text_text, image_image, perms[3])) / 32
  cross = (torch_list_mle(per_image, per_text, perms[0])
           + torch_list_mle(per_text, per_image, perms[1])) / 32
  return contrastive + weight * (cross / len(image) + in_modal / len(image))


@pytest.mark.parametrize("scale", [1 / 0.07, 54.0])
def test_rankclip_code_variant_equals_the_released_get_loss(scale):
  rng = np.random.default_rng(0)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  u, v = unit(rng.normal(size=(10, 16))), unit(rng.normal(size=(10, 16)))
  t = math.log(scale)
  # Epoch 3 of 4 (ramp weight 2) = step 50 of 100 split into 4 epochs.
  with jax.enable_x64(True):
    def ours(a, b, c):
      return (clip.clip_loss(a, b, c)[0]
              + rankclip.ranking_loss(a, b, c, "code", step=50, total_steps=100,
                                      ramp_epochs=4, rng=jax.random.key(1))[0])
    value, grads = jax.value_and_grad(ours, argnums=(0, 1, 2))(
        jnp.asarray(u), jnp.asarray(v), jnp.asarray(t))
  image, text, log_scale = (torch.tensor(x, dtype=torch.float64, requires_grad=True)
                            for x in (u, v, t))
  perms = [torch.randperm(10, generator=torch.Generator().manual_seed(i)) for i in range(4)]
  want = torch_rankclip_loss(image, text, log_scale, epoch=3, epochs=4, perms=perms)
  want.backward()
  np.testing.assert_allclose(value, want.item(), rtol=1e-12)
  for got, ref in zip(grads, (image.grad, text.grad, log_scale.grad)):
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-9, atol=1e-12)


def test_released_list_mle_with_ties_and_padding_equals_torch():
  rng = np.random.default_rng(1)
  pred = rng.normal(size=(4, 9)) * 30
  true = np.round(rng.normal(size=(4, 9)), 1)        # many ties
  true[:, 4], true[2, 7] = -1.0, -1.0                  # and padding markers
  pred_t = torch.tensor(pred, requires_grad=True)
  for seed in range(3):
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(seed))
    pred_t.grad = None
    want = torch_list_mle(pred_t, torch.tensor(true), perm)
    want.backward()
    with jax.enable_x64(True):
      fn = lambda a: rankclip.list_mle(a, jnp.asarray(true), form="released",
                                       tie_order=jnp.asarray(perm.numpy()))
      value, grad = jax.value_and_grad(fn)(jnp.asarray(pred))
    np.testing.assert_allclose(value, want.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), rtol=1e-9, atol=1e-14)


class TorchBlock(torch.nn.Module):
  """The released MILinearBlock: LayerNorm(Linear2(ReLU(BN(Linear1 x))) + Shortcut x)."""

  def __init__(self, in_dim, units):
    super().__init__()
    self.nonlinear = torch.nn.Sequential(
        torch.nn.Linear(in_dim, units, bias=False), torch.nn.BatchNorm1d(units),
        torch.nn.ReLU(), torch.nn.Linear(units, units))
    self.shortcut = torch.nn.Linear(in_dim, units)
    self.norm = torch.nn.LayerNorm(units)

  def forward(self, x):
    return self.norm(self.nonlinear(x) + self.shortcut(x))

  def copy_from(self, block):
    """Our block's parameters (kernels [in, out] become weights [out, in])."""
    p = lambda v: torch.tensor(np.asarray(v[...], np.float64))
    with torch.no_grad():
      self.nonlinear[0].weight.copy_(p(block.linear1.kernel).t())
      self.nonlinear[1].weight.copy_(p(block.batch_norm.scale))
      self.nonlinear[1].bias.copy_(p(block.batch_norm.bias))
      self.nonlinear[3].weight.copy_(p(block.linear2.kernel).t())
      self.nonlinear[3].bias.copy_(p(block.linear2.bias))
      self.shortcut.weight.copy_(p(block.shortcut.kernel).t())
      self.shortcut.bias.copy_(p(block.shortcut.bias))
      self.norm.weight.copy_(p(block.norm.scale))
      self.norm.bias.copy_(p(block.norm.bias))


def torch_jsd_loss(image_block, text_block, log_temperature, f, g):
  """The released JSDInfoMaxLoss without priors: the critic runs once on the positive
  pairs and once on the negatives (texts rolled by one)."""
  def critic(a, b):
    a, b = F.normalize(image_block(a), p=2, dim=-1), F.normalize(text_block(b), p=2, dim=-1)
    return torch.einsum("nd,nd->n", a, b) * log_temperature.exp()
  positive = -F.softplus(-critic(f, g)).mean()
  negative = F.softplus(critic(f, torch.cat((g[1:], g[:1]), dim=0))).mean()
  return negative - positive


def randomise_norms(critic, rng):
  for block in (critic.image, critic.text):
    for module in (block.batch_norm, block.norm):
      module.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, module.scale.shape), jnp.float32)
      module.bias[...] = jnp.asarray(rng.normal(0, 0.3, module.bias.shape), jnp.float32)


def test_cliplite_steps_and_evaluation_equal_the_released_critic():
  rng = np.random.default_rng(2)
  opts = {**cliplite.DEFAULTS, "critic_dim": 12}
  critic = cliplite.make_head(opts, {"image_width": 7, "text_width": 5}, nnx.Rngs(0))
  randomise_norms(critic, rng)
  blocks = TorchBlock(7, 12).double(), TorchBlock(5, 12).double()
  blocks[0].copy_from(critic.image)
  blocks[1].copy_from(critic.text)
  log_temperature = torch.tensor(float(critic.log_temperature[...]), dtype=torch.float64,
                                 requires_grad=True)
  for step in range(3):
    graphdef, params, rest = nnx.split(critic, nnx.Param, ...)
    f, g = rng.normal(1.0, 2.0, size=(9, 7)), rng.normal(size=(9, 5))
    f_t, g_t = (torch.tensor(x, requires_grad=True) for x in (f, g))
    want = torch_jsd_loss(*blocks, log_temperature, f_t, g_t)
    want.backward()

    def ours(params, fi, ft, rest):
      head = nnx.merge(graphdef, params, rest, copy=True)
      ctx = Context(step=jnp.asarray(step), total_steps=10, rng=jax.random.key(step))
      value = cliplite.loss({"image_features": fi, "text_features": ft}, head, ctx, opts)[0]
      return value, nnx.split(head, nnx.Param, ...)[2]

    with jax.enable_x64(True):
      params64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
      (value, rest), grads = jax.value_and_grad(ours, argnums=(0, 1, 2), has_aux=True)(
          params64, jnp.asarray(f), jnp.asarray(g), rest)
    critic = nnx.merge(graphdef, params, rest)
    # Training mode normalises with the batch's statistics: every step agrees to float64.
    np.testing.assert_allclose(value, want.item(), rtol=1e-12)
    np.testing.assert_allclose(grads[1], f_t.grad.numpy(), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(grads[2], g_t.grad.numpy(), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(grads[0]["log_temperature"][...], log_temperature.grad.item(),
                               rtol=1e-9)
    np.testing.assert_allclose(grads[0]["image"]["linear1"]["kernel"][...],
                               blocks[0].nonlinear[0].weight.grad.numpy().T, rtol=1e-9,
                               atol=1e-13)
    for b in blocks:
      b.zero_grad()
    log_temperature.grad = None
  for ours_block, theirs in ((critic.image, blocks[0]), (critic.text, blocks[1])):
    bn = theirs.nonlinear[1]
    np.testing.assert_allclose(ours_block.batch_norm.mean[...], bn.running_mean.numpy(),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours_block.batch_norm.var[...], bn.running_var.numpy(),
                               rtol=1e-6)
  # Evaluation mode: the same embeddings from the running statistics.
  f, g = rng.normal(size=(4, 7)), rng.normal(size=(4, 5))
  for modality, block, x in (("image", blocks[0], f), ("text", blocks[1], g)):
    block.eval()
    want = F.normalize(block(torch.tensor(x)), p=2, dim=-1).detach().numpy()
    np.testing.assert_allclose(cliplite.embed(critic, modality, jnp.asarray(x, jnp.float32)),
                               want, rtol=1e-5, atol=1e-6)
