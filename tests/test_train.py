"""The pure train and eval steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import random_batch, tiny_model_config

from seqrnn.config import default_config
from seqrnn.models import build_model
from seqrnn.tasks import get_task, summarize
from seqrnn.train import TrainState, create_train_state, eval_step, make_optimizer, train_step


_train_step = jax.jit(train_step)  # one compile for the tests that share shapes


def _state(task='classification', **model_overrides):
  batch = random_batch(0, task=task)
  model = build_model(task, tiny_model_config(**model_overrides), num_classes=3)
  tx = make_optimizer(default_config().optim, 100)
  return create_train_state(jax.random.key(0), model, batch, tx, get_task(task)), batch


def test_a_train_step_changes_every_parameter_and_lowers_the_loss():
  state, batch = _state()
  step = jax.jit(train_step)
  before = summarize(eval_step(state, batch))['loss']
  new, metrics = step(state, batch, jax.random.key(1))
  assert int(new.step) == 1
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
  assert all(jax.tree.leaves(changed)), changed
  for _ in range(20):
    new, metrics = step(new, batch, jax.random.key(1))
  assert summarize(eval_step(new, batch))['loss'] < before


def test_train_step_compiles_once_per_input_shape():
  state, _ = _state()
  traces = []

  def traced_train_step(*args):
    traces.append(args[1]['inputs'].shape)  # runs only when jit traces
    return train_step(*args)

  step = jax.jit(traced_train_step)
  for i in range(3):
    state, _ = step(state, random_batch(i), jax.random.key(0))
  assert len(traces) == 1
  state, _ = step(state, random_batch(9, time=11), jax.random.key(0))
  assert traces == [(4, 7, 5), (4, 11, 5)]


def test_a_nonfinite_gradient_leaves_the_state_unchanged_and_is_reported():
  state, batch = _state()
  bad = dict(batch, inputs=batch['inputs'].copy())
  bad['inputs'][0, 0, 0] = np.nan  # bypasses validation, as a bug upstream could
  new, metrics = jax.jit(train_step)(state, bad, jax.random.key(0))
  assert float(metrics['nonfinite'][0]) == 1.0
  jax.tree.map(np.testing.assert_array_equal, new.params, state.params)
  assert int(new.step) == 1
  _, metrics = jax.jit(train_step)(state, batch, jax.random.key(0))
  assert float(metrics['nonfinite'][0]) == 0.0


def test_eval_step_weights_out_padding_examples():
  state, batch = _state(task='labelling')
  full = summarize(eval_step(state, batch))
  doubled = {k: np.concatenate([v, v[:2]]) for k, v in batch.items()}
  doubled['weights'] = np.array([1, 1, 1, 1, 0, 0], np.float32)
  np.testing.assert_allclose(summarize(eval_step(state, doubled))['loss'], full['loss'], rtol=1e-6)


def test_bfloat16_compute_keeps_the_loss_and_gradients_close_to_float32():
  batch = random_batch(0, batch=8, time=12, task='labelling')
  losses, grads = {}, {}
  for dtype in ('float32', 'bfloat16'):
    model = build_model('labelling', tiny_model_config('lstm', hidden_size=32, dtype=dtype),
                        num_classes=3)
    params = model.init(jax.random.key(0), batch['inputs'], batch['lengths'])['params']
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))

    def loss(p):
      s, n = get_task('labelling')(model.apply({'params': p}, batch['inputs'], batch['lengths']),
                                   batch)['loss']
      return s / n
    losses[dtype], grads[dtype] = jax.value_and_grad(loss)(params)
  np.testing.assert_allclose(losses['bfloat16'], losses['float32'], rtol=2e-2)
  cosine = lambda a, b: float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
  flat = {k: jnp.concatenate([g.ravel() for g in jax.tree.leaves(v)]) for k, v in grads.items()}
  assert cosine(flat['bfloat16'], flat['float32']) > 0.99


def test_a_nonfinite_update_from_finite_gradients_is_not_applied():
  state, batch = _state()
  state = state.replace(tx=optax.sgd(jnp.inf), opt_state=optax.sgd(jnp.inf).init(state.params))
  new, metrics = _train_step(state, batch, jax.random.key(0))
  assert np.isfinite(float(metrics['grad_norm'][0]))
  assert float(metrics['nonfinite'][0]) == 1.0
  jax.tree.map(np.testing.assert_array_equal, new.params, state.params)


@pytest.mark.parametrize('task, mutate', [
    ('classification', lambda b: b['lengths'].__setitem__(1, 0)),
    ('classification', lambda b: b['lengths'].__setitem__(1, -3)),
    ('classification', lambda b: b['lengths'].__setitem__(1, 8)),
    ('classification', lambda b: b['labels'].__setitem__(2, 3)),
    ('classification', lambda b: b['labels'].__setitem__(2, -1)),
    ('labelling', lambda b: b['labels'].__setitem__((0, 0), 5)),
])
def test_train_step_applies_no_update_for_a_batch_validate_batch_refuses(task, mutate):
  state, batch = _state(task)
  batch = {k: v.copy() for k, v in batch.items()}
  mutate(batch)
  new, metrics = _train_step(state, batch, jax.random.key(0))
  assert float(metrics['invalid_batch'][0]) == 1.0
  jax.tree.map(np.testing.assert_array_equal, new.params, state.params)
  jax.tree.map(np.testing.assert_array_equal, new.opt_state, state.opt_state)


def test_train_step_applies_no_update_for_an_empty_batch():
  state, batch = _state()
  empty = {k: v[:0] for k, v in batch.items()}
  new, metrics = _train_step(state, empty, jax.random.key(0))
  assert float(metrics['invalid_batch'][0]) == 1.0
  jax.tree.map(np.testing.assert_array_equal, new.params, state.params)


def test_labels_out_of_range_at_padded_steps_do_not_invalidate_a_batch():
  state, batch = _state('labelling')
  batch = {k: v.copy() for k, v in batch.items()}
  batch['lengths'][0] = 2
  batch['labels'][0, 2:] = 99
  _, metrics = _train_step(state, batch, jax.random.key(0))
  assert float(metrics['invalid_batch'][0]) == 0.0


def test_training_with_label_smoothing_descends_the_smoothed_cross_entropy():
  """A 'model' whose parameters are its logits [batch, C]: the mean smoothed
  cross-entropy's gradient is (softmax - t) / batch, t = (1 - eps) one-hot + eps / C, so
  one SGD step (momentum's first step is the gradient) moves the logits by -lr times it."""
  batch = random_batch(0, batch=4, num_classes=3)
  logits = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
  optim = default_config().optim
  optim.name, optim.schedule, optim.learning_rate, optim.grad_clip_norm = 'sgd', 'constant', 0.5, 0.0
  apply_fn = lambda variables, *args, **kwargs: (variables['params']['logits'], {})
  for smoothing in (0.0, 0.3):
    state = TrainState.create(apply_fn=apply_fn, params={'logits': jnp.asarray(logits)},
                              tx=make_optimizer(optim, 10),
                              task=get_task('classification', label_smoothing=smoothing))
    new, _ = train_step(state, batch, jax.random.key(0))
    target = np.full((4, 3), smoothing / 3) + (1 - smoothing) * np.eye(3)[batch['labels']]
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(new.params['logits'], logits - 0.5 * (softmax - target) / 4,
                               rtol=1e-5, atol=1e-6)
