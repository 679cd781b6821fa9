"""Packed rows (data.pack): several sequences end to end in one row, each read as if alone.

The reference is the same sequences one per row, padded; the packed batch is
built here by hand (numpy), not by seqrnn's packer, whose own tests follow.
"""

import functools

import jax
import numpy as np
import pytest
from helpers import tiny_model_config

from seqrnn.batch import validate_batch
from seqrnn.config import default_config, validate_config
from seqrnn.data import batching
from seqrnn.models import build_model
from seqrnn.tasks import get_task
from seqrnn.train import model_args

LENGTHS = [3, 2, 4, 1, 5, 4]
ROWS = [[0, 1, 2], [3, 4], [5]]  # row totals 9, 6, 4


def _sequences(seed, features=5, num_classes=3):
  rng = np.random.default_rng(seed)
  return [(rng.normal(size=(n, features)).astype(np.float32),
           rng.integers(0, num_classes, n).astype(np.int32)) for n in LENGTHS]


def _one_per_row(seqs, time=5):
  inputs = np.zeros((len(seqs), time, seqs[0][0].shape[1]), np.float32)
  labels = np.zeros((len(seqs), time), np.int32)
  for i, (x, y) in enumerate(seqs):
    inputs[i, :len(x)], labels[i, :len(y)] = x, y
  return {'inputs': inputs, 'labels': labels, 'lengths': np.array(LENGTHS, np.int32)}


def _packed(seqs, time=10):
  inputs = np.full((len(ROWS), time, seqs[0][0].shape[1]), np.nan, np.float32)
  labels = np.zeros((len(ROWS), time), np.int32)
  segments = np.zeros((len(ROWS), time), np.int32)
  for r, row in enumerate(ROWS):
    x = np.concatenate([seqs[i][0] for i in row])
    inputs[r, :len(x)] = x
    labels[r, :len(x)] = np.concatenate([seqs[i][1] for i in row])
    segments[r, :len(x)] = np.repeat(np.arange(1, len(row) + 1), [LENGTHS[i] for i in row])
  return {'inputs': inputs, 'labels': labels, 'segments': segments,
          'lengths': (segments > 0).sum(1).astype(np.int32)}


@functools.partial(jax.jit, static_argnums=0)
def _loss_grads_logits(model, params, batch):
  args, kwargs = model_args(batch)

  def loss(p):
    logits = model.apply({'params': p}, *args, **kwargs, train=False)
    metrics = get_task('labelling')(logits, batch)
    return metrics['loss'][0] / metrics['loss'][1], (logits, metrics)
  (_, (logits, metrics)), grads = jax.value_and_grad(loss, has_aux=True)(params)
  return logits, metrics, grads


OPTIONS = [
    dict(cell='lstm', bidirectional=True),
    dict(cell='gru', bidirectional=True, initial_carry='learned', remat_chunk='3'),
    dict(cell='lstm', impl='scan', initial_carry='learned'),
    dict(cell='ln_gru', bidirectional=True, residual=True),
    dict(cell='flax_lstm', bidirectional=True),
    dict(cell='lstm', zoneout_hidden=0.2, zoneout_cell=0.3),
]


@pytest.mark.parametrize('options', OPTIONS, ids=['-'.join(map(str, o.values())) for o in OPTIONS])
def test_a_packed_sequence_gets_the_logits_loss_and_gradients_it_gets_alone(options):
  seqs = _sequences(0)
  alone, packed = _one_per_row(seqs), _packed(seqs)
  validate_batch(packed, task='labelling', num_classes=3, num_features=5)
  model = build_model('labelling', tiny_model_config(**options), num_classes=3)
  params = model.init(jax.random.key(0), alone['inputs'], alone['lengths'])['params']
  if options.get('initial_carry') == 'learned':  # not zero, so a reset to it is seen
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.5 if 'initial_carry' in jax.tree_util.keystr(p) else x, params)
  logits_a, metrics_a, grads_a = _loss_grads_logits(model, params, alone)
  logits_p, metrics_p, grads_p = _loss_grads_logits(model, params, packed)
  for r, row in enumerate(ROWS):
    t = 0
    for i in row:
      np.testing.assert_allclose(logits_p[r, t:t + LENGTHS[i]], logits_a[i, :LENGTHS[i]],
                                 rtol=1e-5, atol=1e-6)
      t += LENGTHS[i]
  for name in ('loss', 'accuracy', 'sequence_accuracy'):
    np.testing.assert_allclose(metrics_p[name], metrics_a[name], rtol=1e-5)
  jax.tree.map(lambda p, a: np.testing.assert_allclose(p, a, rtol=1e-4, atol=1e-6),
               grads_p, grads_a)


