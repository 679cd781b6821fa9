"""Vectorised runs: K models in one jitted step give what K runs one by one give."""

import jax
import numpy as np
import pytest
from helpers import (digits_config, metric_records, restore_checkpoint,
                     sigterm_during_test_evaluation)

from experiments.sweep import run_name, run_sweep
from seqrnn.config import set_field
from seqrnn.data import batching
from seqrnn.group import group_key
from seqrnn.run import train_runs

# Seeds x learning rates, and a learning rate so large that the run's update
# overflows at its second step: that run stops alone.
SWEEP = [{'seed': 0, 'optim.learning_rate': 1e-3, 'model.dropout_rate': 0.1},
         {'seed': 1, 'optim.learning_rate': 3e-3, 'model.dropout_rate': 0.4},
         {'seed': 2, 'optim.learning_rate': 1e38, 'model.dropout_rate': 0.1},
         {'seed': 3, 'optim.learning_rate': 3e-3, 'optim.grad_clip_norm': 0.05}]
# Two of them with zoneout and variational dropout too, at different rates (the scan loop).
SCAN_SWEEP = [{**o, 'model.zoneout_hidden': z, 'model.variational_dropout': v}
              for o, z, v in zip(SWEEP[:2], (0.1, 0.3), (0.2, 0.1))]


def _close(a, b):
  return np.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('sweep', [SWEEP, SCAN_SWEEP], ids=['fused', 'zoneout-variational'])
def test_a_vectorised_sweep_equals_its_runs_one_by_one_and_a_nan_stops_one_run(tmp_path, sweep):
  config = digits_config(20, eval_every_steps=10)
  lines = []
  together = run_sweep(config, sweep, tmp_path / 'together', say=lines.append)
  alone = run_sweep(config, sweep, tmp_path / 'alone', say=lambda _: None, vectorise=False)
  k = len(sweep)
  assert sum(f'vectorised, {k} models in one step' in l for l in lines) == k
  expected = ['failed' if o['optim.learning_rate'] > 1 else 'done' for o in sweep]
  assert [s['status'] for s in together.values()] == expected
  assert [s['status'] for s in alone.values()] == expected
  for name, status in together.items():
    if status['status'] == 'failed':
      assert 'non-finite loss, gradient or update at step 2' in status['error']
  for name, status in together.items():
    if status['status'] != 'done':
      continue
    a, b = (metric_records(tmp_path / d / 'runs' / name) for d in ('together', 'alone'))
    assert [(r['step'], r['split']) for r in a] == [(r['step'], r['split']) for r in b]
    for x, y in zip(a, b):
      assert all(_close(x[k], y[k]) for k in x if k != 'split'), (name, x, y)
    (_, pa), (_, pb) = (restore_checkpoint(tmp_path / d / 'runs' / name / 'checkpoints')
                        for d in ('together', 'alone'))
    assert all(jax.tree.leaves(jax.tree.map(_close, pa['params'], pb['params'])))
  # The sweep's second start finds every run done (the failed one is tried again, alone).
  lines = []
  run_sweep(config, sweep, tmp_path / 'together', say=lines.append)
  assert sum('done before, skipped' in l for l in lines) == expected.count('done')


def test_a_stopped_group_resumes_from_its_checkpoints_and_ends_where_it_would_have(tmp_path):
  # Trained 20 steps at once, and 10 then resumed to 20.
  configs = []
  for overrides in SWEEP[:2] + SWEEP[3:]:
    config = digits_config(20, eval_every_steps=10)
    for name, value in overrides.items():
      set_field(config, name, value)
    configs.append(config)
  train_runs(configs, [tmp_path / f'whole{i}' for i in range(3)])
  short = [c.copy_and_resolve_references() for c in configs]
  for c in short:
    c.train.num_steps = 10
  train_runs(short, [tmp_path / f'parts{i}' for i in range(3)])
  train_runs(configs, [tmp_path / f'parts{i}' for i in range(3)])
  for i in range(3):
    assert metric_records(tmp_path / f'whole{i}') == metric_records(tmp_path / f'parts{i}')
    (_, whole), (_, parts) = (restore_checkpoint(tmp_path / f'{d}{i}' / 'checkpoints')
                              for d in ('whole', 'parts'))
    jax.tree.map(np.testing.assert_array_equal, whole, parts)


