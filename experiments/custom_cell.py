"""Cells of one's own, trained from a config: the README's examples.

  python -m experiments.main --config=experiments/configs/digits.py --workdir=/tmp/elman \
      --config.model.cell=experiments.custom_cell.ElmanCell
  python -m experiments.main --config=experiments/configs/digits.py --workdir=/tmp/minimal \
      --config.model.cell=experiments.custom_cell.MinimalRNNCell

`ElmanCell` gives the fused loop its hand-written backward pass (`seqrnn.FusedCell`);
`MinimalRNNCell` is a plain Flax cell, run by the scan loop with autodiff.
"""

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

import seqrnn


class ElmanCell(seqrnn.FusedCell):
  """Elman's RNN, h' = tanh(W_i x + b_i + W_h h + b_h), with the fused loop's backward pass."""
  num_gates: ClassVar[int] = 1

  @staticmethod
  def output(h):
    return h

  @staticmethod
  def step(w_h, b_h, h, x_gates, h_read=None):
    (x_proj,) = x_gates
    pre = x_proj + (h if h_read is None else h_read).astype(w_h.dtype) @ w_h + b_h
    new_h = jnp.tanh(pre).astype(h.dtype)
    return new_h, (h, new_h)  # residuals: what the backward pass reads

  @staticmethod
  def step_backward(w_h, residuals, d_new_h):
    d_pre = d_new_h * (1.0 - residuals[1].astype(jnp.float32) ** 2)  # through tanh
    return (d_pre.astype(w_h.dtype) @ w_h.T).astype(jnp.float32), d_pre

  @staticmethod
  def grad_residuals(residuals):
    return residuals[:1]  # h, which the recurrent kernel's gradient reads

  @staticmethod
  def recurrent_grads(saved, d_pre):  # over all steps at once: d_pre [time, batch, H]
    return jnp.einsum('tbh,tbg->hg', saved[0], d_pre), d_pre.sum((0, 1))


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
