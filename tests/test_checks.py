"""What a researcher hands the modules directly is checked: a bad length, segment, rate
or count is named, eagerly where values are concrete and under jit through `checked`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqrnn
from seqrnn import RNNStack, pool
from seqrnn.layer import Recurrent

X = jnp.ones((3, 5, 2))  # [batch, time, features]


def _init(stack, lengths, x=X, **kw):
  return stack.init(jax.random.key(0), x, jnp.asarray(lengths), train=False, **kw)


@pytest.mark.parametrize('lengths, message', [
    ([5, 6, 2], r'RNNStack: lengths\[1\] is 6; every length must be in \[1, 5\] \(the time axis '
                r'of the inputs; is the input time-major\?\)'),
    ([5, 0, 2], r'lengths\[1\] is 0; every length must be in \[1, 5\]: a sequence has at least '
                r'one real step'),
    ([-1, 3, 2], r'lengths\[0\] is -1'),
])
def test_lengths_outside_the_time_axis_are_named(lengths, message):
  with pytest.raises(ValueError, match=message):
    _init(RNNStack(cell='gru', hidden_size=4), lengths)
  with pytest.raises(ValueError, match=message.replace('RNNStack', 'pool')):
    pool(X, jnp.asarray(lengths), 'last')
  cell = seqrnn.make_cell('gru', 4)
  with pytest.raises(ValueError, match=message.replace('RNNStack', 'Recurrent')):
    Recurrent(cell, time_major=True, return_carry=True).init(jax.random.key(0), X.transpose(1, 0, 2), jnp.asarray(lengths))


def test_float_lengths_and_a_wrong_shape_are_named():
  with pytest.raises(TypeError, match=r'RNNStack: lengths has dtype float32; expected integers'):
    _init(RNNStack(cell='gru', hidden_size=4, bidirectional=True), jnp.array([5., 2.5, 4.]))
  with pytest.raises(ValueError, match=r'lengths has shape \(2,\); expected \(3,\)'):
    _init(RNNStack(cell='gru', hidden_size=4), [5, 2])
  with pytest.raises(ValueError, match=r'inputs have shape \(5, 2\); expected \[batch, time, '):
    _init(RNNStack(cell='gru', hidden_size=4), [5], x=jnp.ones((5, 2)))


def test_under_jit_the_same_checks_run_where_checked_asks_for_them():
  stack = RNNStack(cell='lstm', hidden_size=4)
  params = _init(stack, [5, 3, 2])
  apply = jax.jit(lambda x, lengths: stack.apply(params, x, lengths, train=False, return_carry=False))
  err, _ = seqrnn.checked(apply)(X, jnp.array([5, 3, 2]))
  err.throw()  # nothing to throw
  err, _ = seqrnn.checked(apply)(X, jnp.array([5, 9, 2]))
  with pytest.raises(Exception, match=r'RNNStack: lengths must be in \[1, 5\] .* found one in '
                                      r'\[2, 9\]'):
    err.throw()
  apply(X, jnp.array([5, 9, 2]))  # unchecked, compiled code stays as fast as before


def test_segments_inconsistent_with_lengths_are_named():
  stack = RNNStack(cell='gru', hidden_size=4)
  lengths = [5, 3, 2]
  good = np.array([[1, 1, 2, 2, 2], [1, 2, 2, 0, 0], [1, 1, 0, 0, 0]])
  _init(stack, lengths, segments_bt=jnp.asarray(good))
  for b, t, value, why in [(1, 3, 2, 'past its length'), (0, 2, 3, 'a jump of 2'),
                           (2, 0, 2, 'not from 1'), (0, 4, 0, 'zero at a real step')]:
    bad = good.copy()
    bad[b, t] = value
    with pytest.raises(ValueError, match=rf'segments\[{b}, {t}\] is {value} with lengths\[{b}\]='):
      _init(stack, lengths, segments_bt=jnp.asarray(bad))


@pytest.mark.parametrize('attributes, message', [
    (dict(dropout_rate=1.0), r'dropout_rate=1.0 must be in \[0, 1\)'),
    (dict(dropout_rate=-0.5), r'dropout_rate=-0.5 must be in \[0, 1\)'),
    (dict(zoneout_cell=1.5), r'zoneout_cell=1.5 must be in \[0, 1\)'),
    (dict(num_layers=0), r'num_layers=0 must be an integer >= 1'),
    (dict(unroll=0), r'unroll=0 must be an integer >= 1'),
    (dict(hidden_size=2.5), r'hidden_size=2.5 must be an integer >= 1'),
    (dict(impl='scan', remat_chunk='auto'), r"remat_chunk='auto' rematerialises the fused loop; "
                                            r"impl='scan' would keep every step"),
    (dict(merge='avg'), r"merge='avg' is not one of \['concat', 'sum'\]"),
])
def test_bad_attributes_are_refused_when_the_stack_is_made(attributes, message):
  with pytest.raises(ValueError, match='RNNStack: ' + message):
    RNNStack(cell='gru', **attributes)


def test_remat_where_the_cell_runs_in_the_scan_loop_and_a_residual_that_cannot_add_are_refused():
  with pytest.raises(ValueError, match=r"remat_chunk='auto' rematerialises the fused loop; "
                                       r"GRUCell runs in the scan loop"):
    _init(RNNStack(cell='flax_gru', hidden_size=4, remat_chunk='auto'), [5, 3, 2])
  # merge='sum' below, the top layer concatenated (as a Classifier asks): 4 in, 8 out.
  stack = RNNStack(cell='gru', hidden_size=4, num_layers=2, bidirectional=True, merge='sum',
                   merge_top=False, residual=True)
  with pytest.raises(ValueError, match=r'residual=True, but layer 1 reads 4 features and writes '
                                       r'8'):
    _init(stack, [5, 3, 2])


def test_pool_of_a_bidirectional_stacks_outputs_takes_the_backward_half_at_step_0():
  stack = RNNStack(cell='gru', hidden_size=4, bidirectional=True)
  lengths = jnp.array([5, 3, 2])
  x = jax.random.normal(jax.random.key(1), X.shape)
  params = stack.init(jax.random.key(0), x, lengths, train=False)
  (carries,), outputs = stack.apply(params, x, lengths, train=False, return_carry=True)
  forward_carry, backward_carry = carries
  # The last real step of each direction is its final carry (a GRU's carry is its output).
  np.testing.assert_allclose(pool(outputs, lengths, 'last', bidirectional=True),
                             np.concatenate([forward_carry, backward_carry], -1), rtol=1e-6)
  assert not np.allclose(pool(outputs, lengths, 'last')[:, 4:], backward_carry)  # the old reading


def test_any_cell_object_runs_a_cell_instance_a_partial_a_class_or_a_name():
  import functools
  import flax.linen as nn
  x = jax.random.normal(jax.random.key(1), X.shape)
  lengths = jnp.array([5, 3, 2])
  hard = functools.partial(nn.GRUCell, gate_fn=jax.nn.hard_sigmoid)
  for cell, flax_cell in [(nn.MGUCell(4), nn.MGUCell(4)), (hard, hard(features=4)),
                          (nn.GRUCell, nn.GRUCell(4)), ('flax_lstm', nn.LSTMCell(4))]:
    stack = RNNStack(cell=cell, hidden_size=4)
    params = stack.init(jax.random.key(0), x, lengths, train=False)
    outputs = stack.apply(params, x, lengths, train=False, return_carry=False)
    # Flax's own nn.RNN over the same cell and parameters, as the reference.
    expected = nn.RNN(flax_cell).apply({'params': params['params']['layer_0']}, x,
                                       seq_lengths=lengths)
    real = np.arange(5)[None, :, None] < np.asarray(lengths)[:, None, None]
    np.testing.assert_allclose(np.where(real, outputs, 0), np.where(real, expected, 0),
                               rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r'cell MGUCell has features=8, but the stack has '
                                       r'hidden_size=4'):
    RNNStack(cell=nn.MGUCell(8), hidden_size=4).init(jax.random.key(0), x, lengths, train=False)


def test_forward_over_reverse_hessian_vector_products_go_through_the_fused_loop():
  stack = RNNStack(cell='gru', hidden_size=4, impl='fused')
  x, lengths = jax.random.normal(jax.random.key(1), X.shape), jnp.array([5, 3, 2])
  params = stack.init(jax.random.key(0), x, lengths, train=False)
  loss = lambda p: (stack.apply(p, x, lengths, train=False, return_carry=False) ** 2).sum()
  grad, scan_grad = jax.grad(loss), jax.grad(
      lambda p: (stack.clone(impl='scan').apply(p, x, lengths, return_carry=False) ** 2).sum())
  v = jax.tree.map(jnp.ones_like, params)
  hvp, scan_hvp = (jax.jvp(g, (params,), (v,))[1] for g in (grad, scan_grad))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), hvp, scan_hvp)
  with pytest.raises(TypeError, match=r'forward-over-reverse Hessian-vector products of a loss '
                                      r'do work'):
    jax.jvp(lambda x: stack.apply(params, x, lengths, train=False, return_carry=False), (x,), (x,))


def test_lengths_may_be_left_out_or_given_as_a_right_padded_mask():
  stack = RNNStack(cell='lstm', hidden_size=4, bidirectional=True)
  x = jax.random.normal(jax.random.key(1), X.shape)
  lengths = jnp.array([5, 3, 2])
  params = stack.init(jax.random.key(0), x, train=False)  # no lengths: full length
  full = stack.apply(params, x, jnp.full((3,), 5), train=False, return_carry=False)
  np.testing.assert_array_equal(stack.apply(params, x, train=False, return_carry=False), full)
  mask = np.arange(5)[None, :] < np.asarray(lengths)[:, None]
  carries, by_lengths = stack.apply(params, x, lengths, train=False, return_carry=True)
  mask_carries, by_mask = stack.apply(params, x, jnp.asarray(mask), train=False, return_carry=True)
  np.testing.assert_array_equal(by_mask, by_lengths)
  jax.tree.map(np.testing.assert_array_equal, mask_carries, carries)
  np.testing.assert_array_equal(pool(by_mask, jnp.asarray(mask), 'mean'),
                                pool(by_lengths, lengths, 'mean'))
  left_padded = mask[:, ::-1].copy()
  with pytest.raises(ValueError, match=r'RNNStack: mask\[1, 0\] is False, but row 1 has 3 real '
                                       r'steps: a mask must be True on its first steps'):
    stack.apply(params, x, jnp.asarray(left_padded), return_carry=False)
  with pytest.raises(ValueError, match=r'the mask has shape \(3, 4\); expected \(3, 5\)'):
    stack.apply(params, x, jnp.asarray(mask[:, :4]), return_carry=False)
