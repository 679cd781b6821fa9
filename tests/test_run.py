"""End to end: train_and_evaluate on real data, its files, and resuming."""

import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from helpers import digits_config, metric_records, restore_checkpoint, tensorboard_tags
from seqrnn import Preempted, train_and_evaluate
from seqrnn.data import batching
from seqrnn.prepare import trim_compilation_cache, use_compilation_cache


def test_digits_training_beats_chance_and_writes_its_files(tmp_path):
  config = digits_config(150)
  results = train_and_evaluate(config, tmp_path)
  assert results['test']['accuracy'] > 0.8  # chance is 0.1
  assert results['compiled_train_shapes'] == 1
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['model.hidden_size'] == 32
  records = metric_records(tmp_path)
  assert [r['step'] for r in records if r['split'] == 'train'] == list(range(10, 151, 10))
  assert [r['step'] for r in records if r['split'] == 'eval'] == [50, 100, 150]
  assert [r['split'] for r in records if r['step'] == 150] == ['train', 'eval', 'test',
                                                               'test_best']
  tags = tensorboard_tags(tmp_path)
  assert {'train/loss', 'train/learning_rate', 'eval/accuracy', 'test/accuracy'} <= tags
  # The config and the final metrics for the HParams tab, which compares a sweep's runs.
  assert {'_hparams_/experiment', '_hparams_/session_start_info',
          'hparam/test_accuracy'} <= tensorboard_tags(tmp_path / 'hparams')
  peak = config.optim.learning_rate  # each logging window's mean of the schedule
  assert all(0 < r['learning_rate'] <= peak * (1 + 1e-6) for r in records if r['split'] == 'train')
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == [140, 150]
  with ocp.CheckpointManager(tmp_path / 'checkpoints') as m:
    loop = m.restore(150, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))['loop']
  assert loop['data_position'] == 150 and len(loop['rng']) == 2  # the dropout key's data


def test_sigterm_saves_the_current_step_and_the_resumed_run_equals_an_uninterrupted_one(
    tmp_path, monkeypatch):
  whole, parts = tmp_path / 'whole', tmp_path / 'parts'
  train_and_evaluate(digits_config(40), whole)

  real_train_batch = batching.train_batch

  def batch_then_sigterm(split, step, **kw):
    if step == 24:  # the prefetch thread asks for it a little ahead of the loop
      signal.raise_signal(signal.SIGTERM)
    return real_train_batch(split, step, **kw)

  monkeypatch.setattr(batching, 'train_batch', batch_then_sigterm)
  with pytest.raises(Preempted, match=r'stopped by a signal at step (\d+)') as stopped:
    train_and_evaluate(digits_config(40), parts)
  stopped_at = int(re.search(r'step (\d+)', str(stopped.value)).group(1))
  assert 20 < stopped_at < 40
  assert max(int(p.name) for p in (parts / 'checkpoints').iterdir()) == stopped_at
  monkeypatch.undo()

  train_and_evaluate(digits_config(40), parts)
  jax.tree.map(np.testing.assert_array_equal,
               restore_checkpoint(whole / 'checkpoints', 40)[1]['params'],
               restore_checkpoint(parts / 'checkpoints', 40)[1]['params'])
  assert metric_records(parts) == metric_records(whole)  # no step missing, doubled or different


def test_resuming_a_workdir_with_other_shapes_is_refused(tmp_path):
  train_and_evaluate(digits_config(10), tmp_path)
  config = digits_config(20)
  config.model.hidden_size = 16
  with pytest.raises(ValueError, match=r'model.hidden_size: saved 32, now 16'):
    train_and_evaluate(config, tmp_path)


