"""Classification heads: pooling over real steps, and each direction's last output."""

import jax
import numpy as np
import pytest
from helpers import random_batch, tiny_model_config
from reference import bidirectional_stack_sequence, stack_sequence

from seqrnn.models import AttentionPooling, build_model, pool

BATCH = random_batch(3, batch=4, time=6, lengths=[6, 2, 3, 1])


def _logits_and_params(**model):
  net = build_model('classification', tiny_model_config(**model), num_classes=3)
  params = net.init(jax.random.key(0), BATCH['inputs'], BATCH['lengths'])['params']
  return net.apply({'params': params}, BATCH['inputs'], BATCH['lengths']), params


def _head(params, pooled):
  return pooled @ np.asarray(params['head']['kernel']) + np.asarray(params['head']['bias'])


@pytest.mark.parametrize('pooling, numpy_pool', [
    ('last', lambda out: out[-1]), ('mean', lambda out: out.mean(0)), ('max', lambda out: out.max(0))])
def test_classifier_pools_the_real_outputs(pooling, numpy_pool):
  logits, params = _logits_and_params(pooling=pooling)
  layers = [params['encoder']['stack'][f'layer_{i}'] for i in range(2)]
  for b, length in enumerate(BATCH['lengths']):
    out = stack_sequence('gru', layers, BATCH['inputs'][b, :length].astype(np.float64))
    np.testing.assert_allclose(logits[b], _head(params, numpy_pool(out)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('merge', ['concat', 'sum'])
def test_a_bidirectional_classifier_reads_forward_at_the_last_step_and_backward_at_step_0(merge):
  logits, params = _logits_and_params(cell='lstm', bidirectional=True, merge=merge)
  stack = params['encoder']['stack']
  layers = [(stack[f'layer_{i}'], stack[f'layer_{i}_backward']) for i in range(2)]
  for b, length in enumerate(BATCH['lengths']):
    x = BATCH['inputs'][b, :length].astype(np.float64)
    below = bidirectional_stack_sequence('lstm', layers[:1], x, merge)
    forward = stack_sequence('lstm', [layers[1][0]], below)[-1]
    backward = stack_sequence('lstm', [layers[1][1]], below[::-1])[-1]  # ends at step 0
    pooled = np.concatenate([forward, backward]) if merge == 'concat' else forward + backward
    np.testing.assert_allclose(logits[b], _head(params, pooled), rtol=1e-5, atol=1e-5)


def test_attention_pooling_weighs_real_steps_by_a_softmax_of_their_score_against_the_query():
  # Hand-computed: o = [1, 0], [0, 1] then a padded step; q = [sqrt(2) ln 2, 0] scores them
  # ln 2 and 0 (o . q / sqrt(2)), so the weights are 2/3 and 1/3.
  outputs = np.array([[[1.0, 0.0], [0.0, 1.0], [np.nan, 7.0]]], np.float32)
  query = np.array([np.sqrt(2) * np.log(2), 0.0], np.float32)
  pooled = AttentionPooling().apply({'params': {'query': query}}, outputs, np.array([2]))
  np.testing.assert_allclose(pooled, [[2 / 3, 1 / 3]], rtol=1e-6)
  grad = jax.grad(lambda q: AttentionPooling().apply({'params': {'query': q}}, outputs,
                                                     np.array([2])).sum())(query)
  assert np.all(np.isfinite(grad))  # the NaN in padding reaches nothing
  with pytest.raises(ValueError, match='use seqrnn.AttentionPooling'):
    pool(outputs, np.array([2]), 'attention')


def test_an_attention_classifier_starts_as_mean_pooling_and_its_query_learns():
  logits, params = _logits_and_params(pooling='attention')
  assert not np.any(params['attention']['query'])  # q = 0: every real step weighs the same
  mean_logits, mean_params = _logits_and_params(pooling='mean')
  np.testing.assert_allclose(logits, mean_logits, rtol=1e-6, atol=1e-6)
  net = build_model('classification', tiny_model_config(pooling='attention'), num_classes=3)
  grads = jax.grad(lambda p: net.apply({'params': p}, BATCH['inputs'], BATCH['lengths'])[:, 0]
                   .sum())(params)
  assert np.any(grads['attention']['query'] != 0)
