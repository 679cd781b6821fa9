"""Dropout on each layer's output: on in training, off in evaluation, keyed by step."""

import jax
import numpy as np
from helpers import random_batch, tiny_model_config

from seqrnn.models import build_model
from seqrnn.stack import dropout


def _model_and_params(rate):
  batch = random_batch(0, batch=3, time=5, task='labelling', lengths=[5, 5, 5])
  model = build_model('labelling', tiny_model_config('gru', dropout_rate=rate), num_classes=3)
  return model, model.init(jax.random.key(0), batch['inputs'], batch['lengths']), batch


def _apply(model, params, batch, train, key=None):
  rngs = {'dropout': key} if key is not None else {}
  return np.asarray(model.apply(params, batch['inputs'], batch['lengths'], train=train, rngs=rngs))


def test_dropout_is_active_in_training_and_absent_in_evaluation():
  model, params, batch = _model_and_params(0.5)
  evaluated = _apply(model, params, batch, train=False)
  trained = _apply(model, params, batch, train=True, key=jax.random.key(1))
  assert not np.allclose(evaluated, trained)
  model0, params0, _ = _model_and_params(0.0)
  np.testing.assert_array_equal(evaluated, _apply(model0, params0, batch, train=False))


def test_dropout_masks_differ_across_keys_and_repeat_for_the_same_key():
  model, params, batch = _model_and_params(0.5)
  base = jax.random.key(3)
  step1, step2 = (jax.random.fold_in(base, s) for s in (1, 2))
  a = _apply(model, params, batch, True, step1)
  np.testing.assert_array_equal(a, _apply(model, params, batch, True, step1))
  assert not np.allclose(a, _apply(model, params, batch, True, step2))


def test_dropout_zeroes_the_rate_and_rescales_the_rest():
  x = np.ones((50, 40, 30), np.float32)
  y = np.asarray(dropout(jax.random.key(0), x, 0.3))
  kept = y != 0
  np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
  assert abs(1 - kept.mean() - 0.3) < 0.01
  # Each timestep draws its own mask.
  assert not np.array_equal(kept[0], kept[1])
