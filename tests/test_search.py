"""Optuna searches (experiments.search): trials are ordinary runs, hopeless ones are
pruned at an evaluation, processes share one study, a stopped trial resumes."""

import csv
import json
import sys

import pytest

from helpers import metric_records, two_sweep_processes

optuna = pytest.importorskip('optuna')

from experiments import search  # noqa: E402
from experiments.sweeps import loguniform, uniform  # noqa: E402

SPACE = {'optim.learning_rate': loguniform(3e-4, 3e-1), 'model.dropout_rate': uniform(0.0, 0.5)}


def _digits():
  from experiments.configs import digits
  config = digits.get_config('debug')  # 20 steps, an evaluation every 10
  return config


def _study(workdir):
  return optuna.load_study(study_name=workdir.name, storage=f'sqlite:///{workdir / "study.db"}')


def _eval_accuracies(run_dir):
  return [r['accuracy'] for r in metric_records(run_dir) if r['split'] == 'eval']


@pytest.fixture(scope='module')
def six_trials(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('search')
  lines = []
  statuses = search.run_search(_digits(), SPACE, workdir, trials=6, seed=0, say=lines.append)
  return workdir, statuses, lines


def test_a_six_trial_study_on_digits_prunes_hopeless_trials_at_an_evaluation(six_trials):
  workdir, statuses, lines = six_trials
  trials = _study(workdir).trials
  assert len(trials) == 6 and len(statuses) == 6
  states = {t.number: t.state.name for t in trials}
  pruned = [n for n, s in states.items() if s == 'PRUNED']
  assert pruned and set(states.values()) == {'COMPLETE', 'PRUNED'}, states
  complete = [t for t in trials if t.state.name == 'COMPLETE']
  for n in pruned:
    run_dir = search.trial_dir(workdir, n)
    status = json.loads((run_dir / 'status.json').read_text())
    assert status['status'] == 'pruned' and status['error'].startswith('pruned at step 10')
    # Stopped at its first evaluation, below the median of the trials finished before it.
    assert _eval_accuracies(run_dir) == [trials[n].intermediate_values[10]]
    before = sorted(t.intermediate_values[10] for t in complete if t.number < n)
    assert len(before) >= 2 and trials[n].intermediate_values[10] < before[len(before) // 2]
    assert not any(r['split'].startswith('test') for r in metric_records(run_dir))
  # A finished trial's value is its best evaluation, as in the report; its overrides the
  # values Optuna drew.
  rows = {r['run']: r for r in csv.DictReader(open(workdir / 'report.csv'))}
  for t in complete:
    run_dir = search.trial_dir(workdir, t.number)
    assert t.value == max(_eval_accuracies(run_dir)) == float(rows[run_dir.name]['best_eval_accuracy'])
    assert json.loads((run_dir / 'status.json').read_text())['overrides'] == t.params
  assert {r['status'] for r in rows.values()} == {'done', 'pruned'}
  best = max(complete, key=lambda t: t.value)
  assert f'best trial of the study: trial_{best.number:04d} (eval accuracy {best.value:.4f})' in (
      ' '.join(lines))


def test_trials_asked_together_train_as_one_vectorised_group_and_score_as_alone(
    six_trials, tmp_path):
  alone, _, _ = six_trials
  search.run_search(_digits(), SPACE, tmp_path, trials=3, seed=0, at_once=3, say=lambda _: None)
  for n in range(3):  # the same draws (one seed): the same trainings, up to where one alone
    run_dir = search.trial_dir(tmp_path, n)  # was pruned (here none is: none finished before)
    assert json.loads((run_dir / 'status.json').read_text())['trained_with'] == 3
    together, by_itself = _eval_accuracies(run_dir), _eval_accuracies(search.trial_dir(alone, n))
    assert together[:len(by_itself)] == by_itself and len(together) == 2


def test_a_trial_left_running_by_a_stopped_process_is_resumed_by_the_next(tmp_path):
  search.run_search(_digits(), SPACE, tmp_path, trials=1, seed=0, say=lambda _: None)
  # As a process stopped by a signal leaves it: the trial running in the study, its
  # workdir's status 'stopped'.
  study = _study(tmp_path)
  trial = study.ask({'optim.learning_rate': optuna.distributions.FloatDistribution(
      3e-4, 3e-1, log=True)})
  run_dir = search.trial_dir(tmp_path, trial.number)
  run_dir.mkdir(parents=True)
  overrides = {'optim.learning_rate': trial.params['optim.learning_rate']}
  (run_dir / 'status.json').write_text(json.dumps({'overrides': overrides, 'status': 'stopped'}))
  lines = []
  search.run_search(_digits(), SPACE, tmp_path, trials=2, seed=0, say=lines.append)
  assert lines[0].startswith(f'[trial 2/2] {run_dir.name} optim.learning_rate=')
  (resumed,) = [t for t in _study(tmp_path).trials if t.number == trial.number]
  assert resumed.state.name in ('COMPLETE', 'PRUNED') and len(_study(tmp_path).trials) == 2
  assert json.loads((run_dir / 'status.json').read_text())['overrides'] == overrides


def test_a_field_the_config_lacks_or_refuses_is_named_before_any_trial(tmp_path, monkeypatch):
  with pytest.raises(ValueError, match='config.optim.learning_rat is not a config field'):
    search.run_search(_digits(), {'optim.learning_rat': loguniform(1e-4, 1e-2)}, tmp_path,
                      trials=2)
  with pytest.raises(ValueError, match=r'dropout_rate=1.5 must be in \[0, 1\)'):
    search.run_search(_digits(), {'model.dropout_rate': [0.1, 1.5]}, tmp_path, trials=2)
  assert not (tmp_path / 'study.db').exists()
  monkeypatch.setitem(sys.modules, 'optuna', None)  # the install without seqrnn[sweeps]
  with pytest.raises(ImportError, match=r"pip install 'seqrnn\[sweeps\]'"):
    search.run_search(_digits(), SPACE, tmp_path, trials=2)


def test_two_processes_share_one_sqlite_study(tmp_path):
  (tmp_path / 'space.py').write_text(
      'from experiments.sweeps import loguniform\n'
      'def get_search_space():\n  return {"optim.learning_rate": loguniform(3e-4, 3e-1)}\n')
  outs = two_sweep_processes(f'--sweep={tmp_path / "space.py"}', f'--workdir={tmp_path / "w"}',
                             '--search=optuna', '--trials=4',
                             f'--storage=sqlite:///{tmp_path / "shared.db"}')
  study = optuna.load_study(study_name='w', storage=f'sqlite:///{tmp_path / "shared.db"}')
  assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
  assert {t.state.name for t in study.trials} <= {'COMPLETE', 'PRUNED'}
  # Each trial trained by one process, once: one 'running' line for it in all the output.
  started = [line.split()[2] for out, _ in outs for line in out.splitlines()
             if line.startswith('[trial') and line.endswith('running')]
  assert sorted(started) == [f'trial_{n:04d}' for n in range(4)], outs
  for n in range(4):
    steps = [r['step'] for r in metric_records(tmp_path / 'w' / 'runs' / f'trial_{n:04d}')
             if r['split'] == 'train']
    assert steps in ([10], [10, 20])
