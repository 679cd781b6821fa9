"""Padding never changes a result: logits, losses, gradients, final carries."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from helpers import random_batch, tiny_model_config
from reference import sigmoid

from seqrnn import cells
from seqrnn.data.batching import pad_to
from seqrnn.layer import Recurrent
from seqrnn.models import build_model
from seqrnn.tasks import get_task


def _loss_and_grads(model, params, batch, task, train=False, key=None):
  return _jit_loss_and_grads(model, params, batch, task, train, key)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _jit_loss_and_grads(model, params, batch, task, train, key):
  def loss(p):
    rngs = {'dropout': key} if train else {}
    logits = model.apply({'params': p}, batch['inputs'], batch['lengths'], train=train, rngs=rngs)
    s, n = get_task(task)(logits, batch)['loss']
    return s / n, logits
  (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
  return value, logits, grads


# Every cell, loop, direction, merge, residual, initial carry and pooling option, each at
# least once, with dropout on.
OPTIONS = [
    ('classification', dict(cell='gru')),
    ('labelling', dict(cell='gru')),
    ('classification', dict(cell='lstm', pooling='mean')),
    ('labelling', dict(cell='lstm', impl='scan')),
    ('classification', dict(cell='flax_lstm', pooling='max')),
    ('labelling', dict(cell='flax_optimized_lstm')),
    ('classification', dict(cell='flax_gru', initial_carry='learned')),
    ('labelling', dict(cell='flax_mgu', residual=True)),
    ('labelling', dict(cell='flax_simple')),
    ('classification', dict(cell='ln_lstm', pooling='mean')),
    ('labelling', dict(cell='ln_gru', bidirectional=True)),
    ('labelling', dict(cell='experiments.custom_cell.MinimalRNNCell')),
    ('classification', dict(cell='gru', bidirectional=True)),
    ('labelling', dict(cell='lstm', bidirectional=True, merge='sum', residual=True)),
    ('classification', dict(cell='lstm', bidirectional=True, merge='sum', pooling='max',
                            impl='scan')),
]


@pytest.mark.parametrize('task, options', OPTIONS, ids=[
    f'{t}-' + '-'.join(f'{v}' for v in o.values()) for t, o in OPTIONS])
def test_padding_does_not_change_logits_loss_or_gradients(task, options):
  batch = random_batch(0, batch=4, time=6, task=task, lengths=[6, 3, 1, 5])
  padded = pad_to(batch, 11)
  # Padding holds garbage, NaN and Inf included, not zeros: it must not matter.
  real = np.arange(11)[None, :] < batch['lengths'][:, None]
  garbage = np.random.default_rng(1).normal(size=padded['inputs'].shape).astype(np.float32)
  garbage[:, ::3, 0], garbage[:, 1::3, 1] = np.nan, np.inf
  padded['inputs'] = np.where(real[..., None], padded['inputs'], garbage)
  model = build_model(task, tiny_model_config(dropout_rate=0.5, **options), num_classes=3)
  params = model.init(jax.random.key(0), batch['inputs'], batch['lengths'])['params']
  # In training (dropout on) the masks too must be padding-independent; evaluation is the
  # same computation without them, checked for the first options.
  for train in (True, False) if options in (OPTIONS[0][1], OPTIONS[1][1]) else (True,):
    key = jax.random.key(7)
    l1, z1, g1 = _loss_and_grads(model, params, batch, task, train, key)
    l2, z2, g2 = _loss_and_grads(model, params, padded, task, train, key)
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    np.testing.assert_allclose(z1, z2[:, :6] if task == 'labelling' else z2, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g2)


def test_labelling_loss_ignores_labels_at_padded_steps():
  batch = random_batch(2, batch=3, time=5, task='labelling', lengths=[5, 2, 3])
  model = build_model('labelling', tiny_model_config(), num_classes=3)
  params = model.init(jax.random.key(0), batch['inputs'], batch['lengths'])['params']
  other = dict(batch, labels=batch['labels'].copy())
  other['labels'][1, 2:] = (other['labels'][1, 2:] + 1) % 3
  other['labels'][2, 3:] = 99  # even out of range
  l1, _, g1 = _loss_and_grads(model, params, batch, 'labelling')
  l2, _, g2 = _loss_and_grads(model, params, other, 'labelling')
  assert l1 == l2
  jax.tree.map(np.testing.assert_array_equal, g1, g2)


def test_lstm_final_carry_is_the_carry_at_the_last_real_step():
  hidden, lengths = 4, np.array([5, 2, 3], np.int32)
  x = np.random.default_rng(0).normal(size=(5, 3, 3)).astype(np.float32)  # [time, batch, in]
  layer = Recurrent(cells.LSTMCell(hidden), time_major=True, return_carry=True)
  params = layer.init(jax.random.key(0), x, lengths)
  (h_final, c_final), outputs = layer.apply(params, x, lengths)
  p = params['params']
  w_i, b_i = (np.asarray(p['cell']['input_projection'][k]) for k in ('kernel', 'bias'))
  w_h, b_h = (np.asarray(p['cell'][k]) for k in ('recurrent_kernel', 'recurrent_bias'))
  for b, length in enumerate(lengths):
    h, c = np.zeros(hidden), np.zeros(hidden)
    for t in range(length):
      i, f, g, o = np.split(x[t, b] @ w_i + b_i + h @ w_h + b_h, 4)
      c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
      h = sigmoid(o) * np.tanh(c)
    np.testing.assert_allclose(h_final[b], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_final[b], c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[length - 1, b], h, rtol=1e-5, atol=1e-6)
    assert np.all(outputs[length:, b] == 0)


def test_gru_final_carry_equals_output_at_length_minus_one():
  lengths = jnp.array([4, 1], jnp.int32)
  x = jnp.ones((4, 2, 3))
  layer = Recurrent(cells.GRUCell(5), time_major=True, return_carry=True)
  params = layer.init(jax.random.key(0), x, lengths)
  h_final, outputs = layer.apply(params, x, lengths)
  np.testing.assert_array_equal(h_final, outputs[lengths - 1, jnp.arange(2)])


_PROPERTY_MODEL = build_model('labelling', tiny_model_config('lstm', num_layers=2), num_classes=4)
_PROPERTY_PARAMS = _PROPERTY_MODEL.init(jax.random.key(0), np.zeros((1, 3, 5), np.float32),
                                        np.array([3], np.int32))['params']


_property_loss_and_grads = jax.jit(
    lambda params, batch: _loss_and_grads(_PROPERTY_MODEL, params, batch, 'labelling'))


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=4, max_size=4),
       extra=st.sampled_from([1, 4]), seed=st.integers(0, 2**16))
def test_property_padding_and_padded_labels_never_change_loss_or_gradients(lengths, extra, seed):
  # Fixed shapes (batch 4, time 6, padded 7 or 10) so that jit compiles three times in all.
  rng = np.random.default_rng(seed)
  batch = random_batch(seed, batch=4, time=6, num_classes=4, task='labelling', lengths=lengths)
  padded = pad_to(batch, 6 + extra)
  real = np.arange(6 + extra)[None, :] < np.asarray(lengths)[:, None]
  padded['inputs'][~real] = rng.normal(size=padded['inputs'][~real].shape)
  padded['labels'][~real] = rng.integers(0, 4, size=int((~real).sum()))
  l1, z1, g1 = _property_loss_and_grads(_PROPERTY_PARAMS, batch)
  l2, z2, g2 = _property_loss_and_grads(_PROPERTY_PARAMS, padded)
  np.testing.assert_allclose(l1, l2, rtol=1e-6)
  np.testing.assert_allclose(z1, z2[:, :6], rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g2)
