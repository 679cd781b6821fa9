"""Cells and stacks match a numpy implementation of the documented equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_batch, tiny_model_config
from reference import stack_sequence

from seqrnn.cells import CELLS, GRUCell
from seqrnn.layer import Recurrent
from seqrnn.models import build_model


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
def test_stack_outputs_match_numpy_equations_for_every_sequence_length(cell):
  batch = random_batch(0, batch=5, time=9, lengths=[9, 1, 4, 7, 9])
  model = build_model('labelling', tiny_model_config(cell, num_layers=3), num_classes=3)
  params = model.init(jax.random.key(1), batch['inputs'], batch['lengths'])['params']
  # Non-zero biases, so that a misplaced bias (e.g. b_hn outside r * (...)) shows.
  params = jax.tree.map(lambda p: p + 0.1 * np.random.default_rng(2).normal(size=p.shape), params)
  stack = params['encoder']['stack']
  layers = [stack[f'layer_{i}'] for i in range(3)]

  outputs = model.apply({'params': params}, batch['inputs'], batch['lengths'],
                        method=lambda m, x, l: m.encoder(x, l, train=False))

  for b, length in enumerate(batch['lengths']):
    expected = stack_sequence(cell, layers, batch['inputs'][b, :length].astype(np.float64))
    np.testing.assert_allclose(outputs[b, :length], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outputs[b, length:], 0.0)


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
def test_classifier_reads_the_last_real_output(cell):
  batch = random_batch(3, batch=4, time=6, lengths=[6, 2, 3, 1])
  model = build_model('classification', tiny_model_config(cell), num_classes=3)
  params = model.init(jax.random.key(0), batch['inputs'], batch['lengths'])['params']
  logits = model.apply({'params': params}, batch['inputs'], batch['lengths'])
  layers = [params['encoder']['stack'][f'layer_{i}'] for i in range(2)]
  head = params['head']
  for b, length in enumerate(batch['lengths']):
    last = stack_sequence(cell, layers, batch['inputs'][b, :length].astype(np.float64))[-1]
    expected = last @ np.asarray(head['kernel']) + np.asarray(head['bias'])
    np.testing.assert_allclose(logits[b], expected, rtol=1e-5, atol=1e-5)


def test_token_inputs_go_through_the_embedding():
  model = build_model('labelling', tiny_model_config('gru', num_layers=1), num_classes=3,
                      vocab_size=11)
  tokens = np.array([[3, 4, 10, 0], [1, 2, 0, 0]], np.int32)
  lengths = np.array([3, 2], np.int32)
  params = model.init(jax.random.key(0), tokens, lengths)['params']
  assert params['encoder']['words']['embed']['embedding'].shape == (11, 6)
  assert model.apply({'params': params}, tokens, lengths).shape == (2, 4, 3)
  layer = params['encoder']['stack']['layer_0']
  table = np.asarray(params['encoder']['words']['embed']['embedding'], np.float64)
  out = model.apply({'params': params}, tokens, lengths,
                    method=lambda m, x, l: m.encoder(x, l, train=False))
  np.testing.assert_allclose(out[0, :3], stack_sequence('gru', [layer], table[tokens[0, :3]]),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cell_name', ['gru', 'lstm'])
@pytest.mark.parametrize('features, packed', [(3, False), (9, False), (3, True)])
def test_hand_written_backward_pass_equals_autodiff_of_the_step(cell_name, features, packed):
  # features 3: projected inside the loop, 9: before it; packed: rows of several
  # sequences, whose starts read the initial carry (its gradient gathers theirs).
  from seqrnn import fused, masks
  cell = CELLS[cell_name](features=6)
  rng = np.random.default_rng(0)
  num_steps, batch, gates = 5, 4, cell.num_gates * 6
  params = [jnp.asarray(rng.normal(size=shape) * 0.5, jnp.float32)
            for shape in [(features, gates), (gates,), (6, gates), (gates,)]]  # w_i, b_i, w_h, b_h
  x = jnp.asarray(rng.normal(size=(num_steps, batch, features)), jnp.float32)
  lengths = jnp.array([5, 1, 3, 4])
  mask = masks.time_mask(lengths, num_steps)
  resets = None
  if packed:  # rows of sequences 2+3, 1, 1+1+1, 4 steps
    segments = jnp.array([[1, 1, 2, 2, 2], [1, 0, 0, 0, 0], [1, 2, 3, 0, 0], [1, 1, 1, 1, 0]])
    resets = masks.segment_starts(segments, mask)
  carry0 = jax.tree.map(lambda z: z + 0.3, cell.initialize_carry(None, (batch, 6)))
  weights_out = jnp.asarray(rng.normal(size=(num_steps, batch, 6)), jnp.float32)

  def loss(run):
    def f(params, x, carry0):
      carry, outputs = run(params, x, carry0)
      return (outputs * weights_out).sum() + sum(jnp.sum(c ** 2) for c in jax.tree.leaves(carry))
    return jax.grad(f, argnums=(0, 1, 2))(params, x, carry0)

  autodiff = loss(lambda p, x, c: fused._forward(
      type(cell), p, fused._loop_inputs(type(cell), *p[:3], x), mask, resets, c, c, 1)[:2])
  hand_written = loss(lambda p, x, c: fused.recurrence(type(cell), p[:2], p[2:], x, mask, c,
                                                      resets=resets))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               autodiff, hand_written)


class _AutodiffGRU(GRUCell):
  """A GRU as a new cell type would start: a step and no hand-written backward."""
  step_backward = grad_residuals = recurrent_grads = None


class _NoGradResidualsGRU(GRUCell):
  """A hand-written backward pass with one member forgotten."""
  grad_residuals = None


def test_a_cell_missing_one_member_of_the_fused_loop_is_refused_naming_it():
  from seqrnn.config import default_config, validate_config
  config = default_config()
  config.model.cell = 'test_cells._NoGradResidualsGRU'
  with pytest.raises(ValueError, match=r"config.model.cell='test_cells._NoGradResidualsGRU': "
                                       r"cell _NoGradResidualsGRU offers part of the fused "
                                       r"loop's protocol \(seqrnn.FusedCell\) but lacks "
                                       r"\['grad_residuals'\]"):
    validate_config(config)
  x, lengths = jnp.ones((4, 2, 3)), jnp.array([4, 2])
  with pytest.raises(ValueError, match=r"lacks \['grad_residuals'\]"):  # the layer, too
    Recurrent(_NoGradResidualsGRU(5), time_major=True, return_carry=True).init(jax.random.key(0), x, lengths)
  config.model.cell = 'test_cells._AutodiffGRU'  # no backward at all: the scan loop
  validate_config(config)


def test_a_cell_without_a_hand_written_backward_trains_through_autodiff():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3, 4)), jnp.float32)
  lengths = jnp.array([6, 2, 4])
  grads = []
  for cell in (GRUCell(5), _AutodiffGRU(5)):
    layer = Recurrent(cell, time_major=True, return_carry=True)
    params = layer.init(jax.random.key(0), x, lengths)
    grads.append(jax.grad(lambda p: layer.apply(p, x, lengths)[1].sum() ** 2)(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *grads)


@pytest.mark.parametrize('cell, sequence_fn', [('ln_lstm', 'ln_lstm_sequence'),
                                               ('ln_gru', 'ln_gru_sequence')])
def test_layer_norm_cells_match_numpy_equations_step_by_step(cell, sequence_fn):
  import reference
  batch = random_batch(0, batch=5, time=9, lengths=[9, 1, 4, 7, 9])
  model = build_model('labelling', tiny_model_config(cell, num_layers=2), num_classes=3)
  params = model.init(jax.random.key(1), batch['inputs'], batch['lengths'])['params']
  # Non-unit scales and non-zero biases, so that a misplaced one shows.
  params = jax.tree.map(lambda p: p + 0.2 * np.random.default_rng(2).normal(size=p.shape), params)
  layers = [params['encoder']['stack'][f'layer_{i}']['cell'] for i in range(2)]
  outputs = model.apply({'params': params}, batch['inputs'], batch['lengths'],
                        method=lambda m, x, l: m.encoder(x, l, train=False))
  for b, length in enumerate(batch['lengths']):
    x = batch['inputs'][b, :length].astype(np.float64)
    for layer in layers:
      x = getattr(reference, sequence_fn)(x, layer)
    np.testing.assert_allclose(outputs[b, :length], x, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(outputs[b, length:], 0.0)


def test_the_readmes_elman_cell_runs_its_equations_in_the_fused_loop_with_autodiffs_gradients():
  from experiments.custom_cell import ElmanCell
  from seqrnn.cells import has_fused_loop
  assert has_fused_loop(ElmanCell)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(7, 3, 4)), jnp.float32)  # [time, batch, in]
  lengths = jnp.array([7, 2, 5])
  fused, scan = Recurrent(ElmanCell(5), time_major=True, return_carry=True, impl='fused'), Recurrent(ElmanCell(5), time_major=True, return_carry=True, impl='scan')
  params = fused.init(jax.random.key(0), x, lengths)
  params = jax.tree.map(lambda p: p + 0.3 * rng.normal(size=p.shape), params)  # non-zero biases
  _, outputs = fused.apply(params, x, lengths)
  cell = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params']['cell'])
  w_i, b_i = cell['input_projection']['kernel'], cell['input_projection']['bias']
  w_h, b_h = cell['recurrent_kernel'], cell['recurrent_bias']
  for b, length in enumerate(lengths):
    h = np.zeros(5)
    for t in range(int(length)):  # Elman's equation in numpy
      h = np.tanh(np.asarray(x[t, b], np.float64) @ w_i + b_i + h @ w_h + b_h)
      np.testing.assert_allclose(outputs[t, b], h, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outputs[int(length):, b], 0.0)
  loss = lambda layer: jax.grad(lambda q, x: (layer.apply(q, x, lengths)[1] ** 3).sum(),
                                argnums=(0, 1))(params, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               loss(fused), loss(scan))
