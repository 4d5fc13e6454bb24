"""AdamW with linear warmup + cosine decay and global-norm clipping.

Weight decay applies to matrices only: norms, biases and scalars such as the logit scale
are left alone, as in CLIP.
"""

import jax
import optax


def schedule(optim_cfg, total_steps: int) -> optax.Schedule:
  warmup = min(optim_cfg.warmup_steps, max(total_steps - 1, 1))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=optim_cfg.lr,
      warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1),
      end_value=optim_cfg.lr * optim_cfg.min_lr_ratio,
  )


def decay_mask(params):
  def decays(path, leaf):
    name = jax.tree_util.keystr(path).lower()
    return leaf.ndim >= 2 and "norm" not in name and "scale" not in name
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(optim_cfg, total_steps: int) -> optax.GradientTransformation:
  return optax.chain(
      optax.clip_by_global_norm(optim_cfg.grad_clip),
      optax.adamw(
          schedule(optim_cfg, total_steps),
          b1=optim_cfg.b1,
          b2=optim_cfg.b2,
          eps=optim_cfg.eps,
          weight_decay=optim_cfg.weight_decay,
          mask=decay_mask,
      ),
  )
