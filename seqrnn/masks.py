"""Masks of padded sequences: real steps, packed rows' starts, per-step random draws."""

import jax
import jax.numpy as jnp


def time_mask(lengths_b, num_steps):
  """`[time, batch, 1]` booleans, True at the real steps `t < lengths[b]`."""
  return (jnp.arange(num_steps)[:, None] < lengths_b[None, :])[..., None]


def keep_and_scale(rate, dtype=jnp.float32):
  """(1 - rate in float32, 1 / (1 - rate) in `dtype`): inverted dropout's keep
  probability and scale. Both are computed by the same float32 operations whether
  `rate` is a Python number (folded when the program is built) or a traced scalar
  (one of the step's arguments, `seqrnn.group.hyper_step`), so a run's dropout is
  the same to the bit either way. (x / keep with a constant keep is compiled as
  x * (1 / keep); with a traced keep it would be a true division.)"""
  keep = jnp.float32(1) - jnp.asarray(rate, jnp.float32)
  return keep, (jnp.float32(1) / keep).astype(dtype)


def per_step_bernoulli(key, p, num_steps, shape):
  """Booleans [num_steps, *shape], True with probability p; step t's from
  `fold_in(key, t)`, so a step's draw does not depend on how many steps follow
  (padding changes no mask a real step sees)."""
  keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_steps))
  # 64 steps at a time: drawn for all steps at once, threefry's 32-bit words of
  # every step are alive together, several times the booleans' size (at T=4,000
  # they were most of a remat train step's memory). The same draws either way.
  return jax.lax.map(lambda k: jax.random.bernoulli(k, p, shape), keys, batch_size=64)


def select(mask, new, old):
  """`new` where `mask` (broadcast over a carry's leaves) is True, else `old`."""
  return jax.tree.map(lambda a, b: jnp.where(mask, a, b), new, old)



def segment_starts(segments_bt, mask):
  """[time, batch, 1] booleans, True where a packed row's second, third, ...
  sequence starts (its carry goes back to the initial carry there)."""
  seg = segments_bt.T
  new = jnp.concatenate([jnp.zeros_like(seg[:1], bool), seg[1:] != seg[:-1]])
  return new[..., None] & mask

