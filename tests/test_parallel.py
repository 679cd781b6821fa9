"""impl='parallel' (seqrnn.parallel): the whole trajectory at once equals the sequential
loop (outputs, final carries, gradients), with lengths, both directions, packed rows and
dropout; min_gru and min_lstm equal their documented equations, step by step in numpy;
a trajectory not converged within the cap is finished sequentially."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqrnn

LENGTHS = jnp.array([12, 5, 1, 9])


def _x(seed=0, time=12):
  return jax.random.normal(jax.random.key(seed), (4, time, 3))


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize('cell', ['min_gru', 'min_lstm'])
def test_min_cells_follow_their_equations_step_by_step(cell):
  stack = seqrnn.RNNStack(cell=cell, hidden_size=5, impl='parallel', return_carry=True)
  x = _x()
  params = stack.init(jax.random.key(1), x, LENGTHS)
  carry, outputs = stack.apply(params, x, LENGTHS)
  p = params['params']['layer_0']['cell']['input_projection']
  kernel, bias = np.asarray(p['kernel'], np.float64), np.asarray(p['bias'], np.float64)
  for b, length in enumerate(np.asarray(LENGTHS)):
    h = np.zeros(5)
    for t in range(length):
      g = np.asarray(x[b, t], np.float64) @ kernel + bias
      if cell == 'min_gru':
        z, h_tilde = _sigmoid(g[:5]), g[5:]
        h = (1 - z) * h + z * h_tilde
      else:
        f, i, h_tilde = _sigmoid(g[:5]), _sigmoid(g[5:10]), g[10:]
        h = f / (f + i) * h + i / (f + i) * h_tilde
      np.testing.assert_allclose(outputs[b, t], h, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(outputs[b, length:]) == 0)
    np.testing.assert_allclose(carry[0][b], h, rtol=1e-5, atol=1e-6)


CELLS = ['min_gru', 'min_lstm', 'diag_gru', 'diag_lstm', 'gru', 'lstm', 'ln_gru', 'ln_lstm',
         'flax_lstm']


# Six units: the full Jacobian ('auto'), exact diagonal for diag_gru; and the quasi-Newton
# forward and adjoint (the Jacobian's diagonal, iterated) for a GRU and an LSTM.
@pytest.mark.parametrize('cell,jacobian', [(c, 'auto') for c in CELLS]
                         + [('gru', 'diagonal'), ('diag_lstm', 'diagonal')])
def test_parallel_equals_the_sequential_loop_outputs_carries_and_gradients(cell, jacobian,
                                                                          monkeypatch):
  # The adjoint is solved in parallel: its sequential finish, poisoned, is never taken here.
  finish = seqrnn.parallel._sequential_gradients
  poisoned = lambda *args: jax.tree.map(lambda a: a * jnp.nan, finish(*args))
  monkeypatch.setattr(seqrnn.parallel, '_sequential_gradients', poisoned)
  x = _x()
  segments = jnp.array([[1] * 4 + [2] * 8, [1] * 5 + [0] * 7, [1] + [0] * 11,
                        [1] * 3 + [2] * 3 + [3] * 3 + [0] * 3])  # packed rows
  results = []
  for impl in ('scan', 'parallel'):
    # Both directions; rows of padding, of one sequence and of several; dropout on outputs.
    stack = seqrnn.RNNStack(cell=cell, hidden_size=6, bidirectional=True, dropout_rate=0.3,
                            impl=impl, return_carry=True, parallel_jacobian=jacobian)
    params = stack.init(jax.random.key(1), x, LENGTHS) if impl == 'scan' else params

    def loss(params, x):
      carries, outputs = stack.apply(params, x, LENGTHS, train=True, segments_bt=segments,
                                     rngs={'dropout': jax.random.key(2)})
      return (outputs ** 2).sum() + sum((l ** 2).sum() for l in jax.tree.leaves(carries)), (
          carries, outputs)

    (_, aux), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(params, x)
    results.append((aux, grads))
  for a, b in zip(*map(jax.tree.leaves, results), strict=True):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_a_trajectory_not_converged_within_the_cap_is_finished_sequentially():
  x = _x(time=24) * 3.0
  stack = seqrnn.RNNStack(cell='gru', hidden_size=8, impl='scan', return_carry=False)
  params = stack.init(jax.random.key(1), x, LENGTHS)
  big = jax.tree.map(lambda w: w * 4.0, params)  # large recurrent weights: slow to converge
  sequential = stack.apply(big, x, LENGTHS)
  for cap, finished in ((2, True), (0, False)):
    parallel = seqrnn.RNNStack(cell='gru', hidden_size=8, impl='parallel', return_carry=False,
                               parallel_iterations=cap)
    outputs, state = parallel.apply(big, x, LENGTHS, mutable=['intermediates'])
    (taken,) = jax.tree.leaves(state)
    np.testing.assert_allclose(outputs, sequential, rtol=1e-4, atol=1e-5)
    if finished:
      assert int(taken) == cap + 1  # the count past the cap says: finished sequentially
    else:
      assert 2 < int(taken) <= 24  # Newton converged on its own, within the steps


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
def test_quasi_newton_equals_the_sequential_loop_and_full_newton_takes_fewer_iterations(cell):
  x = _x(time=24)
  stack = seqrnn.RNNStack(cell=cell, hidden_size=6, impl='scan', return_carry=False)
  params = stack.init(jax.random.key(1), x, LENGTHS)
  sequential = stack.apply(params, x, LENGTHS)
  taken = {}
  for jacobian in ('diagonal', 'full'):
    parallel = seqrnn.RNNStack(cell=cell, hidden_size=6, impl='parallel', return_carry=False,
                               parallel_jacobian=jacobian)
    outputs, state = parallel.apply(params, x, LENGTHS, mutable=['intermediates'])
    np.testing.assert_allclose(outputs, sequential, rtol=1e-4, atol=1e-5)
    (taken[jacobian],) = map(int, jax.tree.leaves(state))
  assert taken['full'] < taken['diagonal'] <= 24  # Newton's quadratic convergence


@pytest.mark.parametrize('cell', [seqrnn.GRUCell, seqrnn.LSTMCell])
def test_a_cells_own_jacobian_diagonal_is_the_diagonal_of_its_state_jacobian(cell):
  # Quasi-Newton reads it in place of one JVP a unit: a wrong one would only converge slower.
  module = cell(features=5)
  x_proj = jax.random.normal(jax.random.key(0), (2, module.num_gates * 5))
  carry = jax.tree.map(lambda l: jax.random.normal(jax.random.key(1), l.shape),
                       module.initialize_carry(jax.random.key(2), (2, 3)))
  params = module.init(jax.random.key(3), carry, x_proj, method=cell.step_projected)
  params = jax.tree.map(lambda w: w + jax.random.normal(jax.random.key(4), w.shape), params)
  flat = lambda c: jnp.concatenate(jax.tree.leaves(c), -1)
  step = lambda c: flat(module.apply(params, c, x_proj, method=cell.step_projected)[0])
  jacobian = jax.jacfwd(step)(carry)  # d new[b, i] / d carry leaf [b, j]
  full = jnp.concatenate([jnp.einsum('bibj->bij', j) for j in jax.tree.leaves(jacobian)], -1)
  expected = jnp.diagonal(full, axis1=1, axis2=2)
  given = flat(module.apply(params, carry, x_proj, method=cell.state_jacobian_diagonal))
  np.testing.assert_allclose(given, expected, rtol=1e-5, atol=1e-6)


def test_diagonal_gru_converges_in_fewer_iterations_than_steps():
  # Its state Jacobian is diagonal: the Newton step is exact, convergence quadratic.
  x = _x(time=64)
  stack = seqrnn.RNNStack(cell='diag_gru', hidden_size=8, impl='parallel', return_carry=False)
  params = stack.init(jax.random.key(1), x, LENGTHS)
  _, state = stack.apply(params, x, LENGTHS, mutable=['intermediates'])
  assert int(jax.tree.leaves(state)[0]) < 16


def test_the_parallel_loop_refuses_what_it_cannot_do_by_name():
  x = _x()
  with pytest.raises(ValueError, match="impl='parallel' solves the whole trajectory at once"):
    seqrnn.RNNStack(cell='lstm', hidden_size=4, impl='parallel', zoneout_cell=0.1).init(
        jax.random.key(0), x, LENGTHS)
  with pytest.raises(ValueError, match='MinGRUCell has no recurrent matmul'):
    seqrnn.RNNStack(cell='min_gru', hidden_size=4, impl='scan', variational_dropout=0.2).init(
        {'params': jax.random.key(0), 'dropout': jax.random.key(1)}, x, LENGTHS, train=True)


def test_cudnn_weights_give_the_lstms_outputs_in_jaxs_reference_and_cpu_is_refused():
  from jax.experimental import rnn
  from seqrnn.cudnn import flat_weights
  x = _x()
  stack = seqrnn.RNNStack(cell='lstm', hidden_size=5, impl='scan', return_carry=True)
  params = stack.init(jax.random.key(1), x, LENGTHS)
  carries, outputs = stack.apply(params, x, LENGTHS)
  p = params['params']['layer_0']['cell']
  weights = flat_weights((p['input_projection']['kernel'], p['input_projection']['bias']),
                         (p['recurrent_kernel'], p['recurrent_bias']))
  zeros = jnp.zeros((1, 4, 5))
  y, h, c = rnn.lstm_ref(x, zeros, zeros, *rnn.unpack_lstm_weights(weights, 3, 5, 1, False),
                         seq_lengths=LENGTHS, input_size=3, hidden_size=5, num_layers=1,
                         dropout=0.0, bidirectional=False)
  real = (jnp.arange(12)[None, :] < LENGTHS[:, None])[..., None]
  np.testing.assert_allclose(jnp.where(real, y, 0), outputs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(h[0], carries[0].hidden, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(c[0], carries[0].cell, rtol=1e-5, atol=1e-6)
  if jax.default_backend() != 'gpu':
    with pytest.raises(ValueError, match="impl='cudnn' runs cuDNN's LSTM, on NVIDIA GPUs only"):
      seqrnn.RNNStack(cell='lstm', hidden_size=5, impl='cudnn', return_carry=False).apply(
          params, x, LENGTHS)
  with pytest.raises(ValueError, match="impl='cudnn' runs seqrnn's LSTM .* GRUCell has no cuDNN"):
    seqrnn.RNNStack(cell='gru', hidden_size=5, impl='cudnn', return_carry=False).init(
        jax.random.key(0), x, LENGTHS)


@pytest.mark.skipif(jax.default_backend() != 'gpu', reason="cuDNN's LSTM runs on NVIDIA GPUs only")
@pytest.mark.parametrize('bidirectional', [False, True])
def test_on_a_gpu_cudnn_gives_the_scan_loops_outputs_carries_and_gradients(bidirectional):
  # Two layers (the second reads the first's outputs), ragged lengths, and in a reversed
  # layer each row reversed up to its own length. 'highest' keeps both in float32: the
  # scan loop's matmuls and cuDNN's (jax.experimental.rnn then refuses TF32).
  x = _x()
  stacks = {impl: seqrnn.RNNStack(cell='lstm', hidden_size=5, num_layers=2, impl=impl,
                                  bidirectional=bidirectional, return_carry=True)
            for impl in ('scan', 'cudnn')}
  params = stacks['scan'].init(jax.random.key(1), x, LENGTHS)

  def loss(params, x, impl):
    carries, outputs = stacks[impl].apply(params, x, LENGTHS)
    weights = jnp.cos(jnp.arange(outputs.size).reshape(outputs.shape))  # every output counts
    return (outputs * weights).sum() + sum(jnp.sum(c ** 2) for c in jax.tree.leaves(carries)), (
        carries, outputs)

  results = {}
  with jax.default_matmul_precision('highest'):
    for impl in stacks:
      results[impl] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True),
                              static_argnums=2)(params, x, impl)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               results['cudnn'], results['scan'])


def test_a_run_logs_each_layers_newton_iterations_and_trains_as_the_scan_loop(tmp_path):
  from experiments.configs import digits
  from helpers import metric_records
  results = {}
  for impl, cap in (('scan', 0), ('parallel', 1)):
    config = digits.get_config('debug')
    config.model.impl, config.model.parallel_iterations = impl, cap
    results[impl] = seqrnn.train_and_evaluate(config, tmp_path / impl)
  train = [r for r in metric_records(tmp_path / 'parallel') if r['split'] == 'train']
  # One iteration cannot solve 8 steps: each step's layer was finished sequentially (cap + 1).
  assert [r['newton_iterations/encoder/stack/layer_0'] for r in train] == [2.0, 2.0]
  np.testing.assert_allclose(results['parallel']['test']['loss'], results['scan']['test']['loss'],
                             rtol=1e-4)


def test_an_overflowing_trajectory_is_finished_sequentially_not_returned():
  # h' = tanh(1.5 h + x): near h = 0 the Jacobian is 1.5, so the first linear recurrence's
  # products overflow over 1,000 steps. Those iterates must not pass for converged.
  x = _x(time=1000) * 0.1
  lengths = jnp.full((4,), 1000)
  stack = seqrnn.RNNStack(cell='flax_simple', hidden_size=4, impl='scan', return_carry=False)
  params = stack.init(jax.random.key(1), x, lengths)
  params = jax.tree_util.tree_map_with_path(
      lambda path, w: 1.5 * jnp.eye(4) if "'h'" in jax.tree_util.keystr(path) else w, params)
  sequential = stack.apply(params, x, lengths)
  parallel = seqrnn.RNNStack(cell='flax_simple', hidden_size=4, impl='parallel',
                             return_carry=False, parallel_jacobian='diagonal',
                             parallel_iterations=50)
  outputs, state = parallel.apply(params, x, lengths, mutable=['intermediates'])
  assert int(jax.tree.leaves(state)[0]) == 51  # past the cap: finished sequentially
  np.testing.assert_allclose(outputs, sequential, rtol=1e-5, atol=1e-6)
