"""Step-wise use of a stack: `RNNStack.step` is the sequence call one timestep at a time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrnn import RNNStack

X = np.random.default_rng(0).normal(size=(3, 6, 4)).astype(np.float32)


# Each kind of cell: the fused loop's (gru, lstm), a ProjectedCell (ln_lstm), Flax's with
# their (c, h) pair (flax_lstm) and h alone (flax_gru).
@pytest.mark.parametrize('cell', ['gru', 'lstm', 'ln_lstm', 'flax_lstm', 'flax_gru'])
def test_stepping_t_times_gives_the_sequence_calls_outputs_and_carries(cell):
  stack = RNNStack(cell=cell, hidden_size=5, num_layers=2, residual=True,
                   learned_initial_carry=True, return_carry=True)
  params = stack.init(jax.random.key(0), X)
  params = jax.tree.map(lambda a: a + 0.1, params)  # learned initial carries away from zero
  carries, outputs = stack.apply(params, X)
  step = jax.jit(lambda c, x: stack.apply(params, c, x, method='step'))
  stepped, ys = None, []
  for t in range(X.shape[1]):
    stepped, y = step(stepped, X[:, t])
    ys.append(y)
  np.testing.assert_allclose(np.stack(ys, 1), outputs, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               stepped, carries)


def test_a_greedy_decoder_feeds_each_output_back_as_the_next_input():
  """What step is for: the input at t + 1 is computed from the output at t."""
  stack = RNNStack(cell='lstm', hidden_size=4, num_layers=2, return_carry=True)
  x0 = X[:, 0]
  params = stack.init(jax.random.key(0), x0[:, None])
  step = jax.jit(lambda c, x: stack.apply(params, c, x, method='step'))
  carries, x, ys = None, x0, []
  for _ in range(5):
    carries, y = step(carries, x)
    x = jnp.tanh(y)  # the next input: here simply the squashed output
    ys.append(y)
  # Teacher forcing with the inputs the decoder produced gives the same outputs.
  inputs = jnp.stack([x0] + [jnp.tanh(y) for y in ys[:-1]], 1)
  np.testing.assert_allclose(stack.apply(params, inputs, return_carry=False), jnp.stack(ys, 1),
                             rtol=1e-5, atol=1e-6)


def test_a_bidirectional_stack_and_a_wrong_shape_are_refused_by_step():
  stack = RNNStack(cell='gru', hidden_size=4, bidirectional=True, return_carry=True)
  params = stack.init(jax.random.key(0), X)
  with pytest.raises(ValueError, match='a bidirectional stack reads each sequence backwards'):
    stack.apply(params, None, X[:, 0], method='step')
  uni = RNNStack(cell='gru', hidden_size=4)
  with pytest.raises(ValueError, match=r'x has shape \(3, 6, 4\); expected one timestep'):
    uni.apply(uni.init(jax.random.key(0), X, return_carry=False), None, X, method='step')
