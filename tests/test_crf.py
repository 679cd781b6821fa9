"""The linear-chain CRF against brute force: every label sequence enumerated in numpy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_gradient_is_finite_differences, random_batch, tiny_model_config

from seqrnn import crf
from seqrnn.config import default_config, validate_config
from seqrnn.models import build_model
from seqrnn.tasks import labelling

C = 3
RNG = np.random.default_rng(0)
SCORES = crf.CRFScores(*(RNG.normal(size=s).astype(np.float32)
                         for s in ((3, 4, C), (C, C), (C,), (C,))))
LENGTHS = np.array([4, 2, 1])


def _score(scores, labels, emissions):
  """s(y) of one sequence, as the docstring writes it."""
  s = scores.start[labels[0]] + scores.end[labels[-1]]
  s += sum(emissions[t, y] for t, y in enumerate(labels))
  return s + sum(scores.transitions[a, b] for a, b in zip(labels, labels[1:]))


def _brute_force(scores, emissions):
  """(log Z, the best label sequence) over all C ** n sequences."""
  all_scores = {y: _score(scores, y, emissions)
                for y in itertools.product(range(C), repeat=len(emissions))}
  values = np.array(list(all_scores.values()), np.float64)
  return np.log(np.exp(values - values.max()).sum()) + values.max(), max(all_scores,
                                                                          key=all_scores.get)


def test_log_partition_and_viterbi_equal_enumerating_every_label_sequence():
  log_z, best = crf.log_partition(SCORES, LENGTHS), crf.viterbi(SCORES, LENGTHS)
  labels = RNG.integers(0, C, size=(3, 4))
  gold = crf.sequence_score(SCORES, labels, LENGTHS)
  for b, n in enumerate(LENGTHS):
    expected_z, expected_best = _brute_force(SCORES, SCORES.emissions[b, :n])
    np.testing.assert_allclose(log_z[b], expected_z, rtol=1e-5)
    assert tuple(best[b, :n]) == expected_best and not np.any(best[b, n:])
    np.testing.assert_allclose(gold[b], _score(SCORES, labels[b, :n], SCORES.emissions[b, :n]),
                               rtol=1e-5)


def test_the_gradient_of_the_nll_equals_finite_differences():
  labels = jnp.asarray(RNG.integers(0, C, size=(3, 4)))
  with jax.enable_x64(True):
    scores = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), SCORES)
    assert_gradient_is_finite_differences(lambda s: crf.nll(s, labels, LENGTHS).sum(), scores)


def test_padding_changes_nothing_and_a_packed_row_scores_each_sequence_alone():
  labels = RNG.integers(0, C, size=(3, 4))
  noisy = SCORES._replace(emissions=np.where(np.arange(4)[None, :, None] < LENGTHS[:, None, None],
                                             SCORES.emissions, 1e3))
  for fn in (lambda s: crf.nll(s, labels, LENGTHS), lambda s: crf.viterbi(s, LENGTHS),
             lambda s: jax.grad(lambda e: crf.nll(s._replace(emissions=e), labels,
                                                  LENGTHS).sum())(s.emissions)[:, :1]):
    np.testing.assert_allclose(fn(noisy), fn(SCORES), rtol=1e-6)
  # Sequences 1 (2 steps) and 2 (1 step) end to end in one row, then padding.
  row = np.concatenate([SCORES.emissions[1, :2], SCORES.emissions[2, :1], np.ones((1, C))])
  packed = SCORES._replace(emissions=row[None].astype(np.float32))
  segments = np.array([[1, 1, 2, 0]])
  row_labels = np.array([[labels[1, 0], labels[1, 1], labels[2, 0], 0]])
  alone = crf.nll(SCORES, labels, LENGTHS)
  np.testing.assert_allclose(crf.nll(packed, row_labels, np.array([3]), segments)[0],
                             alone[1] + alone[2], rtol=1e-5)
  best, alone_best = crf.viterbi(packed, np.array([3]), segments), crf.viterbi(SCORES, LENGTHS)
  assert list(best[0]) == [*alone_best[1, :2], alone_best[2, 0], 0]


def test_the_labelling_task_with_a_crf_head_takes_the_nll_per_token_and_viterbis_labels():
  batch = random_batch(1, batch=3, time=4, task='labelling', lengths=list(LENGTHS))
  batch['labels'] = batch['labels'] % C
  metrics = labelling(SCORES, batch)
  steps = LENGTHS.sum()
  np.testing.assert_allclose(metrics['loss'][0] / metrics['loss'][1],
                             crf.nll(SCORES, batch['labels'], LENGTHS).sum() / steps, rtol=1e-6)
  real = np.arange(4)[None] < LENGTHS[:, None]
  right = (np.asarray(crf.viterbi(SCORES, LENGTHS)) == batch['labels']) & real
  assert metrics['accuracy'] == (right.sum(), steps)


def test_a_crf_tagger_starts_as_the_softmax_taggers_argmax_and_is_refused_for_classification():
  batch = random_batch(2, batch=3, time=5, task='labelling', num_classes=4)
  model = build_model('labelling', tiny_model_config(head='crf'), num_classes=4)
  variables = model.init(jax.random.key(0), batch['inputs'], batch['lengths'])
  scores = model.apply(variables, batch['inputs'], batch['lengths'])
  assert isinstance(scores, crf.CRFScores) and not np.any(variables['params']['crf']['transitions'])
  real = np.arange(5)[None] < batch['lengths'][:, None]
  np.testing.assert_array_equal(crf.viterbi(scores, batch['lengths']),
                                np.where(real, np.argmax(scores.emissions, -1), 0))
  config = default_config()
  config.model.head = 'crf'
  with pytest.raises(ValueError, match=r"model.head='crf' labels every step, for "
                                       r"task='labelling'; config.task='classification'"):
    validate_config(config)


def test_models_stacked_under_vmap_as_a_vectorised_sweep_stacks_them_get_each_ones_metrics():
  batch = random_batch(1, batch=3, time=4, task='labelling', lengths=list(LENGTHS))
  batch['labels'] = batch['labels'] % C
  models = [jax.tree.map(lambda a, k=k: a * (1 + k), SCORES) for k in range(3)]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *models)
  together = jax.vmap(lambda s: labelling(s, batch))(stacked)
  for k, scores in enumerate(models):
    alone = labelling(scores, batch)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[k], b, rtol=1e-6), together, alone)
