"""Nothing lost, nothing silent: kills, half-written checkpoints, NaNs, determinism."""

import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from helpers import metric_records, restore_checkpoint
from experiments.configs import digits
from seqrnn import train_and_evaluate
from seqrnn.data import batching

ROOT = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = {'model.hidden_size': 16, 'data.batch_size': 32, 'optim.schedule': 'constant',
             'train.num_steps': 400, 'train.log_every_steps': 50,
             'train.eval_every_steps': 200, 'train.checkpoint_every_steps': 100}


def _config(**extra):
  config = digits.get_config()
  for field, value in {**OVERRIDES, **extra}.items():
    group, name = field.split('.')
    config[group][name] = value
  return config


def _launch(workdir):
  args = [sys.executable, '-m', 'experiments.main', '--config=experiments/configs/digits.py',
          f'--workdir={workdir}'] + [f'--config.{k}={v}' for k, v in OVERRIDES.items()]
  return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_between_checkpoints_then_restart_equals_the_uninterrupted_run(tmp_path):
  killed = tmp_path / 'killed'
  proc = _launch(killed)
  deadline = time.time() + 120
  while time.time() < deadline:  # kill once training is past a checkpoint
    records = metric_records(killed) if (killed / 'metrics.jsonl').exists() else []
    if records and records[-1]['step'] >= 150:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  last_logged = metric_records(killed)[-1]['step']
  assert last_logged < 400, 'the run finished before it could be killed'
  assert restore_checkpoint(killed / 'checkpoints')[0] <= last_logged

  restarted = _launch(killed)
  assert restarted.wait(timeout=300) == 0, restarted.stderr.read().decode()[-2000:]

  whole = tmp_path / 'whole'
  train_and_evaluate(_config(), whole)  # also: another process, the same bits
  jax.tree.map(np.testing.assert_array_equal, restore_checkpoint(whole / 'checkpoints')[1],
               restore_checkpoint(killed / 'checkpoints')[1])
  assert metric_records(killed) == metric_records(whole)  # no step missing or doubled


def test_a_half_written_checkpoint_is_not_taken_as_the_latest(tmp_path):
  config = _config(**{'train.num_steps': 200, 'train.keep_checkpoints': 3})
  train_and_evaluate(config, tmp_path)
  ckpts = tmp_path / 'checkpoints'
  # What a process killed while saving step 300 leaves behind: Orbax's temporary directory.
  shutil.copytree(ckpts / '200', ckpts / '300.orbax-checkpoint-tmp-1234')
  shutil.rmtree(ckpts / '300.orbax-checkpoint-tmp-1234' / 'state')
  results = train_and_evaluate(_config(**{'train.num_steps': 300, 'train.keep_checkpoints': 3}),
                               tmp_path)
  assert restore_checkpoint(ckpts)[0] == 300
  assert results['test']['accuracy'] > 0.5


def _nan_batch_at(monkeypatch, bad_step):
  """From here on, the batch of `bad_step` holds a NaN (as a bug upstream could make)."""
  real = batching.train_batch

  def train_batch(split, step, **kw):
    batch = real(split, step, **kw)
    if step == bad_step:
      batch['inputs'] = batch['inputs'].copy()
      batch['inputs'][0, 0, 0] = np.nan
    return batch

  monkeypatch.setattr(batching, 'train_batch', train_batch)


def test_a_nan_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch):
  _nan_batch_at(monkeypatch, 149)  # the batch of step 150 (steps count from 1)
  with pytest.raises(FloatingPointError, match=r'non-finite loss, gradient or update at step 150;'
                                               r'.*latest step 100\) are untouched'):
    train_and_evaluate(_config(**{'train.num_steps': 400}), tmp_path)
  step, state = restore_checkpoint(tmp_path / 'checkpoints')
  assert step == 100
  monkeypatch.undo()
  clean = tmp_path / 'clean'
  train_and_evaluate(_config(**{'train.num_steps': 100}), clean)
  jax.tree.map(np.testing.assert_array_equal, state, restore_checkpoint(clean / 'checkpoints')[1])


def test_skip_nonfinite_skips_and_counts_the_bad_update(tmp_path, monkeypatch):
  _nan_batch_at(monkeypatch, 149)
  train_and_evaluate(_config(**{'train.num_steps': 200, 'train.skip_nonfinite': True}), tmp_path)
  train = {r['step']: r for r in metric_records(tmp_path) if r['split'] == 'train'}
  assert train[100]['skipped_updates'] == 0 and train[150]['skipped_updates'] == 1
  assert np.isfinite(train[150]['loss'])
  _, state = restore_checkpoint(tmp_path / 'checkpoints')
  assert int(state['step']) == 200
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state['params']))


def test_the_best_eval_state_is_kept_apart(tmp_path):
  train_and_evaluate(_config(**{'train.num_steps': 400, 'train.eval_every_steps': 100}), tmp_path)
  evals = [r for r in metric_records(tmp_path) if r['split'] == 'eval']
  best_step = max(evals, key=lambda r: r['accuracy'])['step']  # first of equals
  assert restore_checkpoint(tmp_path / 'best')[0] == best_step