def test_only_seeds_learning_rates_decays_clipping_and_regularisation_rates_vectorise():
  a, b = digits_config(30), digits_config(30)
  a.model.zoneout_hidden = 0.1
  a.optim.name = b.optim.name = 'adamw'
  b.seed, b.optim.learning_rate, b.optim.weight_decay = 5, 0.1, 0.2
  b.optim.grad_clip_norm, b.model.dropout_rate, b.model.zoneout_hidden = 3.0, 0.5, 0.4
  assert group_key(a) == group_key(b)
  b.model.dropout_rate = 0.0  # dropout off: another program
  assert group_key(a) != group_key(b)
  b.model.dropout_rate, b.model.hidden_size = 0.5, 64
  assert group_key(a) != group_key(b)
  with pytest.raises(ValueError, match='differ in .* alone'):
    train_runs([a, b], ['/tmp/never-a', '/tmp/never-b'])


def test_one_run_gets_its_values_as_arguments_and_trains_to_the_bit_as_with_them_built_in():
  # One program for runs that differ only in these values: a search's trials and a sweep's
  # runs one by one load it from the compilation cache. The step of a program that holds them
  # as constants is the reference (dropout included: its scale is computed alike).
  from seqrnn import prepare
  from seqrnn.group import hyper_step, stack, take, vectorised_step
  from seqrnn.train import train_step

  def steps(old_name=False, **values):
    config = digits_config(30)
    config.optim.name = 'adamw'
    for name, value in values.items():
      set_field(config, name, value)
    setup = prepare.setup([config])
    batch = {k: jax.numpy.asarray(v) for k, v in batching.train_batch(
        setup.dataset.splits['train'], 0, batch_size=config.data.batch_size,
        buckets=setup.buckets, seed=config.seed).items()}
    key_data = jax.random.key_data(prepare.seed_keys(config.seed)[1])
    step, hyper = hyper_step(setup.configs, setup.models[0])
    assert set(hyper) == {'learning_rate', 'grad_clip_norm', 'dropout_rate',
                          'variational_dropout', 'zoneout_hidden'}
    built_in = jax.jit(train_step)(setup.states[0], batch, jax.random.wrap_key_data(key_data))
    text = step.lower(setup.states[0], batch, key_data, hyper).as_text()
    if old_name:  # the name before hyper_step: a model axis also for one run
      with pytest.warns(DeprecationWarning, match='use seqrnn.group.hyper_step'):
        step, hyper = vectorised_step(setup.configs, setup.models[0])
      given = step(stack([setup.states[0]]), stack([batch]), key_data[None], hyper)
      return text, built_in, take(given, 0)
    return text, built_in, step(setup.states[0], batch, key_data, hyper)

  text_a, built_in, given = steps(**{'optim.learning_rate': 3e-3, 'optim.grad_clip_norm': 0.7,
                                     'model.dropout_rate': 0.1, 'model.zoneout_hidden': 0.15,
                                     'model.variational_dropout': 0.2})
  jax.tree.map(np.testing.assert_array_equal, built_in, given)
  # Dropout 0.33 and variational 0.29: rates whose 1 - rate rounds to another float32 from a
  # double than in float32.
  b = {'optim.learning_rate': 0.07, 'optim.weight_decay': 0.3, 'optim.grad_clip_norm': 0.05,
       'model.dropout_rate': 0.33, 'model.zoneout_hidden': 0.4, 'model.variational_dropout': 0.29}
  text_b, built_in, given = steps(seed=7, **b)
  jax.tree.map(np.testing.assert_array_equal, built_in, given)
  assert text_a == text_b
  _, built_in, given = steps(old_name=True, seed=7, **b)  # vmapped: close, as a group's runs
  assert all(jax.tree.leaves(jax.tree.map(_close, built_in, given)))
  text_c, _, _ = steps(**{'optim.grad_clip_norm': 0.7, 'model.dropout_rate': 0.1,
                          'model.zoneout_hidden': 0.15, 'model.variational_dropout': 0.2,
                          'model.hidden_size': 16})
  assert text_c != text_a  # another shape: another program


