"""A cell of one's own, trained from a config: the README's example.

  python -m experiments.main --config=experiments/configs/digits.py --workdir=/tmp/minimal \
      --config.model.cell=experiments.custom_cell.MinimalRNNCell
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class MinimalRNNCell(nn.RNNCellBase):
  """MinimalRNN (Chen, 2017): u = sigmoid(W_u [z, h] + b_u), h' = u * h + (1 - u) * z,
  where z = tanh(W_x x + b_x) is the input mapped into the hidden space."""
  features: int

  @nn.compact
  def __call__(self, h, x):
    z = jnp.tanh(nn.Dense(self.features, name='input')(x))
    u = jax.nn.sigmoid(nn.Dense(self.features, name='update')(jnp.concatenate([z, h], -1)))
    h = u * h + (1.0 - u) * z
    return h, h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    return jnp.zeros(input_shape[:-1] + (self.features,))

  @property
  def num_feature_axes(self):
    return 1
