"""Classification heads: pooling over real steps, and each direction's last output."""

import jax
import numpy as np
import pytest
from helpers import random_batch, tiny_model_config
from reference import bidirectional_stack_sequence, stack_sequence

from seqrnn.models import build_model

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
