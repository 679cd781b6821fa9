"""Augmentation drawn inside the train step, like dropout: pure, keyed, training only."""

import jax
import jax.numpy as jnp


def random_crop(key, max_fraction, lengths_b, *arrays_bt):
  """Each sequence cut to a random window of its real steps (window slicing, Le Guennec et
  al. 2016): ceil(r * length) steps with r ~ U[1 - max_fraction, 1), from a start drawn
  uniformly among those that keep the window inside the sequence, moved to step 0.

  Only real steps are read, so padding changes nothing; steps past a window's end are
  zeros. `lengths_b` [batch] int; each array [batch, time, ...] (inputs, and a word's
  characters where there are any). Returns (lengths [batch], *arrays), same shapes.
  """
  size_key, start_key = jax.random.split(key)
  batch, num_steps = arrays_bt[0].shape[:2]
  keep = jax.random.uniform(size_key, (batch,), minval=1.0 - max_fraction, maxval=1.0)
  new_lengths = jnp.clip(jnp.ceil(keep * lengths_b), 1, lengths_b).astype(lengths_b.dtype)
  starts = jnp.floor(jax.random.uniform(start_key, (batch,))
                     * (lengths_b - new_lengths + 1)).astype(lengths_b.dtype)
  steps_bt = jnp.arange(num_steps)[None, :]
  source_bt = jnp.minimum(starts[:, None] + steps_bt, num_steps - 1)
  real_bt = steps_bt < new_lengths[:, None]

  def crop(x):
    index = source_bt.reshape(source_bt.shape + (1,) * (x.ndim - 2))
    cropped = jnp.take_along_axis(x, index, axis=1)
    return jnp.where(real_bt.reshape(index.shape), cropped, jnp.zeros((), x.dtype))

  return (new_lengths, *map(crop, arrays_bt))
