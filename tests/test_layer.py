"""The two time loops agree, and the scan loop takes every kind of derivative."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrnn import RNNStack, reverse_padded

X = np.random.default_rng(0).normal(size=(4, 7, 3)).astype(np.float32)  # [batch, time, in]
LENGTHS = np.array([7, 1, 4, 6], np.int32)


def _stack(cell, impl, **kw):
  kw = {'hidden_size': 5, 'num_layers': 2, **kw}
  return RNNStack(cell=cell, impl=impl, **kw)


def _run(stack, params, x, lengths, train):
  """(outputs, carries) and the gradient of a loss over both, w.r.t. params and x."""
  weights = np.random.default_rng(1).normal(size=(x.shape[0], x.shape[1], 5)).astype(np.float32)

  def loss(params, x):
    carries, out = stack.apply(params, x, lengths, train=train, return_carry=True,
                               rngs={'dropout': jax.random.key(3)})
    value = (out[..., :5] * weights).sum() + sum((c ** 2).sum() for c in jax.tree.leaves(carries))
    return value, (out, carries)

  (_, aux), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
  return aux, grads


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
@pytest.mark.parametrize('lengths, dropout, dtype', [
    (LENGTHS, 0.0, jnp.float32),
    (np.full(4, 7, np.int32), 0.0, jnp.float32),
    (LENGTHS, 0.5, jnp.float32),
    (LENGTHS, 0.0, jnp.bfloat16),
])
def test_scan_and_fused_loops_give_the_same_outputs_final_carries_and_gradients(
    cell, lengths, dropout, dtype):
  fused, scan = (_stack(cell, impl, dropout_rate=dropout, dtype=dtype) for impl in ('fused', 'scan'))
  params = fused.init(jax.random.key(0), X, lengths, train=False)
  assert jax.tree.structure(params) == jax.tree.structure(
      scan.init(jax.random.key(0), X, lengths, train=False))  # one set of parameters for both
  tol = dict(rtol=1e-5, atol=1e-6) if dtype == jnp.float32 else dict(rtol=3e-2, atol=3e-2)
  a, b = (_run(s, params, X, lengths, train=dropout > 0) for s in (fused, scan))
  jax.tree.map(lambda u, v: np.testing.assert_allclose(
      np.asarray(u, np.float32), np.asarray(v, np.float32), **tol), a, b)


def _hidden_sum(stack, params, x):
  return stack.apply(params, x, LENGTHS, train=False, return_carry=False).sum()


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
def test_forward_mode_and_second_derivatives_work_through_the_scan_loop(cell):
  scan, fused = _stack(cell, 'scan'), _stack(cell, 'fused')
  params = scan.init(jax.random.key(0), X, LENGTHS, train=False)
  f_scan = lambda x: scan.apply(params, x, LENGTHS, train=False, return_carry=False)
  # Forward mode equals the fused loop's hand-written reverse mode.
  jac_fwd = jax.jacfwd(f_scan)(X)
  jac_rev = jax.jacrev(lambda x: fused.apply(params, x, LENGTHS, train=False, return_carry=False))(X)
  np.testing.assert_allclose(jac_fwd, jac_rev, rtol=1e-4, atol=1e-5)
  # A Hessian-vector product (forward over reverse) equals central differences of the
  # fused loop's gradient.
  v = jax.tree.map(lambda p: jnp.asarray(np.random.default_rng(2).normal(size=p.shape),
                                         jnp.float32), params)
  grad_scan = jax.grad(lambda p: _hidden_sum(scan, p, X) ** 2 / 100)
  grad_fused = jax.grad(lambda p: _hidden_sum(fused, p, X) ** 2 / 100)
  _, hvp = jax.jvp(grad_scan, (params,), (v,))
  eps = 1e-2
  shifted = lambda s: grad_fused(jax.tree.map(lambda p, d: p + s * eps * d, params, v))
  numeric = jax.tree.map(lambda a, b: (a - b) / (2 * eps), shifted(1.0), shifted(-1.0))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=5e-2, atol=5e-3), hvp, numeric)


def test_forward_mode_through_the_fused_loop_names_the_scan_loop():
  fused = _stack('gru', 'fused')
  params = fused.init(jax.random.key(0), X, LENGTHS, train=False)
  with pytest.raises(TypeError, match=r"no forward-mode derivative .* model.impl='scan'"):
    jax.jvp(lambda x: fused.apply(params, x, LENGTHS, train=False, return_carry=False), (X,), (X,))


def test_auto_takes_the_fused_loop_where_the_cell_has_one_and_fused_refuses_other_cells():
  # 'auto' on a Flax cell is the scan loop; 'fused' on it is refused by name.
  stack = _stack('flax_gru', 'auto')
  params = stack.init(jax.random.key(0), X, LENGTHS, train=False)
  jax.jvp(lambda x: stack.apply(params, x, LENGTHS, train=False, return_carry=False), (X,), (X,))
  with pytest.raises(ValueError, match=r"impl='fused' needs a cell with a hand-written backward"):
    _stack('flax_gru', 'fused').init(jax.random.key(0), X, LENGTHS, train=False)


def test_reverse_padded_reverses_each_sequence_within_its_length():
  x = np.arange(7 * 4).reshape(7, 4, 1)  # [time, batch, 1]
  out = np.asarray(reverse_padded(jnp.asarray(x), jnp.asarray(LENGTHS)))
  for b, length in enumerate(LENGTHS):
    np.testing.assert_array_equal(out[:length, b], x[:length, b][::-1])
    np.testing.assert_array_equal(out[length:, b], x[length:, b])


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
def test_rematerialised_chunks_give_the_outputs_and_gradients_of_the_plain_loop(cell):
  # Outputs bitwise (the same steps run); gradients to float rounding (the weight
  # gradients are summed chunk by chunk, not in one matmul over all steps).
  x = np.random.default_rng(2).normal(size=(4, 23, 5)).astype(np.float32)
  lengths = np.array([23, 1, 9, 22], np.int32)
  weights = np.random.default_rng(3).normal(size=(4, 23, 16)).astype(np.float32)

  def grads(remat_chunk):
    stack = RNNStack(cell=cell, hidden_size=8, num_layers=2, bidirectional=True,
                     remat_chunk=remat_chunk)
    params = stack.init(jax.random.key(0), x, lengths, train=False)

    def loss(p, x):
      carries, out = stack.apply(p, x, lengths, train=False, return_carry=True)
      return jnp.sum(out * weights) + sum(jnp.sum(c) for c in jax.tree.leaves(carries))
    step = jax.value_and_grad(loss, argnums=(0, 1))
    loops = str(jax.make_jaxpr(step)(params, x)).count('scan[')
    return jax.jit(step)(params, x), loops

  plain, plain_loops = grads('0')
  for chunk in ('2', 'auto', '22'):  # 'auto': round(sqrt(23)) = 5 steps a chunk
    result, loops = grads(chunk)
    assert loops > plain_loops  # the chunked loops are there: the forward pass runs twice
    (value, grads_), (plain_value, plain_grads) = result, plain
    np.testing.assert_array_equal(value, plain_value)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
                 grads_, plain_grads)
