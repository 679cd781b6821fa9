"""Model selection and early stopping: the best step is the best eval value of
train.best_metric in its direction; a run stops after train.early_stopping_patience
evaluations without a better one, alone or in a vectorised group, and stays stopped."""

import numpy as np
import pytest

from helpers import digits_config, metric_records
from seqrnn import train_and_evaluate
from seqrnn.run import train_runs


def _config(num_steps=200, **train):
  # Evaluations every 10 steps at a high learning rate: the eval loss soon stops falling.
  config = digits_config(num_steps, eval_every_steps=10, **train)
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
  configs = [_config(best_metric='loss', early_stopping_patience=2) for _ in range(2)]
  configs[1].optim.learning_rate, configs[1].seed = 0.003, 1  # a slower run: stops later
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
