"""Model selection and early stopping: the best step is the best eval value of
train.best_metric in its direction; a run stops after train.early_stopping_patience
evaluations without a better one, alone or in a vectorised group, and stays stopped."""

import numpy as np
import pytest

from experiments import report
from helpers import digits_config, metric_records
from seqrnn import train_and_evaluate
from seqrnn.run import train_runs
from seqrnn.run_state import select_best


def _config(num_steps=200, **train):
  # Evaluations every 10 steps at a high learning rate: the eval loss soon stops falling.
  # Checkpoints every 50 (a stop, the end and each new best save one too): Orbax saves were
  # most of these small runs' time (every 10 steps: 31 saves, 6.0 s of a 200-step run's 9.5 s).
  config = digits_config(num_steps, eval_every_steps=10, **{'checkpoint_every_steps': 50, **train})
  config.optim.learning_rate = 0.03
  return config


def _evals(workdir, metric):
  return [(r['step'], r[metric]) for r in metric_records(workdir) if r['split'] == 'eval']


def _expected_stop(evals, patience, lower):
  """The step where `patience` evaluations in a row brought no better value (reference)."""
  best, since = None, 0
  for step, value in evals:
    if best is None or (value < best if lower else value > best):
      best, since = value, 0
    else:
      since += 1
      if since == patience:
        return step
  return None


def _best_step(evals, lower):
  values = [v for _, v in evals]
  return evals[int(np.argmin(values) if lower else np.argmax(values))][0]  # the first of ties


@pytest.mark.parametrize('metric', ['loss', 'accuracy'])
def test_the_run_stops_after_patience_evaluations_and_selects_the_best_in_its_direction(
    tmp_path, metric):
  results = train_and_evaluate(_config(best_metric=metric, early_stopping_patience=3), tmp_path)
  evals = _evals(tmp_path, metric)
  lower = metric == 'loss'
  stop = _expected_stop(evals, 3, lower)
  assert stop is not None and stop < 200 and results['stopped_early'] == stop
  assert evals[-1][0] == stop  # no evaluation, and no training, after it
  assert max(r['step'] for r in metric_records(tmp_path) if r['split'] == 'train') == stop
  assert results['best_step'] == _best_step(evals, lower)
  (test_best,) = [r for r in metric_records(tmp_path) if r['split'] == 'test_best']
  assert test_best['step'] == results['best_step']


def test_a_stopped_run_stays_stopped_and_a_longer_patience_goes_on(tmp_path):
  first = train_and_evaluate(_config(best_metric='loss', early_stopping_patience=2), tmp_path)
  records = metric_records(tmp_path)
  again = train_and_evaluate(_config(best_metric='loss', early_stopping_patience=2), tmp_path)
  assert again['stopped_early'] == first['stopped_early'] and again['test'] == first['test']
  assert [r for r in metric_records(tmp_path) if r['split'] in ('train', 'eval')] == [
      r for r in records if r['split'] in ('train', 'eval')]
  longer = train_and_evaluate(_config(best_metric='loss', early_stopping_patience=4), tmp_path)
  evals = _evals(tmp_path, 'loss')
  assert longer.get('stopped_early') == _expected_stop(evals, 4, lower=True)
  assert evals[-1][0] > first['stopped_early']


def test_in_a_vectorised_group_each_run_stops_on_its_own_as_it_would_alone(tmp_path):
  configs = [_config(120, best_metric='loss', early_stopping_patience=2) for _ in range(2)]
  configs[1].optim.learning_rate, configs[1].seed = 0.003, 1  # slower: still improving at 120
  together = train_runs(configs, [tmp_path / 'g0', tmp_path / 'g1'])
  for k, config in enumerate(configs):
    alone = train_and_evaluate(config, tmp_path / f'a{k}')
    assert together[k].get('stopped_early') == alone.get('stopped_early')
    assert together[k]['best_step'] == alone['best_step']
    np.testing.assert_allclose(together[k]['test_best']['loss'], alone['test_best']['loss'],
                               rtol=1e-5)
    steps = lambda w: [(r['step'], r['split']) for r in metric_records(w)]
    assert steps(tmp_path / f'g{k}') == steps(tmp_path / f'a{k}')
  assert together[0]['stopped_early'] != together[1].get('stopped_early')


def test_changing_best_metric_on_a_resume_chooses_the_best_step_again(tmp_path, capsys):
  train_and_evaluate(_config(num_steps=50), tmp_path)  # accuracy, the default
  train_and_evaluate(_config(num_steps=100, best_metric='loss'), tmp_path)
  assert "train.best_metric changed from 'accuracy' to 'loss'" in capsys.readouterr().out
  evals = [(s, v) for s, v in _evals(tmp_path, 'loss') if s > 50]
  results = [r for r in metric_records(tmp_path) if r['split'] == 'test_best']
  assert results[-1]['step'] == _best_step(evals, lower=True)


# train.best_loss_margin: accuracy chooses only among steps whose eval loss is near the lowest.
_EVALS = [  # (step, accuracy, loss), hand-made
    (1, 0.80, 1.00),
    (2, 0.85, 1.03),  # in the band (<= 1.05): more accurate, the best
    (3, 0.90, 1.10),  # above 1.05: not eligible, however accurate
    (4, 0.84, 0.98),  # a new lowest loss: the band is now <= 1.029, step 2 left it
    (5, 0.91, 1.02),  # in the band and more accurate than step 4
    (6, 0.95, 1.20),  # overfit: not eligible
]


def _select(margin):
  evals = [{'step': s, 'accuracy': a, 'loss': l} for s, a, l in _EVALS]
  return select_best(evals, 'accuracy', margin)['step']


def test_within_the_loss_margin_accuracy_chooses_and_a_best_that_leaves_the_band_is_replaced():
  assert _select(0.05) == 5
  assert _select(0.0) == 6  # off: the best eval accuracy
  assert _select(1e-9) == 4  # nothing but the lowest loss is eligible


@pytest.fixture(scope='module')
def margin_run(tmp_path_factory):
  """(results, workdir) of a run with train.best_loss_margin=0.05."""
  workdir = tmp_path_factory.mktemp('margin')
  return train_and_evaluate(_config(best_loss_margin=0.05), workdir), workdir


def test_a_run_with_a_loss_margin_keeps_a_step_within_it(tmp_path, margin_run):
  plain = train_and_evaluate(_config(), tmp_path / 'plain')
  evals = metric_records(tmp_path / 'plain')
  evals = {r['step']: r for r in evals if r['split'] == 'eval'}
  lowest = min(r['loss'] for r in evals.values())
  # The high learning rate overfits: the most accurate step is far above the lowest loss.
  assert evals[plain['best_step']]['loss'] > 1.05 * lowest
  margin, workdir = margin_run
  assert evals[margin['best_step']]['loss'] <= 1.05 * lowest  # the same evaluations
  assert margin['best_step'] != plain['best_step']
  assert report.run_row(workdir)['best_step'] == margin['best_step']  # the report's


def test_a_resumed_run_keeps_the_margins_best_as_the_uninterrupted_run_does(tmp_path, margin_run):
  whole, _ = margin_run
  train_and_evaluate(_config(num_steps=100, best_loss_margin=0.05), tmp_path / 'parts')
  parts = train_and_evaluate(_config(best_loss_margin=0.05), tmp_path / 'parts')
  assert parts['best_step'] == whole['best_step']
  assert parts['test_best'] == whole['test_best']