@pytest.mark.parametrize('cell', ['experiments.custom_cell.MinimalRNNCell', 'flax_lstm'])
def test_a_custom_cell_and_a_flax_cell_train_from_the_command_line(tmp_path, cell):
  out = subprocess.run(
      [sys.executable, '-m', 'experiments.main', '--config=experiments/configs/digits.py',
       f'--workdir={tmp_path}', f'--config.model.cell={cell}', '--config.model.hidden_size=32',
       '--config.train.num_steps=150', '--config.train.eval_every_steps=150'],
      cwd=pathlib.Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  accuracy = float(re.search(r'^test: accuracy=([\d.]+)', out.stdout, re.M).group(1))
  assert accuracy > 0.6, out.stdout  # chance is 0.1
  # Output to a pipe, as to a log file: a plain line a log step, no progress bar's \r.
  assert '\r' not in out.stdout + out.stderr
  assert re.search(r'^train step 150/150: loss=[\d.]+ accuracy=[\d.]+ \([\d.]+ steps/s, 0 s '
                   r'left\)$', out.stdout, re.M), out.stdout


def test_compiled_steps_go_to_the_configured_persistent_cache(tmp_path):
  config = digits_config(10)
  config.train.compilation_cache = str(tmp_path / 'cache')
  train_and_evaluate(config, tmp_path / 'run')
  entries = [p.name for p in (tmp_path / 'cache').iterdir()]
  assert any(name.startswith('jit_train_step') for name in entries), entries


def test_the_cache_is_trimmed_to_its_limit_least_recently_used_first(tmp_path):
  def entry(name, size, used):  # `used`: seconds since the epoch it was last read
    path = tmp_path / name
    path.write_bytes(b'x' * size)
    os.utime(path, (used, used))
    return name
  old, middle, new = (entry(f'jit_step-{key}-cache', 400, used)
                      for key, used in (('a', 1000), ('b', 2000), ('c', 3000)))
  times = [entry(f'jit_step-{key}-atime', 8, 3000) for key in 'ac']  # JAX's, with its limit on
  other = entry('notes.txt', 10_000, 0)  # not JAX's: neither counted nor deleted
  assert trim_compilation_cache(str(tmp_path), 900) == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted([middle, new, times[1], other])
  assert trim_compilation_cache(str(tmp_path), 800) == 0
  assert trim_compilation_cache(str(tmp_path), 0) == 2
  assert [p.name for p in tmp_path.iterdir()] == [other]
  assert trim_compilation_cache(str(tmp_path / 'absent'), 0) == 0


def test_a_run_trims_its_cache_before_it_compiles(tmp_path):
  cache = tmp_path / 'cache'
  cache.mkdir()
  (cache / 'jit_stale-0-cache').write_bytes(b'x' * 2**20)
  directory = jax.config.jax_compilation_cache_dir
  try:
    use_compilation_cache(str(cache), max_gib=0.5 / 2**10)  # half a MiB
    assert list(cache.iterdir()) == []
    (cache / 'jit_stale-0-cache').write_bytes(b'x' * 2**20)
    use_compilation_cache(str(cache), max_gib=0)  # no limit
    assert [p.name for p in cache.iterdir()] == ['jit_stale-0-cache']
  finally:  # conftest's: every program, in the suite's directory
    use_compilation_cache(directory)


def test_the_cache_keeps_programs_of_0_2_s_and_over_or_a_lower_threshold_already_set(tmp_path):
  name = 'jax_persistent_cache_min_compile_time_secs'
  directory, threshold = jax.config.jax_compilation_cache_dir, getattr(jax.config, name)
  try:
    for before, after in ((1.0, 0.2), (0.5, 0.2), (0.1, 0.1), (0.0, 0.0)):  # JAX's default: 1
      jax.config.update(name, before)
      use_compilation_cache(str(tmp_path))
      assert (jax.config.jax_compilation_cache_dir, getattr(jax.config, name)) == (
          str(tmp_path), after)
  finally:  # conftest's: every program, in the suite's directory
    use_compilation_cache(directory)
    jax.config.update(name, threshold)


def test_the_ud_tagger_trains_on_any_treebank_directory_and_reports_unseen_words(tmp_path):
  from experiments.configs import ud_pos
  from seqrnn.data import conllu
  sentences = [s for p in conllu.turkish_files() for s in conllu.read_conllu(p)][:300]
  for name, part in (('train', sentences[:200]), ('dev', sentences[200:250]),
                     ('test', sentences[250:])):
    lines = ['\n'.join(f'{i + 1}\t{w}\t_\t{t}\t_\t_\t_\t_\t_\t_' for i, (w, t) in
                       enumerate(zip(*s))) + '\n' for s in part]
    (tmp_path / f'xx_tb-ud-{name}.conllu').write_text('\n'.join(lines))
  config = ud_pos.get_config('debug')
  config.data.path, config.data.num_buckets = str(tmp_path), '1'  # one compiled shape
  results = train_and_evaluate(config, tmp_path / 'run')
  assert {'accuracy', 'unknown_accuracy', 'sequence_accuracy'} <= set(results['test'])
  assert results['test']['accuracy'] > 0.3  # 14 tags; the most frequent is about 0.3
  # Refused for want of data, a run leaves nothing behind (no lock, no empty directories).
  with pytest.raises(FileNotFoundError, match='data set conllu needs config.data.path: a '
                                              'directory holding'):
    train_and_evaluate(ud_pos.get_config('debug'), tmp_path / 'refused')
  assert not (tmp_path / 'refused').exists()


def test_the_best_eval_steps_state_is_tested_too_and_any_saved_state_can_be_evaluated(tmp_path,
                                                                                     caplog):
  from seqrnn.checkpoint import NoUsableCheckpoint
  from seqrnn.run import evaluate_checkpoint
  config = digits_config(20, eval_every_steps=20)
  train_and_evaluate(config, tmp_path)  # 38% at step 20, where chance is 10%
  # Resumed at a learning rate that wrecks it (12-24% at steps 40 and 60, measured): the best
  # eval step is not the last. (Not a rate on the edge of divergence from the start: where
  # such a run's best step falls turned on rounding, which XLA's optimisation level changed.)
  config.train.num_steps, config.optim.learning_rate = 60, 3.0
  results = train_and_evaluate(config, tmp_path)
  records = metric_records(tmp_path)
  evals = [r for r in records if r['split'] == 'eval']
  best = max(evals, key=lambda r: r['accuracy'])
  (test_best,) = [r for r in records if r['split'] == 'test_best']
  assert test_best['step'] == best['step'] == results['best_step'] == 20
  assert [r['step'] for r in evals] == [20, 40, 60]
  with caplog.at_level(logging.WARNING):
    step, metrics = evaluate_checkpoint(tmp_path, 'best')
  assert not caplog.records, caplog.records  # Orbax's warnings that what was asked for is so
  assert step == best['step'] and metrics['accuracy'] == test_best['accuracy']
  test_last = [r for r in records if r['split'] == 'test'][-1]  # each start tested its last
  assert test_last['step'] == 60
  assert evaluate_checkpoint(tmp_path, 'latest')[1]['accuracy'] == test_last['accuracy']
  step, metrics = evaluate_checkpoint(tmp_path, '50', split='eval')
  assert step == 50
  with pytest.raises(NoUsableCheckpoint, match=r'has no checkpoint of step 7 \(it has \[50, 60\]\)'):
    evaluate_checkpoint(tmp_path, '7')
