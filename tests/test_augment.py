"""Random crops (`model.crop`, window slicing): each training sequence is read as a window of
its own real steps, of the documented sizes, from starts spread over the sequence; the
classifier trains on the window and evaluates on the whole; what cannot be cropped is refused."""

import jax
import numpy as np
import pytest
from helpers import random_batch, tiny_model_config

from seqrnn import augment
from seqrnn import config as config_lib
from seqrnn.models import build_model

LENGTHS = [20, 13, 5, 1]
BATCH = random_batch(3, batch=4, time=20, features=2, lengths=LENGTHS)
CHARS = np.arange(4 * 20 * 3, dtype=np.int32).reshape(4, 20, 3) + 1  # every entry its own id


def window_of(row, x, cropped, length):
  """The start s of the window x[row, s:s + length] that `cropped` holds, or None."""
  for s in range(LENGTHS[row] - length + 1):
    if np.array_equal(cropped[:length], x[row, s:s + length]):
      return s
  return None


def test_each_crop_is_a_window_of_real_steps_of_at_least_the_kept_fraction_then_zeros():
  # 2,000 draws: the rarest (start, size) pair below has probability 1/100 a draw.
  crops = jax.jit(jax.vmap(lambda key: augment.random_crop(key, 0.5, BATCH['lengths'],
                                                           BATCH['inputs'], CHARS)))
  starts, sizes = {b: set() for b in range(4)}, {b: set() for b in range(4)}
  for lengths, inputs, chars in zip(*map(np.asarray, crops(jax.random.split(jax.random.key(0),
                                                                            2000)))):
    for b, full in enumerate(LENGTHS):
      n = int(lengths[b])
      assert int(np.ceil(0.5 * full)) <= n <= full
      start = window_of(b, BATCH['inputs'], inputs[b], n)
      assert start is not None, f'row {b}: not a window of its real steps'
      np.testing.assert_array_equal(chars[b, :n], CHARS[b, start:start + n])  # the same window
      np.testing.assert_array_equal(inputs[b, n:], 0)
      np.testing.assert_array_equal(chars[b, n:], 0)
      starts[b].add(start)
      sizes[b].add(n)
  # Sizes from half the sequence to all of it (exactly half has probability 0), and every
  # start that keeps a window inside:
  assert sizes[0] == set(range(11, 21)) and starts[0] == set(range(10))
  assert sizes[2] == {3, 4, 5} and starts[2] == {0, 1, 2}
  assert sizes[3] == {1} and starts[3] == {0}


def test_nothing_is_cut_at_crop_zero_and_padding_is_never_read():
  lengths, inputs = augment.random_crop(jax.random.key(0), 0.0, BATCH['lengths'], BATCH['inputs'])
  np.testing.assert_array_equal(lengths, LENGTHS)
  real = np.arange(20)[None, :, None] < np.array(LENGTHS)[:, None, None]
  np.testing.assert_array_equal(inputs, np.where(real, BATCH['inputs'], 0))
  padded = np.where(real, BATCH['inputs'], 1e3).astype(np.float32)
  for seed in range(5):
    a = augment.random_crop(jax.random.key(seed), 0.4, BATCH['lengths'], BATCH['inputs'])
    b = augment.random_crop(jax.random.key(seed), 0.4, BATCH['lengths'], padded)
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)


def test_the_classifier_trains_on_the_crop_and_evaluates_on_the_whole_sequence(monkeypatch):
  cropped = []
  real_crop = augment.random_crop
  monkeypatch.setattr(augment, 'random_crop',
                      lambda *a: cropped.append(real_crop(*a)) or cropped[-1])
  net = build_model('classification', tiny_model_config(crop=0.5, bidirectional=True),
                    num_classes=3)
  plain = build_model('classification', tiny_model_config(bidirectional=True), num_classes=3)
  params = jax.jit(net.init)(jax.random.key(0), BATCH['inputs'], BATCH['lengths'])['params']

  @jax.jit
  def train_apply(params):  # no dropout: training differs from evaluation by the crop alone
    logits = net.apply({'params': params}, BATCH['inputs'], BATCH['lengths'], train=True,
                       rngs={'dropout': jax.random.key(1)})
    return logits, cropped[-1]

  trained_on, (lengths, inputs) = train_apply(params)
  assert not np.array_equal(lengths, LENGTHS)
  evaluate = jax.jit(lambda net, *args: net.apply({'params': params}, *args), static_argnums=0)
  np.testing.assert_allclose(trained_on, evaluate(plain, inputs, lengths), rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(evaluate(net, BATCH['inputs'], BATCH['lengths']),
                                evaluate(plain, BATCH['inputs'], BATCH['lengths']))
  assert len(cropped) == 1  # evaluation cut nothing


def test_a_crop_outside_zero_to_one_or_for_labels_of_steps_is_refused():
  with pytest.raises(ValueError, match=r'Classifier: crop=1.0 .* must be in \[0, 1\)'):
    build_model('classification', tiny_model_config(crop=1.0), num_classes=3).init(
        jax.random.key(0), BATCH['inputs'], BATCH['lengths'])
  config = config_lib.default_config()
  config.task, config.model.crop = 'labelling', 0.2
  with pytest.raises(ValueError, match=r"model.crop=0.2 cuts each sequence to a window; "
                                       r"task='labelling' has a label for every step"):
    config_lib.validate_config(config)
  config.model.crop = 1.5
  with pytest.raises(ValueError, match=r'model.crop=1.5 must be in \[0, 1\)'):
    config_lib.validate_config(config)
