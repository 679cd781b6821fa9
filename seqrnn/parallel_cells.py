"""Cells that are parallel over time by construction (`impl='parallel'`, `seqrnn.parallel`).

`min_gru`, `min_lstm` (Feng et al. 2024, "Were RNNs all we needed?"): the gates read the
input alone, so h' = a(x) * h + b(x) is linear in h and one associative scan computes the
whole sequence exactly. `diag_gru`, `diag_lstm` (in the spirit of ParaRNN, Danieli et al.
2026): the GRU's and LSTM's equations with a diagonal recurrent matrix (each unit reads its
own previous value, w_h a vector), whose state Jacobian is diagonal for the GRU (2x2 blocks
of h and c for the LSTM), so that a Newton step on the trajectory is one scan, and for the
GRU exact Newton (`seqrnn.parallel`).
All four also run in the scan loop, step by step, with the same parameters.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from seqrnn.cells import (InputProjection, LSTMState, ProjectedCell, _lstm_carry, _split,
                          register_cell)


class _InputGated(ProjectedCell):
  """A cell whose gates read the input alone: project(x) -> [G*H], then h' = a * h + b."""

  def setup(self):
    self.input_projection = InputProjection(self.num_gates * self.features, dtype=self.dtype,
                                            param_dtype=self.param_dtype)

  def project(self, x):
    return self.input_projection(x)

  def step_projected(self, carry, x_proj, recurrent_mask=None):
    if recurrent_mask is not None:
      raise ValueError(f'{type(self).__name__} has no recurrent matmul for variational '
                       f'recurrent dropout to mask')
    a, b = self.linear_coefficients(x_proj)
    new = (a * carry + b).astype(carry.dtype)
    return new, new


@register_cell('min_gru')
class MinGRUCell(_InputGated):
  """minGRU (Feng et al. 2024):

    z  = sigmoid(W_z x + b_z)
    h~ = W_h x + b_h
    h' = (1 - z) * h + z * h~

  Parameters: `input_projection` (kernel [in, 2*H] = [W_z | W_h]^T, bias [2*H]). The
  carry is h [batch, H], also the output. (The paper's log-space scan keeps h~ positive
  through g(x) = x + 0.5 or sigmoid(x) for torch's cumulative sums; `jax.lax.associative_scan`
  combines (a, b) pairs directly, with a in (0, 1): no overflow, and h~ is left linear.)
  """
  num_gates: ClassVar[int] = 2

  @staticmethod
  def linear_coefficients(x_proj):
    """(a, b) [..., H] of h' = a * h + b from the projected input [..., 2*H]."""
    z_pre, h_tilde = _split(x_proj, 2)
    z = jax.nn.sigmoid(z_pre)
    return 1.0 - z, z * h_tilde


@register_cell('min_lstm')
class MinLSTMCell(_InputGated):
  """minLSTM (Feng et al. 2024), its gates normalised to sum to one:

    f  = sigmoid(W_f x + b_f),  i = sigmoid(W_i x + b_i),  h~ = W_h x + b_h
    h' = f / (f + i) * h + i / (f + i) * h~

  Parameters: `input_projection` (kernel [in, 3*H] = [W_f | W_i | W_h]^T, bias [3*H]). The
  carry is h [batch, H], also the output.
  """
  num_gates: ClassVar[int] = 3

  @staticmethod
  def linear_coefficients(x_proj):
    f_pre, i_pre, h_tilde = _split(x_proj, 3)
    f, i = jax.nn.sigmoid(f_pre), jax.nn.sigmoid(i_pre)
    return f / (f + i), i / (f + i) * h_tilde


class _DiagonalRecurrence(ProjectedCell):
  """Input projection [in, G*H] as the GRU's and LSTM's, a recurrent weight vector [G*H]
  (each unit's gates read its own previous h alone) and a recurrent bias [G*H]."""
  diagonal_state_jacobian: ClassVar[bool] = True  # seqrnn.parallel: Newton is exact

  def setup(self):
    gates = self.num_gates * self.features
    self.input_projection = InputProjection(gates, dtype=self.dtype, param_dtype=self.param_dtype)
    self.recurrent_weight = self.param('recurrent_weight', nn.initializers.uniform(1.0),
                                       (gates,), self.param_dtype)
    self.recurrent_bias = self.param('recurrent_bias', self.init_recurrent_bias, (gates,),
                                     self.param_dtype)

  def project(self, x):
    return self.input_projection(x)

  def recurrent(self, h, recurrent_mask):
    h = h if recurrent_mask is None else h * recurrent_mask
    tiled = jnp.concatenate([h] * self.num_gates, -1).astype(self.dtype)
    return tiled * self.recurrent_weight.astype(self.dtype) + self.recurrent_bias.astype(self.dtype)

  @staticmethod
  def init_recurrent_bias(key, shape, dtype):
    return jnp.zeros(shape, dtype)


@register_cell('diag_gru')
class DiagonalGRUCell(_DiagonalRecurrence):
  """The GRU (`seqrnn.GRUCell`'s reset-after equations) with diagonal recurrence:

    r  = sigmoid(W_ir x + b_ir + w_hr * h + b_hr)
    z  = sigmoid(W_iz x + b_iz + w_hz * h + b_hz)
    n  = tanh(W_in x + b_in + r * (w_hn * h + b_hn))
    h' = (1 - z) * n + z * h

  with w_h* vectors [H] (`recurrent_weight` [3*H]). The carry is h, also the output.
  """
  num_gates: ClassVar[int] = 3

  def step_projected(self, h, x_proj, recurrent_mask=None):
    xr, xz, xn = _split(x_proj, 3)
    hr, hz, hn = _split(self.recurrent(h, recurrent_mask), 3)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    new_h = ((1.0 - z) * n + z * h).astype(h.dtype)
    return new_h, new_h


@register_cell('diag_lstm')
class DiagonalLSTMCell(_DiagonalRecurrence):
  """The LSTM (`seqrnn.LSTMCell`'s equations and gate order i, f, g, o) with diagonal
  recurrence: each gate's pre-activation adds w_h* * h + b_h* (w_h* vectors [H],
  `recurrent_weight` [4*H]); the forget gate's recurrent bias starts at 1. The carry is
  `LSTMState(h, c)`; the output is h. Its state Jacobian couples each unit's h and c (2x2
  blocks, not diagonal): Newton on the trajectory takes its diagonal (quasi-DEER).
  """
  num_gates: ClassVar[int] = 4
  diagonal_state_jacobian: ClassVar[bool] = False
  carry_from_zeros = staticmethod(_lstm_carry)

  @staticmethod
  def init_recurrent_bias(key, shape, dtype):
    del key
    hidden = shape[0] // 4
    return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)

  def step_projected(self, carry, x_proj, recurrent_mask=None):
    h, c = carry
    xi, xf, xg, xo = _split(x_proj, 4)
    hi, hf, hg, ho = _split(self.recurrent(h, recurrent_mask), 4)
    i, f = jax.nn.sigmoid(xi + hi), jax.nn.sigmoid(xf + hf)
    g, o = jnp.tanh(xg + hg), jax.nn.sigmoid(xo + ho)
    new_c = (f * c + i * g).astype(c.dtype)
    new_h = (o * jnp.tanh(new_c)).astype(h.dtype)
    return LSTMState(new_h, new_c), new_h
