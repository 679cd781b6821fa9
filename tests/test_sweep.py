"""Sweeps: every run in its own workdir, failures recorded, finished runs skipped
on a restart, and a report (table, CSV, figures) from the files alone."""

import csv
import importlib
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from helpers import metric_records, two_sweep_processes

from experiments import report
from experiments.sweep import load_space, load_sweep, run_name, run_sweep, with_overrides
from experiments.sweeps import product, zipped


def test_product_and_zipped_build_override_dicts():
  assert product({'a': [1, 2], 'b': ['x', 'y']}) == [
      {'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
  assert zipped({'a': [1, 2], 'b': ['x', 'y']}) == [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'y'}]
  with pytest.raises(ValueError, match='lists of one length'):
    zipped({'a': [1, 2], 'b': [3]})
  assert run_name({'model.cell': 'lstm', 'optim.learning_rate': 0.001}) == \
      'model.cell=lstm,optim.learning_rate=0.001'


def test_a_sweep_file_naming_a_run_twice_or_a_field_that_does_not_exist_is_refused(tmp_path):
  from experiments.configs import digits
  path = tmp_path / 'twice.py'
  path.write_text('def get_sweep():\n  return [{"seed": 1}, {"seed": 1}]\n')
  with pytest.raises(ValueError, match='lists a run twice'):
    load_sweep(path)
  with pytest.raises(ValueError, match=r'config.model.cel is not a config field'):
    with_overrides(digits.get_config(), {'model.cel': 'lstm'})


def _digits():
  from experiments.configs import digits
  config = digits.get_config('debug')
  config.train.num_steps = 20
  config.train.eval_every_steps = 10
  return config


def test_a_sweep_runs_each_config_records_a_failure_and_skips_finished_runs_on_restart(tmp_path):
  sweep = [{'optim.learning_rate': 1e-3}, {'optim.learning_rate': 1e-2},
           {'model.dropout_rate': 1.5}]  # refused by validation: recorded, not fatal
  lines = []
  statuses = run_sweep(_digits(), sweep, tmp_path, say=lines.append)
  assert [s['status'] for s in statuses.values()] == ['done', 'done', 'failed']
  assert 'model.dropout_rate=1.5 must be in [0, 1)' in statuses['model.dropout_rate=1.5']['error']
  (failed,) = [l for l in lines if l.startswith('[3/3] model.dropout_rate=1.5: failed (')]
  assert 'ValueError' in failed and 'best so far optim.learning_rate=' in failed

  # As if the sweep had been killed during its second run: that run resumes (here: from
  # its final checkpoint, training nothing), the first is skipped untouched.
  first, second = (tmp_path / 'runs' / run_name(o) for o in sweep[:2])
  first_metrics = (first / 'metrics.jsonl').read_text()
  status = json.loads((second / 'status.json').read_text())
  (second / 'status.json').write_text(json.dumps({**status, 'status': 'running'}))
  lines = []
  statuses = run_sweep(_digits(), sweep, tmp_path, say=lines.append)
  assert lines[0].startswith('[1/3] optim.learning_rate=0.001: done before, skipped; best so far')
  assert (first / 'metrics.jsonl').read_text() == first_metrics
  assert statuses[second.name]['status'] == 'done'
  assert [l.split(':')[0] for l in lines if 'running' in l] == ['[2/3] optim.learning_rate=0.01',
                                                               '[3/3] model.dropout_rate=1.5']

  rows = list(csv.DictReader(open(tmp_path / 'report.csv')))
  assert [(r['run'], r['status']) for r in rows] == [  # sorted by name
      ('model.dropout_rate=1.5', 'failed'), ('optim.learning_rate=0.001', 'done'),
      ('optim.learning_rate=0.01', 'done')]
  done = [r for r in rows if r['status'] == 'done']
  for r in done:
    records = report.read_metrics(tmp_path / 'runs' / r['run'])
    (test,) = [x for x in records if x['split'] == 'test']
    assert float(r['test_accuracy']) == test['accuracy']
    assert float(r['best_eval_accuracy']) == max(x['accuracy'] for x in records
                                                 if x['split'] == 'eval')
  table = (tmp_path / 'report.md').read_text()
  assert table.count('\n') == 2 + 3 and '| failed |' in table
  _check_png(tmp_path / 'curves.png', 2250)
  _check_png(tmp_path / 'vs_optim.learning_rate.png', 1620)


def _check_png(path, width, height=480):
  """A figure of the size asked, not a blank canvas, and its vector twin for a paper."""
  import matplotlib.image
  image = matplotlib.image.imread(path)
  assert image.shape[:2] == (height, width)
  assert image[..., :3].std() > 0.01
  assert path.with_suffix('.pdf').read_bytes().startswith(b'%PDF')


def _hues(path):
  """The hues (degrees, rounded to 10) of a figure's coloured pixels (not grey, not white)."""
  import matplotlib.colors
  import matplotlib.image
  hsv = matplotlib.colors.rgb_to_hsv(matplotlib.image.imread(path)[..., :3])
  coloured = hsv[(hsv[..., 1] > 0.5) & (hsv[..., 2] > 0.3)]
  hues, counts = np.unique(np.round(coloured[:, 0] * 36) * 10 % 360, return_counts=True)
  return set(hues[counts > 50])


def test_a_large_sweeps_curves_show_the_best_run_in_colour_and_the_others_grey(tmp_path):
  def records(k):
    return [{'step': s, 'split': split, 'accuracy': 0.5 + 0.04 * k - 0.1 / s, 'loss': 1.0 / s}
            for s in (10, 20, 30) for split in ('train', 'eval')]
  few = {f'run{k}': records(k) for k in range(3)}
  report.plot_curves(few, tmp_path / 'few.png')
  assert len(_hues(tmp_path / 'few.png')) >= 3  # a colour a run
  many = {f'run{k}': records(k) for k in range(12)}
  report.plot_curves(many, tmp_path / 'many.png', best='run11')
  assert _hues(tmp_path / 'many.png') == {200.0}  # matplotlib's first colour (#1f77b4) alone
  for name in ('few', 'many'):
    _check_png(tmp_path / f'{name}.png', 1620)


def test_a_single_runs_workdir_gets_its_own_report(tmp_path, monkeypatch, capsys):
  from seqrnn import train_and_evaluate
  train_and_evaluate(_digits(), tmp_path)
  with monkeypatch.context() as m:  # the light install: no matplotlib
    m.setitem(sys.modules, 'matplotlib', None)
    assert {p.name for p in report.report(tmp_path)} == {'report.md', 'report.csv'}
  assert "the figures need matplotlib: pip install 'seqrnn[report]'" in capsys.readouterr().err
  paths = report.report(tmp_path)
  assert {p.name for p in paths} == {'report.md', 'report.csv', 'curves.png'}
  (row,) = list(csv.DictReader(open(tmp_path / 'report.csv')))
  assert row['run'] == tmp_path.name and row['status'] == 'done'
  assert np.isfinite(float(row['steps_per_s']))
  _check_png(tmp_path / 'curves.png', 2250)


@pytest.fixture(scope='module')
def numpy_seeded(tmp_path_factory):
  """A finished sweep of one run whose seed is a numpy integer (`np.arange`'s)."""
  workdir = tmp_path_factory.mktemp('sweep')
  statuses = run_sweep(_digits(), [{'seed': s} for s in np.arange(3, 4)], workdir,
                       say=lambda _: None)
  return workdir, statuses


def test_numpy_scalars_in_a_sweep_are_taken_as_numbers(numpy_seeded):
  workdir, statuses = numpy_seeded
  assert statuses == {'seed=3': statuses['seed=3']} and statuses['seed=3']['status'] == 'done'
  assert json.loads((workdir / 'runs' / 'seed=3' / 'status.json').read_text())['overrides'] == {
      'seed': 3}


def _copy(workdir, tmp_path):
  import shutil
  shutil.copytree(workdir, tmp_path / 'sweep')
  return tmp_path / 'sweep'


def test_a_sweep_restarted_with_another_base_config_is_refused_naming_what_changed(
    numpy_seeded, tmp_path):
  workdir = _copy(numpy_seeded[0], tmp_path)
  before = sorted(str(p) for p in workdir.rglob('*'))
  config = _digits()
  config.model.cell = 'lstm'
  with pytest.raises(ValueError, match=r"holds runs of this sweep started with another config: "
                                       r"seed=3 \(model.cell 'gru' -> 'lstm'\)\. Nothing was run"):
    run_sweep(config, [{'seed': 3}], workdir, say=lambda _: None)
  assert sorted(str(p) for p in workdir.rglob('*')) == before
  lines = []  # the same config: the run is the same run, skipped
  run_sweep(_digits(), [{'seed': 3}], workdir, say=lines.append)
  assert lines[0].startswith('[1/1] seed=3: done before, skipped')


@pytest.mark.parametrize('garbled', ['', '{"status": "do'])
def test_an_unreadable_status_file_is_named_and_its_run_taken_as_not_done(
    numpy_seeded, tmp_path, capfd, garbled):
  workdir = _copy(numpy_seeded[0], tmp_path)
  path = workdir / 'runs' / 'seed=3' / 'status.json'
  path.write_text(garbled)
  report.report(workdir)
  assert f'{path} cannot be read' in capfd.readouterr().err
  lines = []
  statuses = run_sweep(_digits(), [{'seed': 3}], workdir, say=lines.append)
  assert lines[0] == '[1/1] seed=3: running'  # resumed from its last checkpoint
  assert statuses['seed=3']['status'] == 'done'
  assert json.loads(path.read_text())['status'] == 'done'


def test_a_typo_in_a_sweep_stops_it_before_any_run_and_failed_runs_set_the_exit_status(tmp_path):
  root = pathlib.Path(__file__).resolve().parents[1]
  sweep = lambda text: (tmp_path / 'sweep.py').write_text(f'def get_sweep():\n  return {text}\n')
  run = lambda workdir: subprocess.run(
      [sys.executable, '-m', 'experiments.sweep', '--config=experiments/configs/digits.py:debug',
       f'--sweep={tmp_path / "sweep.py"}', f'--workdir={workdir}'], cwd=root,
      capture_output=True, text=True, timeout=300)
  sweep("[{'model.cel': 'lstm'}, {'model.cel': 'gru', 'seed': 2}]")
  out = run(tmp_path / 'typo')
  assert out.returncode == 1 and out.stderr.strip() == (
      "error: nothing was run: the sweep names 1 field(s) the config does not have: "
      "config.model.cel is not a config field; did you mean config.model.cell?")
  assert not (tmp_path / 'typo').exists()
  sweep("[{'model.dropout_rate': 1.5}, {'model.dropout_rate': 2.0}]")  # each fails alone
  out = run(tmp_path / 'bad')
  assert out.returncode == 1 and out.stderr.strip().startswith(
      '2 of 2 runs failed (model.dropout_rate=1.5, model.dropout_rate=2.0)')
  # Its report is the table alone: no run trained, so no blank figure.
  assert sorted(p.name for p in (tmp_path / 'bad').iterdir()) == ['report.csv', 'report.md',
                                                                 'runs']


def test_random_draws_are_reproducible_in_range_and_log_uniform_where_asked():
  from experiments.sweeps import loguniform, random, uniform
  space = {'optim.learning_rate': loguniform(1e-4, 1e-2), 'model.dropout_rate': uniform(0, 0.5),
           'model.cell': ['gru', 'lstm'], 'seed': 3}
  runs = random(400, 0, space)
  assert runs == random(400, 0, space) and runs != random(400, 1, space)
  rates = np.array([r['optim.learning_rate'] for r in runs])
  assert 1e-4 <= rates.min() and rates.max() <= 1e-2
  assert 0.4 < np.mean(rates < 1e-3) < 0.6  # half the draws below the geometric middle
  assert all(0 <= r['model.dropout_rate'] <= 0.5 and r['seed'] == 3 for r in runs)
  assert {r['model.cell'] for r in runs} == {'gru', 'lstm'}
  assert all(len(repr(r['optim.learning_rate'])) <= 10 for r in runs)  # readable run names


def test_two_sweep_processes_on_one_workdir_share_its_runs(tmp_path):
  (tmp_path / 'sweep.py').write_text(
      "def get_sweep():\n  return [{'model.cell': c, 'seed': s} for c in ('gru', 'lstm') "
      "for s in (0, 1)]\n")
  outs = two_sweep_processes(f'--sweep={tmp_path / "sweep.py"}', f'--workdir={tmp_path / "w"}')
  # A run the other process holds is left to it (how many depends on timing), never failed.
  assert not any('failed' in out for out, _ in outs), outs
  runs = sorted((tmp_path / 'w' / 'runs').iterdir())
  assert [json.loads((r / 'status.json').read_text())['status'] for r in runs] == ['done'] * 4
  for r in runs:  # trained once: one train record a logged step, no step run twice
    assert [x['step'] for x in metric_records(r) if x['split'] == 'train'] == [10, 20]


def test_every_sweep_file_shipped_names_only_config_fields():
  from seqrnn.config import unknown_field
  files = sorted((pathlib.Path(__file__).parents[1] / 'experiments' / 'sweeps').glob('[!_]*.py'))
  assert len(files) >= 4
  for path in files:
    module = importlib.import_module(f'experiments.sweeps.{path.stem}')
    runs = load_sweep(path) if hasattr(module, 'get_sweep') else [load_space(path)]
    assert all(unknown_field(k) is None for run in runs for k in run), path
