"""The stack as research code uses it: any Flax cell, both directions, residual
connections, carries in and out, checked against Flax's nn.RNN and numpy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import bidirectional_stack_sequence, stack_sequence

from seqrnn import RNNStack

X = np.random.default_rng(0).normal(size=(4, 7, 3)).astype(np.float32)  # [batch, time, in]
LENGTHS = np.array([7, 1, 4, 6], np.int32)
FLAX_CELLS = {'flax_lstm': nn.LSTMCell, 'flax_optimized_lstm': nn.OptimizedLSTMCell,
              'flax_gru': nn.GRUCell, 'flax_mgu': nn.MGUCell, 'flax_simple': nn.SimpleCell}


def _noisy(params):
  """Non-zero biases everywhere, so that a misplaced one shows."""
  rng = np.random.default_rng(5)
  return jax.tree.map(lambda p: p + 0.1 * rng.normal(size=p.shape).astype(np.float32), params)


@pytest.mark.parametrize('name', FLAX_CELLS)
def test_a_flax_cell_in_the_stack_equals_flax_rnn_on_every_real_step_and_final_carry(name):
  stack = RNNStack(cell=name, hidden_size=5)
  params = stack.init(jax.random.key(0), X, LENGTHS, train=False)
  (carry,), outputs = stack.apply(params, X, LENGTHS, train=False, return_carry=True)
  rnn = nn.RNN(FLAX_CELLS[name](5), return_carry=True)
  flax_carry, flax_outputs = rnn.apply({'params': params['params']['layer_0']}, X,
                                       seq_lengths=LENGTHS)
  for b, length in enumerate(LENGTHS):
    np.testing.assert_allclose(outputs[b, :length], flax_outputs[b, :length], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs[b, length:], 0.0)  # nn.RNN leaves padding as it is
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               carry, flax_carry)


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
@pytest.mark.parametrize('merge, residual', [('concat', False), ('sum', True)])
def test_a_bidirectional_stack_matches_numpy_on_each_sequence_read_both_ways(cell, merge, residual):
  stack = RNNStack(cell=cell, hidden_size=5, num_layers=3, bidirectional=True, merge=merge,
                   residual=residual)
  params = _noisy(stack.init(jax.random.key(0), X, LENGTHS, train=False)['params'])
  outputs = stack.apply({'params': params}, X, LENGTHS, train=False, return_carry=False)
  layers = [(params[f'layer_{i}'], params[f'layer_{i}_backward']) for i in range(3)]
  for b, length in enumerate(LENGTHS):
    expected = bidirectional_stack_sequence(cell, layers, X[b, :length].astype(np.float64),
                                            merge, residual)
    np.testing.assert_allclose(outputs[b, :length], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outputs[b, length:], 0.0)


def test_the_backward_direction_is_a_forward_stack_on_length_reversed_sequences():
  bi = RNNStack(cell='flax_lstm', hidden_size=5, bidirectional=True)
  params = bi.init(jax.random.key(0), X, LENGTHS, train=False)['params']
  ((_, carry_b),), outputs = bi.apply({'params': params}, X, LENGTHS, train=False, return_carry=True)
  reversed_x = X.copy()
  for b, length in enumerate(LENGTHS):
    reversed_x[b, :length] = X[b, :length][::-1]
  uni = RNNStack(cell='flax_lstm', hidden_size=5)
  (uni_carry,), uni_out = uni.apply({'params': {'layer_0': params['layer_0_backward']}},
                                    reversed_x, LENGTHS, train=False, return_carry=True)
  for b, length in enumerate(LENGTHS):
    np.testing.assert_allclose(outputs[b, :length, 5:], np.asarray(uni_out[b, :length])[::-1],
                               rtol=1e-6, atol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, carry_b, uni_carry)


def test_a_residual_unidirectional_stack_matches_numpy():
  stack = RNNStack(cell='gru', hidden_size=5, num_layers=3, residual=True)
  params = _noisy(stack.init(jax.random.key(0), X, LENGTHS, train=False)['params'])
  outputs = stack.apply({'params': params}, X, LENGTHS, train=False, return_carry=False)
  for b, length in enumerate(LENGTHS):
    x = X[b, :length].astype(np.float64)
    x = stack_sequence('gru', [params['layer_0']], x)  # 3 features -> 5: no residual
    for i in (1, 2):
      x = x + stack_sequence('gru', [params[f'layer_{i}']], x)
    np.testing.assert_allclose(outputs[b, :length], x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cell, impl', [('gru', 'fused'), ('lstm', 'fused'), ('lstm', 'scan'),
                                        ('flax_lstm', 'scan')])
def test_continuing_a_sequence_with_its_carries_equals_one_call_over_the_whole(cell, impl):
  lengths = np.array([7, 5, 6, 7], np.int32)  # every sequence runs past the cut at step 4
  stack = RNNStack(cell=cell, hidden_size=5, num_layers=2, impl=impl)
  params = stack.init(jax.random.key(0), X, lengths, train=False)

  def whole(params):
    carries, outputs = stack.apply(params, X, lengths, train=False, return_carry=True)
    return outputs, carries

  def in_two_calls(params):
    carries, first = stack.apply(params, X[:, :4], np.full(4, 4, np.int32), train=False,
                                 return_carry=True)
    carries, second = stack.apply(params, X[:, 4:], lengths - 4, train=False,
                                  initial_carries=carries, return_carry=True)
    return jnp.concatenate([first, second], 1), carries

  (out_a, carries_a), (out_b, carries_b) = whole(params), in_two_calls(params)
  np.testing.assert_allclose(out_a, out_b, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               carries_a, carries_b)
  loss = lambda run: lambda p: (run(p)[0] ** 2).sum()
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               jax.grad(loss(whole))(params), jax.grad(loss(in_two_calls))(params))


@pytest.mark.parametrize('cell', ['lstm', 'flax_gru'])
def test_a_learned_initial_carry_is_a_parameter_that_starts_every_sequence(cell):
  learned = RNNStack(cell=cell, hidden_size=5, learned_initial_carry=True)
  params = learned.init(jax.random.key(0), X, LENGTHS, train=False)['params']
  starts = {k: v for k, v in params['layer_0'].items() if k.startswith('initial_carry_')}
  assert starts and all(np.all(v == 0) for v in starts.values())  # zeros until trained
  params['layer_0'] = {**params['layer_0'], **{
      k: jnp.full(v.shape, 0.3 + 0.1 * i) for i, (k, v) in enumerate(sorted(starts.items()))}}
  out = learned.apply({'params': params}, X, LENGTHS, train=False, return_carry=False)
  zero = RNNStack(cell=cell, hidden_size=5)
  carry = jax.tree.unflatten(
      jax.tree.structure(zero.apply({'params': {'layer_0': {'cell': params['layer_0']['cell']}}},
                                    X, LENGTHS, train=False, return_carry=True)[0][0]),
      [jnp.full((4, 5), 0.3 + 0.1 * i) for i in range(len(starts))])
  given = zero.apply({'params': {'layer_0': {'cell': params['layer_0']['cell']}}}, X, LENGTHS,
                     train=False, initial_carries=[carry], return_carry=False)
  np.testing.assert_allclose(out, given, rtol=1e-6)
  grads = jax.grad(lambda p: (learned.apply({'params': p}, X, LENGTHS, train=False,
                                            return_carry=False) ** 2).sum())(params)
  assert all(np.any(grads['layer_0'][k] != 0) for k in starts)
