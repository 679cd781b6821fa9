"""One convention for the research API: flax.linen.RNN's layout and return order, one
accessor for h and c of any carry, Flax's dtype/param_dtype rule, any float width."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_gradient_is_finite_differences

import seqrnn
from seqrnn import LSTMState, Recurrent, RNNStack, cell_state, hidden_state, with_states
from seqrnn.cells import CELLS

X = np.random.default_rng(0).normal(size=(4, 4, 3)).astype(np.float32)  # time == batch
LENGTHS = np.array([4, 1, 3, 2], np.int32)


@pytest.mark.parametrize('cell', ['lstm', 'flax_lstm'])
def test_recurrent_and_the_stack_take_flax_rnns_layout_and_return_order(cell):
  layer = Recurrent(seqrnn.make_cell(cell, 5), time_major=False, return_carry=True)
  params = layer.init(jax.random.key(0), X, LENGTHS)
  carry, outputs = layer.apply(params, X, LENGTHS)
  flax_carry, flax_outputs = nn.RNN(seqrnn.make_cell(cell, 5), return_carry=True).apply(
      params, X, seq_lengths=LENGTHS)
  real = (np.arange(4)[None, :] < LENGTHS[:, None])[..., None]
  np.testing.assert_allclose(outputs, np.where(real, flax_outputs, 0), rtol=1e-6, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
               carry, flax_carry)
  np.testing.assert_array_equal(layer.apply(params, X, LENGTHS, return_carry=False), outputs)

  stack = RNNStack(cell=cell, hidden_size=5, return_carry=True)
  variables = {'params': {'layer_0': params['params']}}
  (stack_carry,), stack_outputs = stack.apply(variables, X, LENGTHS)
  np.testing.assert_array_equal(stack_outputs, outputs)
  jax.tree.map(np.testing.assert_array_equal, stack_carry, carry)
  # time == batch here: only the flag says which axis is time, and it is obeyed.
  (tm_carry,), tm_outputs = stack.apply(variables, X.transpose(1, 0, 2), LENGTHS,
                                        time_major=True)
  np.testing.assert_array_equal(tm_outputs.transpose(1, 0, 2), outputs)
  jax.tree.map(np.testing.assert_array_equal, tm_carry, carry)


def test_the_old_calls_still_work_and_say_what_changes():
  stack = RNNStack(cell='gru', hidden_size=5)
  params = stack.init(jax.random.key(0), X, LENGTHS)
  carries, outputs = stack.apply(params, X, LENGTHS, return_carry=True)
  with pytest.warns(FutureWarning, match=r'returns \(outputs, carries\); from seqrnn 0.4 .* '
                                         r'pass return_carry=True') as caught:
    old_outputs, old_carries = stack.apply(params, X, LENGTHS, train=False)
  assert caught[0].filename == __file__  # the researcher's line, not Flax's
  np.testing.assert_array_equal(old_outputs, outputs)
  jax.tree.map(np.testing.assert_array_equal, old_carries, carries)

  layer = Recurrent(seqrnn.GRUCell(5))
  x_tbf = X.transpose(1, 0, 2)
  layer_params = layer.init(jax.random.key(0), x_tbf, LENGTHS)  # init: nothing to warn of
  with pytest.warns(FutureWarning, match='pass time_major=True, return_carry=True'):
    carry, old = layer.apply(layer_params, x_tbf, LENGTHS)  # time-major, (carry, outputs)
  np.testing.assert_array_equal(old, layer.apply(layer_params, X, LENGTHS, time_major=False,
                                                 return_carry=False).transpose(1, 0, 2))


@pytest.mark.parametrize('cell', sorted(CELLS))
def test_hidden_state_is_the_last_real_output_of_every_cell_and_cell_state_an_lstms_c(cell):
  stack = RNNStack(cell=cell, hidden_size=5, return_carry=True)
  (carry,), outputs = stack.apply(stack.init(jax.random.key(0), X, LENGTHS), X, LENGTHS)
  last = np.asarray(outputs)[np.arange(4), LENGTHS - 1]
  np.testing.assert_array_equal(hidden_state(carry), last)
  has_c = 'lstm' in cell and cell != 'min_lstm'  # minLSTM's carry is h alone
  assert (cell_state(carry) is None) == (not has_c)
  if has_c:
    assert cell_state(carry).shape == (4, 5)
    h, c = jnp.ones((4, 5)), jnp.zeros((4, 5))
    replaced = with_states(carry, h, c)
    assert type(replaced) is type(carry)
    assert hidden_state(replaced) is h and cell_state(replaced) is c


def test_an_unknown_carry_is_named_rather_than_read_wrong():
  with pytest.raises(ValueError, match=r"h alone, an LSTMState\(hidden, cell\) or Flax's \(c, h\)"):
    hidden_state({'h': jnp.zeros(3)})
  assert hidden_state(LSTMState(1, 2)) == 1 and hidden_state((2, 1)) == 1  # Flax's (c, h)


def test_zoneout_reads_flax_lstms_c_h_carry_through_the_accessors():
  """At evaluation zoneout keeps p * old + (1 - p) * new of h and of c (Krueger et al.):
  stepped here by hand with Flax's own cell, (c, h) carry and all."""
  p_h, p_c = 0.3, 0.6
  stack = RNNStack(cell='flax_lstm', hidden_size=5, zoneout_hidden=p_h, zoneout_cell=p_c,
                   return_carry=True)
  params = stack.init(jax.random.key(0), X, LENGTHS)
  (carry,), outputs = stack.apply(params, X, LENGTHS)
  cell = nn.LSTMCell(5)
  for b, length in enumerate(LENGTHS):
    c = h = np.zeros((1, 5), np.float32)
    for t in range(length):
      (new_c, new_h), _ = cell.apply({'params': params['params']['layer_0']['cell']}, (c, h),
                                     X[b:b + 1, t])
      c, h = p_c * c + (1 - p_c) * new_c, p_h * h + (1 - p_h) * new_h
      np.testing.assert_allclose(outputs[b, t], h[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry[0][b], c[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('cell', ['gru', 'lstm', 'flax_lstm'])
def test_bfloat16_computes_in_bfloat16_and_keeps_parameters_carries_and_gradients_float32(cell):
  low = RNNStack(cell=cell, hidden_size=8, dtype=jnp.bfloat16, return_carry=True)
  full = low.clone(dtype=jnp.float32)
  params = full.init(jax.random.key(0), X, LENGTHS)
  assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  (carries, outputs), (ref_carries, ref_outputs) = (
      s.apply(params, X, LENGTHS) for s in (low, full))
  assert outputs.dtype == jnp.bfloat16 and ref_outputs.dtype == jnp.float32
  assert {a.dtype for a in jax.tree.leaves(carries)} == {jnp.dtype(jnp.float32)}
  np.testing.assert_allclose(np.asarray(outputs, np.float32), ref_outputs, atol=5e-2)
  grads = jax.grad(lambda p: low.apply(p, X, LENGTHS)[1].astype(jnp.float32).sum())(params)
  assert {a.dtype for a in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize('cell', ['gru', 'lstm', 'flax_lstm'])
def test_float64_runs_every_cell_in_float64_and_its_gradient_matches_finite_differences(cell):
  with jax.enable_x64(True):
    x = jnp.asarray(X, jnp.float64)
    stack = RNNStack(cell=cell, hidden_size=3, param_dtype=jnp.float64, return_carry=True)
    params = stack.init(jax.random.key(0), x, LENGTHS)
    carries, outputs = stack.apply(params, x, LENGTHS)
    assert {a.dtype for a in jax.tree.leaves((params, carries, outputs))} == {
        jnp.dtype(jnp.float64)}
    assert_gradient_is_finite_differences(lambda p: (stack.apply(p, x, LENGTHS)[1] ** 2).sum(),
                                          params)


def test_forward_mode_through_the_fused_loop_is_named_also_under_jit():
  stack = RNNStack(cell='gru', hidden_size=4, impl='fused', return_carry=False)
  params = stack.init(jax.random.key(0), X, LENGTHS)
  f = lambda x: stack.apply(params, x, LENGTHS)
  message = r"no forward-mode derivative .* use the scan loop for them: model.impl='scan'"
  for run in (lambda: jax.jit(lambda x: jax.jvp(f, (x,), (x,)))(X),
              lambda: jax.jit(jax.jacfwd(f))(X),
              lambda: jax.vmap(lambda x: jax.jvp(f, (x,), (x,)))(X[None])):
    with pytest.raises(TypeError, match=message):
      run()
  jax.jit(jax.grad(lambda x: f(x).sum()))(X)  # reverse mode under jit is not mistaken for it
