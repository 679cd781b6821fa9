"""Variational dropout and zoneout: where their masks fall, what evaluation
computes, and that padding changes neither."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import sigmoid

from seqrnn import RNNStack
from seqrnn.cells import GRUCell, LSTMCell, LayerNormGRUCell
from seqrnn.layer import Recurrent, Zoneout

X = np.random.default_rng(0).normal(size=(4, 9, 6)).astype(np.float32)  # [batch, time, in]
LENGTHS = np.array([9, 2, 5, 7], np.int32)
REAL = np.arange(9)[None, :] < LENGTHS[:, None]


class EchoCell(nn.RNNCellBase):
  """Outputs its input: what reaches a cell, and what leaves the stack, shows."""
  features: int
  dtype: Any = jnp.float32

  def __call__(self, carry, x):
    return x, x

  def step_projected(self, carry, x, recurrent_mask=None):
    return x, x

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    return jnp.zeros(input_shape[:-1] + (self.features,))

  @property
  def num_feature_axes(self):
    return 1


def test_variational_masks_are_constant_over_time_and_differ_across_sequences():
  stack = RNNStack(cell=EchoCell, hidden_size=6, num_layers=2, variational_dropout=0.5)
  params = stack.init(jax.random.key(0), X, LENGTHS, train=False)
  out = stack.apply(params, X, LENGTHS, train=True, rngs={'dropout': jax.random.key(1)}, return_carry=False)
  # Three masks (layer 0's input, layer 1's input, the top output), each 0 or 2.
  scale = np.asarray(out) / X
  for b, length in enumerate(LENGTHS):
    np.testing.assert_allclose(scale[b, :length], np.broadcast_to(scale[b, 0], (length, 6)),
                               rtol=1e-6)
    assert set(np.round(scale[b, 0], 5)) <= {0.0, 8.0}
  assert len({tuple(np.round(scale[b, 0])) for b in range(4)}) > 1
  np.testing.assert_array_equal(stack.apply(params, X, LENGTHS, train=False, return_carry=False),
                                np.where(REAL[..., None], X, 0))


def _gru_reference(x_tf, p, mask=None, zoneout=0.0, keep_old=None):
  """One sequence through the documented GRU equations, with a recurrent mask on
  the h of the matmul only, and zoneout (keep_old [T, H] masks, or the expectation)."""
  w_i, b_i = p['input_projection']['kernel'], p['input_projection']['bias']
  w_h, b_h = p['recurrent_kernel'], p['recurrent_bias']
  hidden = w_h.shape[0]
  h, outs = np.zeros(hidden), []
  for t, x in enumerate(x_tf):
    gi, gh = x @ w_i + b_i, (h if mask is None else h * mask) @ w_h + b_h
    r = sigmoid(gi[:hidden] + gh[:hidden])
    z = sigmoid(gi[hidden:2 * hidden] + gh[hidden:2 * hidden])
    n = np.tanh(gi[2 * hidden:] + r * gh[2 * hidden:])
    new = (1 - z) * n + z * h
    if keep_old is not None:
      new = np.where(keep_old[t], h, new)
    elif zoneout:
      new = zoneout * h + (1 - zoneout) * new
    h = new
    outs.append(h)
  return np.array(outs)


def test_the_recurrent_mask_multiplies_h_where_the_recurrent_matmul_reads_it_only():
  layer = Recurrent(GRUCell(5), time_major=True, return_carry=True, recurrent_dropout=0.4)
  x_tbf = X.transpose(1, 0, 2)
  params = layer.init(jax.random.key(0), x_tbf, LENGTHS)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params']['cell'])
  rngs = {'dropout': jax.random.key(2)}
  _, out = layer.apply(params, x_tbf, LENGTHS, train=True, rngs=rngs)
  mask = np.asarray(layer.apply(params, x_tbf.shape[1:2] + (5,), rngs=rngs, method=lambda m, s:
                                jax.random.bernoulli(m.make_rng('dropout'), 0.6, s)) / 0.6)
  for b, length in enumerate(LENGTHS):
    want = _gru_reference(X[b, :length], p, mask[b])
    np.testing.assert_allclose(out[:length, b], want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(out[:, 0], _gru_reference(X[0], p))


@pytest.mark.parametrize('cell', [GRUCell, LayerNormGRUCell])
def test_zoneout_at_evaluation_is_the_expectation_of_keeping_the_old_state(cell):
  layer = Recurrent(cell(5), time_major=True, return_carry=True, zoneout=Zoneout(hidden=0.3))
  x_tbf = X.transpose(1, 0, 2)
  params = layer.init(jax.random.key(0), x_tbf, LENGTHS)
  _, out = layer.apply(params, x_tbf, LENGTHS, train=False)
  plain = Recurrent(cell(5), time_major=True, return_carry=True, impl='scan')
  # The same cell stepped by hand: h' = 0.3 h + 0.7 cell(h, x).
  for b, length in enumerate(LENGTHS):
    h = jnp.zeros((1, 5))
    for t in range(length):
      new, _ = plain.apply(params, X[b:b + 1, t], method=lambda m, x: m.cell(h, x))
      h = 0.3 * h + 0.7 * new
      np.testing.assert_allclose(out[t, b], h[0], rtol=1e-5, atol=1e-6)
  if cell is GRUCell:
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params']['cell'])
    np.testing.assert_allclose(out[:, 0], _gru_reference(X[0], p, zoneout=0.3), rtol=1e-5, atol=1e-6)


def test_zoneout_in_training_keeps_each_hidden_unit_with_the_hidden_rate():
  x = np.random.default_rng(1).normal(size=(64, 30, 6)).astype(np.float32)
  lengths = np.full(64, 30, np.int32)
  layer = Recurrent(LSTMCell(16), time_major=True, return_carry=True, zoneout=Zoneout(hidden=0.2, cell=0.6))
  x_tbf = x.transpose(1, 0, 2)
  params = layer.init(jax.random.key(0), x_tbf, lengths)
  _, h_seq = layer.apply(params, x_tbf, lengths, train=True, rngs={'dropout': jax.random.key(4)})
  h_seq = np.asarray(h_seq)
  kept = h_seq[1:] == h_seq[:-1]  # h unchanged where zoned out (the cell's 0.6 aside)
  assert abs(kept.mean() - 0.2) < 0.02


@pytest.mark.parametrize('options', [
    dict(cell='gru', variational_dropout=0.3),
    dict(cell='lstm', zoneout_hidden=0.2, zoneout_cell=0.3, bidirectional=True),
    dict(cell='ln_lstm', variational_dropout=0.3, zoneout_hidden=0.2, num_layers=2),
])
def test_padding_changes_no_regularised_output_or_gradient(options):
  stack = RNNStack(hidden_size=5, **options)
  params = stack.init(jax.random.key(0), X, LENGTHS, train=False)
  padded = np.pad(X, ((0, 0), (0, 6), (0, 0)), constant_values=np.nan)
  weights = np.random.default_rng(3).normal(size=(4, 9, stack.hidden_size * (
      2 if stack.bidirectional else 1)))

  def loss(p, x):
    out = stack.apply(p, x, LENGTHS, train=True, rngs={'dropout': jax.random.key(5)}, return_carry=False)
    return jnp.sum(out[:, :9] * weights), out[:, :9]

  (l1, o1), g1 = jax.value_and_grad(loss, has_aux=True)(params, X)
  (l2, o2), g2 = jax.value_and_grad(loss, has_aux=True)(params, padded)
  np.testing.assert_allclose(o1, o2, rtol=1e-5, atol=1e-6)
  # (sums over more steps, in another order: float32 rounding apart)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), g1, g2)
  e1 = stack.apply(params, X, LENGTHS, train=False, return_carry=False)
  e2 = stack.apply(params, X, LENGTHS, train=False, return_carry=False)
  np.testing.assert_array_equal(e1, e2)  # evaluation draws nothing


def test_regularisers_that_need_the_scan_loop_refuse_the_fused_one():
  stack = RNNStack(cell='lstm', hidden_size=5, impl='fused', zoneout_hidden=0.1)
  with pytest.raises(ValueError, match="zoneout run in the scan loop: use impl='scan'"):
    stack.init(jax.random.key(0), X, LENGTHS, train=False)
