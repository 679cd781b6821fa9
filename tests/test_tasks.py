"""Losses and metrics against hand-computed values."""

import numpy as np
from reference import log_softmax

from seqrnn.tasks import accumulate, classification, get_task, labelling, summarize


def test_classification_loss_is_mean_cross_entropy_with_weights():
  logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]], np.float32)
  batch = {'labels': np.array([0, 2, 0]), 'lengths': np.array([1, 1, 1]),
           'weights': np.array([1.0, 1.0, 0.0])}
  m = summarize(classification(logits, batch))
  expected = -(log_softmax(logits[0])[0] + np.log(1 / 3)) / 2
  np.testing.assert_allclose(m['loss'], expected, rtol=1e-6)
  assert m['accuracy'] == 0.5  # row 0 right, row 1 argmax 0 != 2, row 2 weighted out


def test_labelling_averages_over_real_steps_only():
  logits = np.log(np.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]],
                            [[0.25, 0.75], [0.6, 0.4], [0.6, 0.4]]], np.float32))
  batch = {'labels': np.array([[0, 0, 1], [1, 1, 1]]), 'lengths': np.array([3, 1])}
  m = summarize(labelling(logits, batch))
  expected = -(np.log(0.5) + np.log(0.9) + np.log(0.8) + np.log(0.75)) / 4
  np.testing.assert_allclose(m['loss'], expected, rtol=1e-6)
  assert m['accuracy'] == 1.0  # argmax ties go to 0, which is label 0 at [0, 0]
  assert m['sequence_accuracy'] == 1.0
  batch['labels'][0, 1] = 1
  m = summarize(labelling(logits, batch))
  assert m['accuracy'] == 0.75 and m['sequence_accuracy'] == 0.5


def test_metrics_add_up_exactly_over_batches():
  a = {'loss': (3.0, 2.0)}
  b = {'loss': (1.0, 6.0)}
  assert summarize(accumulate(accumulate(None, a), b)) == {'loss': 0.5}


def test_labelling_reports_accuracy_on_unknown_words_separately():
  logits = np.log(np.array([[[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]]], np.float32))
  batch = {'labels': np.array([[0, 1, 0]]), 'lengths': np.array([3]),
           'unknown': np.array([[False, True, True]])}
  m = summarize(labelling(logits, batch))
  assert m['unknown_accuracy'] == 0.5 and np.isclose(m['accuracy'], 2 / 3)


def _smoothed(logits, label, eps):
  """-sum_c t_c log p_c with t = (1 - eps) one-hot(label) + eps / C, from the definition."""
  target = np.full(logits.shape[-1], eps / logits.shape[-1])
  target[label] += 1 - eps
  return -(target * log_softmax(logits)).sum()


def test_label_smoothing_adds_the_smoothed_objective_and_leaves_the_loss_alone():
  logits = np.array([[2.0, 0.0, -1.0], [0.5, -3.0, 1.0], [1.0, 3.0, 0.0]], np.float32)
  batch = {'labels': np.array([0, 2, 1]), 'lengths': np.array([1, 1, 1]),
           'weights': np.array([1.0, 1.0, 0.0])}
  plain = summarize(classification(logits, batch))
  m = summarize(classification(logits, batch, label_smoothing=0.2))
  assert 'objective' not in plain and m['loss'] == plain['loss']
  np.testing.assert_allclose(m['objective'], (_smoothed(logits[0], 0, 0.2)
                                              + _smoothed(logits[1], 2, 0.2)) / 2, rtol=1e-6)


def test_label_smoothing_of_labelling_averages_over_real_steps_only():
  logits = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
  batch = {'labels': np.array([[0, 3, 1], [2, 7, 7]]), 'lengths': np.array([3, 1])}
  m = summarize(get_task('labelling', label_smoothing=0.1)(logits, batch))
  real = [(0, 0, 0), (0, 1, 3), (0, 2, 1), (1, 0, 2)]
  np.testing.assert_allclose(m['objective'],
                             np.mean([_smoothed(logits[b, t], y, 0.1) for b, t, y in real]),
                             rtol=1e-6)
  assert m['loss'] == summarize(labelling(logits, batch))['loss']
