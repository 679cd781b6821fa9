"""Recurrent layers stacked, with dropout on each layer's output."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrnn.cells import CELLS
from seqrnn.layer import Recurrent


def dropout(key, x_tbh, rate):
  """Inverted dropout with an independent mask per timestep.

  Each step's mask comes from `fold_in(key, t)`, so step t gets the same mask
  whatever the padded length: padding does not change a training step either.
  `rate` may be a traced scalar (e.g. one per model under `vmap`).
  """
  keep = 1.0 - rate
  keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(x_tbh.shape[0]))
  masks = jax.vmap(lambda k: jax.random.bernoulli(k, keep, x_tbh.shape[1:]))(keys)
  return jnp.where(masks, x_tbh / keep, 0).astype(x_tbh.dtype)


class RNNStack(nn.Module):
  """`num_layers` cells of `hidden_size` units, dropout after each layer.

  The classic `MultiRNNCell([DropoutWrapper(cell, output_keep_prob)] * L)`.
  Dropout is drawn from the 'dropout' RNG collection when `train` is True.
  """
  cell: str = 'gru'
  hidden_size: int = 128
  num_layers: int = 1
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  unroll: int = 1

  @nn.compact
  def __call__(self, x_btf, lengths_b, *, train):
    """x_btf: [batch, time, features]; lengths_b: int [batch].

    Returns (outputs [batch, time, hidden], zero past each length,
             list of each layer's final carry).
    """
    x = jnp.transpose(x_btf, (1, 0, 2)).astype(self.dtype)
    carries = []
    for i in range(self.num_layers):
      # parent=None: the cell belongs to its layer (params under layer_i/cell).
      cell = CELLS[self.cell](self.hidden_size, dtype=self.dtype, parent=None)
      carry, x = Recurrent(cell, unroll=self.unroll, name=f'layer_{i}')(x, lengths_b)
      carries.append(carry)
      if train and self.dropout_rate > 0:
        x = dropout(self.make_rng('dropout'), x, self.dropout_rate)
    return jnp.transpose(x, (1, 0, 2)), carries
