"""A workdir belongs to one run: locked, its config history kept, resumes checked."""

import json
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers import (digits_config, metric_records, restore_checkpoint,
                     sigterm_during_test_evaluation)
from seqrnn import Preempted, train_and_evaluate
from seqrnn.workdir import WorkdirInUse

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A workdir holding a finished 20-step digits run; tests copy it."""
  workdir = tmp_path_factory.mktemp('finished')
  train_and_evaluate(digits_config(20), workdir)
  return workdir


def _copy(finished, tmp_path):
  shutil.copytree(finished, tmp_path / 'run')
  return tmp_path / 'run'


def _snapshot(workdir):
  return {p.relative_to(workdir): p.read_bytes() for p in sorted(workdir.rglob('*'))
          if p.is_file() and p.name != '.lock'}


def test_a_second_process_is_refused_at_once_naming_the_holder_and_a_dead_holder_blocks_nothing(
    finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  before = _snapshot(workdir)
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time\nfrom seqrnn.workdir import locked\n'
       'with locked(sys.argv[1]):\n  print("locked", flush=True)\n  time.sleep(600)',
       str(workdir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(WorkdirInUse, match=rf'in use by another run \(pid {holder.pid}\)'):
      train_and_evaluate(digits_config(30), workdir)
    assert _snapshot(workdir) == before  # the refused run wrote nothing
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  train_and_evaluate(digits_config(30), workdir)  # the killed holder's lock is gone
  assert [r['split'] for r in metric_records(workdir)][-2:] == ['test', 'test_best']


@pytest.mark.parametrize('field, value', [
    ('data.ocr.fold', 3), ('data.ocr.train_on_one_fold', True), ('data.uea.series', 'ArrowHead'),
    ('data.path', '/elsewhere'), ('seed', 1), ('model.cell', 'lstm')])
def test_resuming_with_a_field_that_decides_the_data_or_shapes_is_refused_and_writes_nothing(
    finished, tmp_path, field, value):
  workdir = _copy(finished, tmp_path)
  before = _snapshot(workdir)
  config = digits_config(30)
  group, _, name = field.rpartition('.')
  (config[group] if group else config)[name] = value
  with pytest.raises(ValueError, match=rf'{field}: saved .*, now {value!r}'):
    train_and_evaluate(config, workdir)
  assert _snapshot(workdir) == before


def test_config_json_keeps_the_first_start_and_each_later_start_is_appended(
    finished, tmp_path, capsys):
  workdir = _copy(finished, tmp_path)
  first = (workdir / 'config.json').read_text()
  config = digits_config(30)
  config.optim.learning_rate = 1e-3
  train_and_evaluate(config, workdir)
  assert (workdir / 'config.json').read_text() == first
  history = [json.loads(l) for l in (workdir / 'config_history.jsonl').read_text().splitlines()]
  assert history == [{'step': 20, 'time': history[0]['time'], 'changed': {
      'optim.learning_rate': [0.003, 0.001], 'train.num_steps': [20, 30]}}]
  out = capsys.readouterr().out
  assert 'optim.learning_rate 0.003 -> 0.001' in out and 'train.num_steps 20 -> 30' in out
  train_and_evaluate(config, workdir)  # a start with no change is still recorded
  history = [json.loads(l) for l in (workdir / 'config_history.jsonl').read_text().splitlines()]
  assert [(h['step'], h['changed']) for h in history[1:]] == [(30, {})]


def test_a_resume_trains_with_the_configs_weight_decay_not_the_checkpoints(tmp_path):
  def config(num_steps, weight_decay):
    c = digits_config(num_steps)
    c.optim.name, c.optim.weight_decay = 'adamw', weight_decay
    return c
  for name, decay in (('same', 0.0), ('changed', 0.5)):
    train_and_evaluate(config(10, 0.0), tmp_path / name)
    train_and_evaluate(config(20, decay), tmp_path / name)
  changed, same = (restore_checkpoint(tmp_path / name / 'checkpoints', 20)[1]
                   for name in ('changed', 'same'))
  assert float(changed['opt_state'][1]['hyperparams']['weight_decay']) == 0.5
  assert float(same['opt_state'][1]['hyperparams']['weight_decay']) == 0.0
  head = lambda s: np.asarray(s['params']['head']['kernel'])
  assert np.abs(head(changed)).sum() < np.abs(head(same)).sum()  # decay pulled weights in


def test_switching_gradient_clipping_on_or_off_resumes(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  config = digits_config(30)
  config.optim.grad_clip_norm = 0.0
  train_and_evaluate(config, workdir)
  assert int(restore_checkpoint(workdir / 'checkpoints', 30)[1]['step']) == 30


def test_a_signal_during_the_final_test_evaluation_stops_cleanly_and_the_restart_finishes(
    finished, tmp_path, monkeypatch):
  workdir = _copy(finished, tmp_path)
  sigterm_during_test_evaluation(monkeypatch)
  with pytest.raises(Preempted, match=r'during the final test evaluation.*step 30'):
    train_and_evaluate(digits_config(30), workdir)
  assert [r['split'] for r in metric_records(workdir)][-1] == 'eval'
  monkeypatch.undo()
  train_and_evaluate(digits_config(30), workdir)
  whole = tmp_path / 'whole'
  train_and_evaluate(digits_config(20), whole)
  train_and_evaluate(digits_config(30), whole)
  assert metric_records(workdir) == metric_records(whole)


def test_an_unusable_checkpoint_directory_is_found_before_anything_is_written(tmp_path):
  (tmp_path / 'checkpoints').write_text('a file where the directory should be')
  with pytest.raises(OSError, match=r'checkpoint directory .*checkpoints is not a writable'):
    train_and_evaluate(digits_config(20), tmp_path)
  assert not (tmp_path / 'config.json').exists() and not (tmp_path / 'metrics.jsonl').exists()


def test_resuming_a_finished_run_with_fewer_steps_says_it_trains_nothing(finished, tmp_path, capsys):
  workdir = _copy(finished, tmp_path)
  results = train_and_evaluate(digits_config(10), workdir)
  assert 'checkpoint is at step 20, at or past train.num_steps=10: nothing is trained' in (
      capsys.readouterr().out)
  assert results['compiled_train_shapes'] == 0


def test_a_longer_cosine_schedule_on_resume_is_announced(finished, tmp_path, capsys):
  workdir = _copy(finished, tmp_path)
  config = digits_config(30)
  config.optim.schedule = 'cosine'
  train_and_evaluate(config, workdir)
  assert 'learning rate is recomputed over 30 steps' in capsys.readouterr().out


def test_an_empty_workdir_name_or_a_bucket_url_is_refused(monkeypatch, tmp_path):
  from experiments.sweep import run_sweep
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError, match='name the directory'):
    train_and_evaluate(digits_config(10), '')
  # pathlib would make a local directory 'gs:/bucket/run' of it, silently.
  for start in (lambda w: train_and_evaluate(digits_config(10), w),
                lambda w: run_sweep(digits_config(10), [{'seed': 1}], w)):
    with pytest.raises(ValueError, match="workdir 'gs://bucket/run' is a URL.*GCS FUSE"):
      start('gs://bucket/run')
  assert not list(tmp_path.iterdir())


def test_a_config_json_with_the_field_names_before_the_config_groups_resumes(
    finished, tmp_path, capsys):
  from seqrnn.config import RENAMED
  from seqrnn.run import evaluate_checkpoint
  workdir = _copy(finished, tmp_path)
  old_names = {new: old for old, new in RENAMED.items()}
  saved = json.loads((workdir / 'config.json').read_text())
  assert set(old_names) <= set(saved)
  (workdir / 'config.json').write_text(json.dumps({old_names.get(k, k): v for k, v in saved.items()}))
  step, metrics = evaluate_checkpoint(workdir, 'latest')
  assert step == 20 and 0 <= metrics['accuracy'] <= 1
  train_and_evaluate(digits_config(30), workdir)
  out = capsys.readouterr().out
  assert 'resuming' in out and 'changed since the last start: train.num_steps 20 -> 30' in out
  assert not any(name in out for name in RENAMED)  # no renamed field reported as changed
  assert int(restore_checkpoint(workdir / 'checkpoints', 30)[1]['step']) == 30


def test_a_workdir_from_before_fields_were_added_resumes_and_reports_no_change_for_them(
    finished, tmp_path, capsys):
  """Fields gained since a run started (fixed ones too: a class-balanced plan, an
  imputation, a pooling) ran at their defaults: the resume is neither refused nor told
  that they changed."""
  workdir = _copy(finished, tmp_path)
  saved = json.loads((workdir / 'config.json').read_text())
  gained = ['data.balance_classes', 'data.uea.impute', 'data.uea.deviation', 'model.pooling',
            'model.conv.dilation_growth', 'train.label_smoothing']
  (workdir / 'config.json').write_text(json.dumps({k: v for k, v in saved.items()
                                                   if k not in gained}))
  train_and_evaluate(digits_config(30), workdir)
  out = capsys.readouterr().out
  assert 'resuming' in out and 'changed since the last start: train.num_steps 20 -> 30\n' in out
  assert int(restore_checkpoint(workdir / 'checkpoints', 30)[1]['step']) == 30