PAIR = [{'seed': 0, 'optim.learning_rate': 1e-3}, {'seed': 1, 'optim.learning_rate': 3e-3}]


@pytest.fixture(scope='module')
def pair(tmp_path_factory):
  """A finished vectorised sweep of two runs, 20 steps, checkpoints at 10 and 20."""
  workdir = tmp_path_factory.mktemp('pair')
  run_sweep(digits_config(20, eval_every_steps=10), PAIR, workdir, say=lambda _: None)
  return workdir


def _copy_as_killed(pair, tmp_path):
  """The pair's sweep as if killed before it could mark its runs done."""
  import json
  import shutil
  workdir = tmp_path / 'sweep'
  shutil.copytree(pair, workdir)
  for status in workdir.glob('runs/*/status.json'):
    status.write_text(json.dumps({**json.loads(status.read_text()), 'status': 'running'}))
  return workdir


@pytest.mark.parametrize('usable_left', [True, False], ids=['one before it', 'none left'])
def test_a_damaged_checkpoint_in_one_run_of_a_group_fails_that_run_alone(pair, tmp_path,
                                                                         usable_left):
  from test_checkpoint import _flip_one_bit
  workdir = _copy_as_killed(pair, tmp_path)
  damaged, sound = (workdir / 'runs' / run_name(o) for o in PAIR)
  _flip_one_bit(damaged / 'checkpoints' / '20')
  if not usable_left:
    import shutil
    shutil.rmtree(damaged / 'checkpoints' / '10')
  statuses = run_sweep(digits_config(20, eval_every_steps=10), PAIR, workdir, say=lambda _: None)
  assert statuses[sound.name]['status'] == 'done'
  if usable_left:  # steps 11-20 trained again (alone) from step 10: the run it would have been
    assert statuses[damaged.name]['status'] == 'done'
    again, before = metric_records(damaged), metric_records(pair / 'runs' / damaged.name)
    assert [(r['step'], r['split']) for r in again] == [(r['step'], r['split']) for r in before]
    for x, y in zip(again, before):
      assert all(_close(x[k], y[k]) for k in x if k != 'split'), (x, y)
  else:
    assert statuses[damaged.name]['status'] == 'failed'
    assert 'NoUsableCheckpoint' in statuses[damaged.name]['error']
    assert '--restart_from_scratch' in statuses[damaged.name]['error']


def test_a_group_stopped_during_its_final_test_evaluation_says_so_and_resumes(
    pair, tmp_path, monkeypatch):
  import json
  from seqrnn import Preempted
  workdir = _copy_as_killed(pair, tmp_path)
  sigterm_during_test_evaluation(monkeypatch)
  config = digits_config(20, eval_every_steps=10)
  with pytest.raises(Preempted, match=r'during the final test evaluation; the checkpoint of '
                                      r'step 20 is saved in each of the 2 runs'):
    run_sweep(config, PAIR, workdir, say=lambda _: None)
  for status in workdir.glob('runs/*/status.json'):
    assert json.loads(status.read_text())['status'] == 'stopped'
  monkeypatch.undo()
  statuses = run_sweep(config, PAIR, workdir, say=lambda _: None)
  assert [s['status'] for s in statuses.values()] == ['done', 'done']
  for o in PAIR:
    assert metric_records(workdir / 'runs' / run_name(o)) == metric_records(
        pair / 'runs' / run_name(o))


def test_a_group_resumed_past_its_steps_tests_the_checkpoints_step(pair, tmp_path):
  workdir = _copy_as_killed(pair, tmp_path)
  configs = []
  for overrides in PAIR:
    config = digits_config(10, eval_every_steps=10)
    for name, value in overrides.items():
      set_field(config, name, value)
    configs.append(config)
  train_runs(configs, [workdir / 'runs' / run_name(o) for o in PAIR])
  for o in PAIR:
    (test,) = [r for r in metric_records(workdir / 'runs' / run_name(o)) if r['split'] == 'test']
    assert test['step'] == 20
