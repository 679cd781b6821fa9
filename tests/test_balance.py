"""Class-balanced epochs (config.data.balance_classes): each training epoch draws every
class as often as the largest class has sequences, the smaller classes' sequences
repeated in fresh random orders; without it an epoch is each sequence once."""

import collections

import numpy as np
import pytest

from seqrnn.config import validate_config
from seqrnn.data import batching

# 2 sequences of class 0, 3 of class 1, 7 of class 2: an epoch of 3 x 7 = 21 draws.
LABELS = np.array([2, 0, 2, 1, 2, 2, 1, 2, 0, 2, 1, 2], np.int32)


def _split():
  lengths = np.array([3, 5, 4, 2, 6, 3, 5, 4, 2, 6, 3, 5], np.int32)
  inputs = np.zeros((len(LABELS), 6, 1), np.float32)
  inputs[:, 0, 0] = np.arange(len(LABELS))  # each row names its sequence
  return {'inputs': inputs, 'labels': LABELS, 'lengths': lengths}


def _drawn(split, steps, **kw):
  """{sequence index: times drawn} over training steps `steps`."""
  seen = collections.Counter()
  for step in steps:
    seen.update(batching.train_batch(split, step, batch_size=3, buckets=(6,), seed=4,
                                     **kw)['inputs'][:, 0, 0].astype(int).tolist())
  return seen


def test_a_balanced_epoch_draws_each_class_as_often_as_the_largest():
  split = _split()
  assert batching.steps_per_epoch(split, 3, balance=True) == 21 // 3
  for epoch in range(3):
    seen = _drawn(split, range(7 * epoch, 7 * epoch + 7), balance=True)
    by_class = collections.Counter()
    for i, n in seen.items():
      by_class[int(LABELS[i])] += n
    assert by_class == {0: 7, 1: 7, 2: 7}
    # The largest class once each; a smaller class's sequences evenly, give or take one.
    assert all(seen[i] == 1 for i in np.flatnonzero(LABELS == 2))
    assert sorted(seen[i] for i in np.flatnonzero(LABELS == 0)) == [3, 4]
    assert sorted(seen[i] for i in np.flatnonzero(LABELS == 1)) == [2, 2, 3]


def test_without_balance_an_epoch_is_each_sequence_once():
  split = _split()
  assert batching.steps_per_epoch(split, 3) == 12 // 3
  assert _drawn(split, range(4)) == {i: 1 for i in range(12)}


def test_balanced_batches_are_a_function_of_the_step():
  split = _split()
  first = batching.train_batch(split, 9, batch_size=3, buckets=(6,), seed=4, balance=True)
  again = batching.train_batch(split, 9, batch_size=3, buckets=(6,), seed=4, balance=True)
  np.testing.assert_array_equal(first['inputs'], again['inputs'])
  np.testing.assert_array_equal(first['labels'], LABELS[first['inputs'][:, 0, 0].astype(int)])


def test_balance_is_refused_where_there_is_no_label_per_sequence():
  from experiments.configs import turkish_pos
  config = turkish_pos.get_config('debug')
  config.data.balance_classes = True
  with pytest.raises(ValueError, match="balance_classes=True .* needs task='classification'"):
    validate_config(config)


def test_a_balanced_run_counts_its_epochs_in_balanced_draws(tmp_path):
  import json
  from experiments.configs import japanese_vowels
  from seqrnn import train_and_evaluate
  rng = np.random.default_rng(0)
  (tmp_path / 'Few').mkdir()
  for split, labels in (('TRAIN', [1] * 3 + [2] * 12), ('TEST', [1, 2] * 3)):
    lines = [f'{y}\t' + '\t'.join(f'{v:.3f}' for v in rng.normal(y, 1.0, 8)) for y in labels]
    (tmp_path / 'Few' / f'Few_{split}.tsv').write_text('\n'.join(lines) + '\n')
  config = japanese_vowels.get_config('debug')
  config.data.path, config.data.uea.series = str(tmp_path), 'Few'
  config.data.uea.eval_fraction, config.data.batch_size = 0.0, 4
  config.data.balance_classes, config.train.num_epochs = True, 2.0
  results = train_and_evaluate(config, tmp_path / 'run')
  assert results['steps_per_epoch'] == 2 * 12 // 4
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert saved['train.num_steps'] == 2 * 6
