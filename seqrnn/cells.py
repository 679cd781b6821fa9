"""Recurrent cells: parameters and the equations of one time step.

A cell sees one step of its *already projected* input: the layer (`layer.py`)
computes `x @ W_i + b_i` for every timestep at once, outside the time loop, so
only the recurrent matmul and the gate nonlinearities run inside it. Gates are
laid out side by side along the last axis, in the order of the equations below
(the order of `torch.nn.GRU` / `torch.nn.LSTM`, whose weights therefore map
onto ours by a transpose).

Cell protocol (that of `flax.linen.recurrent`):
  `cell(carry, x_proj) -> (carry, output)`, with `x_proj` of shape
  `[batch, num_gates * hidden_size]`, `cell.initial_carry(batch_size)` and
  `cell.output(carry) -> [batch, hidden_size]`.
"""

from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class LSTMState(NamedTuple):
  """The carry of an LSTM: `hidden` (h) and `cell` (c), each `[batch, hidden]`."""
  hidden: jax.Array
  cell: jax.Array


def _split(gates, n):
  """Splits `[batch, n * hidden]` into n arrays `[batch, hidden]`."""
  return jnp.split(gates, n, axis=-1)


class GRUCell(nn.Module):
  """Gated recurrent unit with cuDNN's (and torch's) reset-after convention.

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

  Parameters: `recurrent_kernel` [hidden, 3*hidden] = [W_hr | W_hz | W_hn]^T and
  `recurrent_bias` [3*hidden]; the input side (W_i*, b_i*) lives in the layer.
  The carry is h `[batch, hidden]`, which is also the output.
  """
  hidden_size: int
  dtype: Any = jnp.float32  # computation dtype; parameters stay float32
  num_gates: ClassVar[int] = 3

  @nn.compact
  def __call__(self, h, x_proj):
    w_h = self.param('recurrent_kernel', nn.initializers.orthogonal(),
                     (self.hidden_size, 3 * self.hidden_size), jnp.float32)
    b_h = self.param('recurrent_bias', nn.initializers.zeros_init(),
                     (3 * self.hidden_size,), jnp.float32)
    h_proj = h.astype(self.dtype) @ w_h.astype(self.dtype) + b_h.astype(self.dtype)
    xr, xz, xn = _split(x_proj, 3)
    hr, hz, hn = _split(h_proj, 3)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h = ((1.0 - z) * n + z * h).astype(h.dtype)
    return h, h

  def initial_carry(self, batch_size):
    return jnp.zeros((batch_size, self.hidden_size), jnp.float32)

  @staticmethod
  def output(carry):
    return carry


class LSTMCell(nn.Module):
  """Long short-term memory cell, torch's equations and gate order (i, f, g, o).

    i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
    f  = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g  = tanh(W_ig x + b_ig + W_hg h + b_hg)
    o  = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g
    h' = o * tanh(c')

  Parameters: `recurrent_kernel` [hidden, 4*hidden] and `recurrent_bias`
  [4*hidden] (initialised to 1 on the forget gate, so that a fresh cell
  remembers). The carry is `LSTMState(hidden=h, cell=c)`; the output is h.
  """
  hidden_size: int
  dtype: Any = jnp.float32
  num_gates: ClassVar[int] = 4

  @nn.compact
  def __call__(self, carry, x_proj):
    hs = self.hidden_size
    w_h = self.param('recurrent_kernel', nn.initializers.orthogonal(),
                     (hs, 4 * hs), jnp.float32)
    b_h = self.param('recurrent_bias', _forget_bias_init(hs), (4 * hs,),
                     jnp.float32)
    h, c = carry
    gates = x_proj + h.astype(self.dtype) @ w_h.astype(self.dtype) + b_h.astype(self.dtype)
    i, f, g, o = _split(gates, 4)
    c = (jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)).astype(c.dtype)
    h = (jax.nn.sigmoid(o) * jnp.tanh(c)).astype(h.dtype)
    return LSTMState(h, c), h

  def initial_carry(self, batch_size):
    zeros = jnp.zeros((batch_size, self.hidden_size), jnp.float32)
    return LSTMState(zeros, zeros)

  @staticmethod
  def output(carry):
    return carry.hidden


def _forget_bias_init(hidden_size):
  def init(key, shape, dtype):
    del key
    return jnp.zeros(shape, dtype).at[hidden_size:2 * hidden_size].set(1.0)
  return init


CELLS = {'gru': GRUCell, 'lstm': LSTMCell}