def test_sequence_accuracy_counts_each_packed_sequence():
  # Row 0 holds sequences of 2 and 3 steps, row 1 one of 4 (then padding).
  segments = np.array([[1, 1, 2, 2, 2], [1, 1, 1, 1, 0]])
  labels = np.zeros((2, 5), np.int32)
  logits = np.zeros((2, 5, 2), np.float32)
  logits[..., 0] = 1.0  # predicts 0 everywhere ...
  logits[0, 3, :] = [0.0, 1.0]  # ... but step 3, in row 0's second sequence
  logits[1, 4, :] = [0.0, 1.0]  # (and a padded step, which counts for nothing)
  batch = {'labels': labels, 'segments': segments, 'lengths': np.array([5, 4])}
  metrics = get_task('labelling')(logits, batch)
  assert [float(x) for x in metrics['sequence_accuracy']] == [2.0, 3.0]
  assert [float(x) for x in metrics['accuracy']] == [8.0, 9.0]


def test_bad_segments_are_refused_by_name():
  batch = _packed(_sequences(0))
  batch['segments'][0, 3] = 3  # jumps from 1 to 3
  with pytest.raises(ValueError, match=r'segments.*index \(0, 3\)'):
    validate_batch(batch, task='labelling', num_classes=3, num_features=5)
  batch = _packed(_sequences(0))
  batch['segments'][1, 8] = 2  # past the row's length
  with pytest.raises(ValueError, match=r'segments.*index \(1, 8\)'):
    validate_batch(batch, task='labelling', num_classes=3, num_features=5)


@pytest.mark.parametrize('field, value, match', [
    ('task', 'classification', 'labelling'),
    ('model.variational_dropout', 0.2, 'variational'),
])
def test_pack_is_refused_where_a_row_must_be_one_sequence(field, value, match):
  config = default_config()
  config.task = 'labelling'
  config.data.pack = True
  group, name = field.split('.') if '.' in field else (None, field)
  (config[group] if group else config)[name] = value
  with pytest.raises(ValueError, match=match):
    validate_config(config)


def _split(lengths, seed=0):
  """Float sequences whose every step holds its sequence's index (to find it again)."""
  lengths = np.asarray(lengths, np.int32)
  ids = np.arange(len(lengths), dtype=np.float32)[:, None, None]
  inputs = np.broadcast_to(ids, (len(lengths), lengths.max(), 1)).copy()
  labels = np.random.default_rng(seed).integers(0, 3, (len(lengths), lengths.max()))
  return {'inputs': inputs, 'labels': labels.astype(np.int32), 'lengths': lengths}


def test_packed_epochs_hold_each_sequence_once_in_rows_no_longer_than_their_bucket():
  lengths = np.random.default_rng(1).integers(1, 41, 300)
  split, buckets = _split(lengths), (10, 20, 40)
  steps = batching.steps_per_epoch(split, 8, buckets, pack=True)
  assert steps < len(lengths) // 8  # fewer rows than sequences
  for epoch in range(2):
    seen = []
    for step in range(epoch * steps, (epoch + 1) * steps):
      batch = batching.train_batch(split, step, batch_size=8, buckets=buckets, seed=3,
                                   pack=True)
      validate_batch(batch, task='labelling', num_classes=3, num_features=1)
      assert batch['inputs'].shape[1] in buckets
      for r in range(8):
        for s in range(1, batch['segments'][r].max() + 1):
          at = batch['segments'][r] == s
          (i,) = set(batch['inputs'][r, at, 0].astype(int))
          assert at.sum() == lengths[i]
          np.testing.assert_array_equal(batch['labels'][r, at], split['labels'][i, :lengths[i]])
          seen.append(i)
    assert len(seen) == len(set(seen)) > 0.9 * len(lengths)  # a few dropped with the last rows
  again = batching.train_batch(split, 5, batch_size=8, buckets=buckets, seed=3, pack=True)
  np.testing.assert_array_equal(again['segments'], batching.train_batch(
      split, 5, batch_size=8, buckets=buckets, seed=3, pack=True)['segments'])
  unpacked = batching.epoch_padding_fraction(split, batch_size=8, buckets=buckets, seed=3)
  packed = batching.epoch_padding_fraction(split, batch_size=8, buckets=buckets, seed=3, pack=True)
  assert packed < unpacked / 2


def test_each_process_gets_its_contiguous_rows_of_the_packed_global_batch():
  split, buckets = _split(np.random.default_rng(2).integers(1, 21, 200)), (10, 20)
  whole = batching.train_batch(split, 3, batch_size=8, buckets=buckets, seed=0, pack=True)
  for p in range(2):
    share = batching.train_batch(split, 3, batch_size=8, buckets=buckets, seed=0, pack=True,
                                 process_index=p, process_count=2)
    for key, x in share.items():
      np.testing.assert_array_equal(x, whole[key][4 * p:4 * (p + 1)])
