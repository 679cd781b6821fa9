"""Recurrent cells: their parameters and the equations of one step, forward and back.

A cell sees one step of its *already projected* input: the layer computes
`x @ W_i + b_i` for every timestep at once, outside the time loop, so only the
recurrent matmul and the gate nonlinearities run inside it. Gates lie side by
side along the last axis in the order of the equations below (torch's order,
so `torch.nn.GRU`/`LSTM` weights map onto ours by a transpose).

The cell protocol, what a new cell type implements:
  cell()                                -> recurrent params (w_h [H, G*H], b_h [G*H])
  cell.initial_carry(batch)             -> zero carry
  Cell.output(carry)                    -> h [batch, H]
  Cell.step(w_h, b_h, carry, x_gates)   -> (carry, residuals)
and, for the fast hand-written backward pass (optional: without them the
layer differentiates `step` with autodiff):
  Cell.step_backward(w_h, residuals, d_carry) -> (d_previous_carry, d_x_gates)
  Cell.recurrent_grads(residuals, d_x_proj)   -> (d_w_h, d_b_h), over all steps at once
where `x_gates` is the step's input projection as G separate arrays [batch, H]
(on XLA:CPU, slicing one wide array inside the loop costs more than the gates),
`d_x_proj` is their gradient over all steps [time, batch, G*H], and
`residuals` are whatever `step` saved for its backward pass.
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
  """Splits `[..., n * hidden]` into n arrays `[..., hidden]`."""
  return jnp.split(gates, n, axis=-1)


def _hidden_by_steps(h_prev_tbh, d_gates_tbg):
  """sum over time and batch of h^T d_gates: [hidden, gates], one big matmul."""
  return jnp.einsum('tbh,tbg->hg', h_prev_tbh, d_gates_tbg.astype(h_prev_tbh.dtype),
                    preferred_element_type=jnp.float32)


class GRUCell(nn.Module):
  """Gated recurrent unit with cuDNN's (and torch's) reset-after convention.

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

  Parameters: `recurrent_kernel` [hidden, 3*hidden] = [W_hr | W_hz | W_hn]^T and
  `recurrent_bias` [3*hidden]; the input side (W_i*, b_i*) lives in the layer.
  The carry is h `[batch, hidden]` (float32), which is also the output.
  """
  hidden_size: int
  dtype: Any = jnp.float32  # computation dtype; parameters and carry stay float32
  num_gates: ClassVar[int] = 3

  @nn.compact
  def __call__(self):
    hs = self.hidden_size
    w_h = self.param('recurrent_kernel', nn.initializers.orthogonal(), (hs, 3 * hs), jnp.float32)
    b_h = self.param('recurrent_bias', nn.initializers.zeros_init(), (3 * hs,), jnp.float32)
    return w_h.astype(self.dtype), b_h.astype(self.dtype)

  def initial_carry(self, batch_size):
    return jnp.zeros((batch_size, self.hidden_size), jnp.float32)

  @staticmethod
  def output(carry):
    return carry

  @staticmethod
  def step(w_h, b_h, h, x_gates):
    h_proj = h.astype(w_h.dtype) @ w_h + b_h
    xr, xz, xn = x_gates
    hr, hz, hn = _split(h_proj, 3)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    new_h = ((1.0 - z) * n + z * h).astype(h.dtype)
    return new_h, (h, r, z, n, hn)

  @staticmethod
  def step_backward(w_h, residuals, d_new_h):
    h, r, z, n, hn = (x.astype(jnp.float32) for x in residuals)
    d_n = d_new_h * (1.0 - z)
    d_an = d_n * (1.0 - n * n)                     # through tanh
    d_az = d_new_h * (h - n) * z * (1.0 - z)       # through sigmoid
    d_ar = d_an * hn * r * (1.0 - r)
    d_h_proj = jnp.concatenate([d_ar, d_az, d_an * r], -1)
    d_h = d_new_h * z + (d_h_proj.astype(w_h.dtype) @ w_h.T).astype(jnp.float32)
    return d_h, (d_ar, d_az, d_an)

  @staticmethod
  def recurrent_grads(residuals, d_x_proj):
    h, r = residuals[0], residuals[1]
    d_ar, d_az, d_an = _split(d_x_proj, 3)
    d_h_proj = jnp.concatenate([d_ar, d_az, d_an * r.astype(jnp.float32)], -1)
    return _hidden_by_steps(h.astype(r.dtype), d_h_proj), d_h_proj.sum((0, 1))


class LSTMCell(nn.Module):
  """Long short-term memory cell, torch's equations and gate order (i, f, g, o).

    i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
    f  = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g  = tanh(W_ig x + b_ig + W_hg h + b_hg)
    o  = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g
    h' = o * tanh(c')

  Parameters: `recurrent_kernel` [hidden, 4*hidden] and `recurrent_bias`
  [4*hidden] (1 on the forget gate at initialisation, so that a fresh cell
  remembers). The carry is `LSTMState(hidden=h, cell=c)` (float32); the output is h.
  """
  hidden_size: int
  dtype: Any = jnp.float32
  num_gates: ClassVar[int] = 4

  @nn.compact
  def __call__(self):
    hs = self.hidden_size
    w_h = self.param('recurrent_kernel', nn.initializers.orthogonal(), (hs, 4 * hs), jnp.float32)
    b_h = self.param('recurrent_bias', _forget_bias_init(hs), (4 * hs,), jnp.float32)
    return w_h.astype(self.dtype), b_h.astype(self.dtype)

  def initial_carry(self, batch_size):
    zeros = jnp.zeros((batch_size, self.hidden_size), jnp.float32)
    return LSTMState(zeros, zeros)

  @staticmethod
  def output(carry):
    return carry.hidden

  @staticmethod
  def step(w_h, b_h, carry, x_gates):
    h, c = carry
    hi, hf, hg, ho = _split(h.astype(w_h.dtype) @ w_h + b_h, 4)
    xi, xf, xg, xo = x_gates
    i, f = jax.nn.sigmoid(xi + hi), jax.nn.sigmoid(xf + hf)
    g, o = jnp.tanh(xg + hg), jax.nn.sigmoid(xo + ho)
    new_c = (f * c + i * g).astype(c.dtype)
    tanh_c = jnp.tanh(new_c)
    new_h = (o * tanh_c).astype(h.dtype)
    return LSTMState(new_h, new_c), (h, c, i, f, g, o, tanh_c)

  @staticmethod
  def step_backward(w_h, residuals, d_new):
    h, c, i, f, g, o, tanh_c = (x.astype(jnp.float32) for x in residuals)
    d_h, d_c = d_new
    d_c = d_c + d_h * o * (1.0 - tanh_c * tanh_c)
    d_gates = (d_c * g * i * (1.0 - i), d_c * c * f * (1.0 - f),
               d_c * i * (1.0 - g * g), d_h * tanh_c * o * (1.0 - o))
    d_prev_h = (jnp.concatenate(d_gates, -1).astype(w_h.dtype) @ w_h.T).astype(jnp.float32)
    return LSTMState(d_prev_h, d_c * f), d_gates

  @staticmethod
  def recurrent_grads(residuals, d_x_proj):
    return _hidden_by_steps(residuals[0].astype(residuals[2].dtype), d_x_proj), d_x_proj.sum((0, 1))


def _forget_bias_init(hidden_size):
  def init(key, shape, dtype):
    del key
    return jnp.zeros(shape, dtype).at[hidden_size:2 * hidden_size].set(1.0)
  return init


CELLS = {'gru': GRUCell, 'lstm': LSTMCell}
