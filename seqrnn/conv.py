"""A convolutional front end: what each step's neighbourhood holds, pooled in time, read by
the RNN in place of the raw steps (`config.model.conv`)."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from seqrnn import checks


def pooled_lengths(lengths_b, pool):
  """Steps left of sequences of `lengths_b` steps after pooling windows of `pool` steps
  (a last, partial window is a step): ceil(length / pool)."""
  return -(-lengths_b // pool)


class ConvFrontEnd(nn.Module):
  """`num_layers` 1-D convolutions over time, each `channels` wide over `kernel_size` steps
  ('SAME': an output per step) and followed by a ReLU, then the max over windows of `pool`
  steps, every `pool` steps. A sequence of L steps leaves ceil(L / pool) steps. Convolution
  i reads steps `dilation_growth`**i apart, so that with a growth of 2 each step of the last
  layer sees 1 + (kernel_size - 1)(2**num_layers - 1) steps (4 layers of 7: 91).

  Learned frames: where `data.frames` reads a long series `size` values a step through the
  RNN's linear input weights, this reads it one value a step through nonlinear filters and
  keeps each window's strongest response, wherever in the window it falls.

  Padding changes nothing: padded steps are zero before each convolution (a real step near
  its sequence's end sees zeros past it, as it would unpadded) and take no part in a
  window's max; the windows past a sequence's end are zeros.

  inputs [batch, time, features], lengths [batch] (or a mask, or None) ->
  (outputs [batch, ceil(time / pool), channels], lengths [batch]).
  """
  channels: int
  num_layers: int = 2
  kernel_size: int = 7
  pool: int = 1
  dilation_growth: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs_btf, lengths_b=None):
    if inputs_btf.ndim != 3:
      raise ValueError(f'ConvFrontEnd: inputs have shape {inputs_btf.shape}; expected '
                       f'[batch, time, features] (a float series; token inputs go through '
                       f'model.words, not a convolution)')
    for name in ('channels', 'num_layers', 'kernel_size', 'pool', 'dilation_growth'):
      if not getattr(self, name) >= 1:
        raise ValueError(f'ConvFrontEnd: {name}={getattr(self, name)!r} must be at least 1')
    batch, num_steps, _ = inputs_btf.shape
    lengths_b = checks.lengths_of(lengths_b, batch, num_steps, 'ConvFrontEnd')
    real_bt1 = (jnp.arange(num_steps)[None, :] < lengths_b[:, None])[..., None]
    x = inputs_btf.astype(self.dtype)
    for i in range(self.num_layers):
      x = nn.Conv(self.channels, (self.kernel_size,), padding='SAME', dtype=self.dtype,
                  kernel_dilation=self.dilation_growth ** i,
                  name=f'conv_{i}')(jnp.where(real_bt1, x, 0))
      x = nn.relu(x)
    windows = pooled_lengths(num_steps, self.pool)
    x = jnp.pad(jnp.where(real_bt1, x, -jnp.inf),
                ((0, 0), (0, windows * self.pool - num_steps), (0, 0)), constant_values=-jnp.inf)
    x = x.reshape(batch, windows, self.pool, self.channels).max(2)
    lengths_b = pooled_lengths(lengths_b, self.pool)
    real_bw1 = (jnp.arange(windows)[None, :] < lengths_b[:, None])[..., None]
    return jnp.where(real_bw1, x, 0), lengths_b
