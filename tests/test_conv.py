"""The convolutional front end (`model.conv`): its convolutions (dilated or not), ReLUs and
pooled windows are the documented ones over each sequence's real steps, a classifier reads
the windows through its stack, padding changes nothing, and what it cannot do is refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_batch, tiny_model_config
from reference import stack_sequence

from seqrnn import config as config_lib
from seqrnn.conv import ConvFrontEnd
from seqrnn.models import build_model

BATCH = random_batch(5, batch=4, time=8, features=3, lengths=[8, 5, 1, 4])


def numpy_front_end(params, x_tf, pool, growth=1):
  """One sequence's real steps x [length, features] -> [ceil(length / pool), channels]:
  layer i, reading steps d = growth**i apart, h_t = relu(b + sum_k x_{t + d k - S // 2} W_k)
  with S = d (K - 1) its span, x zero outside the sequence ('SAME', as lax pads), then the
  max of each window of `pool` steps."""
  x = x_tf.astype(np.float64)
  for i in range(len(params)):
    w, b = (np.asarray(params[f'conv_{i}'][n], np.float64) for n in ('kernel', 'bias'))
    d = growth ** i
    span = d * (len(w) - 1)
    padded = np.concatenate([np.zeros((span // 2, x.shape[1])), x,
                             np.zeros((span - span // 2, x.shape[1]))])
    x = np.maximum(0, b + sum(padded[d * j:d * j + len(x)] @ w[j] for j in range(len(w))))
  return np.stack([x[s:s + pool].max(0) for s in range(0, len(x), pool)])


@pytest.mark.parametrize('kernel_size, pool, growth', [(3, 3, 1), (4, 2, 1), (5, 1, 1),
                                                       (3, 2, 2), (4, 1, 3)])
def test_the_front_end_is_the_documented_convolutions_and_windows_of_real_steps(kernel_size,
                                                                               pool, growth):
  net = ConvFrontEnd(channels=6, num_layers=2, kernel_size=kernel_size, pool=pool,
                     dilation_growth=growth)
  params = jax.jit(net.init)(jax.random.key(0), BATCH['inputs'], BATCH['lengths'])['params']
  outputs, lengths = jax.jit(net.apply)({'params': params}, BATCH['inputs'], BATCH['lengths'])
  assert outputs.shape == (4, -(-8 // pool), 6)
  np.testing.assert_array_equal(lengths, -(-BATCH['lengths'] // pool))
  for b, length in enumerate(BATCH['lengths']):
    expected = numpy_front_end(params, BATCH['inputs'][b, :length], pool, growth)
    np.testing.assert_allclose(outputs[b, :len(expected)], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs[b, len(expected):], 0)  # windows past the end


def _classifier(**conv):
  model = tiny_model_config()
  model.conv.update(channels=6, num_layers=2, kernel_size=3, **conv)
  return build_model('classification', model, num_classes=3)


def test_a_classifier_reads_the_windows_through_its_stack_and_its_head_reads_the_last():
  net = _classifier(pool=3)
  params = jax.jit(net.init)(jax.random.key(1), BATCH['inputs'], BATCH['lengths'])['params']
  logits = jax.jit(net.apply)({'params': params}, BATCH['inputs'], BATCH['lengths'])
  layers = [params['encoder']['stack'][f'layer_{i}'] for i in range(2)]
  head = [np.asarray(params['head'][n], np.float64) for n in ('kernel', 'bias')]
  for b, length in enumerate(BATCH['lengths']):
    windows = numpy_front_end(params['encoder']['conv'], BATCH['inputs'][b, :length], 3)
    last = stack_sequence('gru', layers, windows)[-1]
    np.testing.assert_allclose(logits[b], last @ head[0] + head[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('growth', [1, 2])
def test_padding_changes_no_output_or_gradient_through_the_front_end(growth):
  net = _classifier(pool=2, dilation_growth=growth)
  params = jax.jit(net.init)(jax.random.key(2), BATCH['inputs'], BATCH['lengths'])['params']
  b, length = 1, int(BATCH['lengths'][1])  # 5 real steps of 8: a partial last window

  def loss(params, inputs, lengths):
    return net.apply({'params': params}, inputs, lengths).sum()

  padded = BATCH['inputs'][b:b + 1].copy()
  padded[:, length:] = 1e3  # whatever padding holds
  alone = padded[:, :length]
  for fn in (jax.jit(loss), jax.jit(jax.grad(loss))):
    jax.tree.map(lambda p, a: np.testing.assert_allclose(p, a, rtol=1e-5, atol=1e-6),
                 fn(params, padded, BATCH['lengths'][b:b + 1]),
                 fn(params, alone, BATCH['lengths'][b:b + 1]))


def test_what_the_front_end_cannot_do_is_refused_naming_it():
  for field in ('pool', 'dilation_growth'):
    with pytest.raises(ValueError, match=f'ConvFrontEnd: {field}=0 must be at least 1'):
      ConvFrontEnd(channels=4, **{field: 0}).init(jax.random.key(0), BATCH['inputs'],
                                                  BATCH['lengths'])
  config = config_lib.default_config()
  config.task, config.model.conv.channels, config.model.conv.pool = 'labelling', 8, 2
  with pytest.raises(ValueError, match=r'model.conv.pool=2 shortens each sequence; '
                                       r"task='labelling' needs an output a step"):
    config_lib.validate_config(config)
  config.model.conv.pool, config.data.pack = 1, True
  with pytest.raises(ValueError, match='would read across the sequences of a packed row'):
    config_lib.validate_config(config)
  model = tiny_model_config()
  model.conv.update(channels=6, pool=2)
  labeller = build_model('labelling', model, num_classes=3)
  with pytest.raises(ValueError, match='Labeller: a front end with pool=2 shortens'):
    labeller.init(jax.random.key(0), BATCH['inputs'], BATCH['lengths'])
  with pytest.raises(ValueError, match='model.conv.channels=6: a convolutional front end reads '
                                       'float series; this data set has tokens'):
    build_model('classification', model, num_classes=3, vocab_size=10)
  model.conv.pool = 1
  segments = jnp.ones(BATCH['inputs'].shape[:2], jnp.int32)
  with pytest.raises(ValueError, match=r'packed rows \(segments\) are not supported'):
    build_model('labelling', model, num_classes=3).init(
        jax.random.key(0), BATCH['inputs'], BATCH['lengths'], segments=segments)

