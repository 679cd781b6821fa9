"""Vectorised runs: K models in one jitted step give what K runs one by one give."""

import jax
import numpy as np
import pytest
from conftest import digits_config, metric_records, restore_checkpoint

from experiments.sweep import run_sweep
from seqrnn.config import set_field
from seqrnn.group import group_key, train_group

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
  train_group(configs, [tmp_path / f'whole{i}' for i in range(3)], say=lambda _: None)
  short = [c.copy_and_resolve_references() for c in configs]
  for c in short:
    c.train.num_steps = 10
  train_group(short, [tmp_path / f'parts{i}' for i in range(3)], say=lambda _: None)
  train_group(configs, [tmp_path / f'parts{i}' for i in range(3)], say=lambda _: None)
  for i in range(3):
    assert metric_records(tmp_path / f'whole{i}') == metric_records(tmp_path / f'parts{i}')
    (_, whole), (_, parts) = (restore_checkpoint(tmp_path / f'{d}{i}' / 'checkpoints')
                              for d in ('whole', 'parts'))
    jax.tree.map(np.testing.assert_array_equal, whole, parts)


def test_only_seeds_learning_rates_decays_clipping_and_regularisation_rates_vectorise():
  a, b = digits_config(30), digits_config(30)
  a.model.zoneout_hidden = 0.1
  b.seed, b.optim.learning_rate, b.optim.weight_decay = 5, 0.1, 0.2
  b.optim.grad_clip_norm, b.model.dropout_rate, b.model.zoneout_hidden = 3.0, 0.5, 0.4
  assert group_key(a) == group_key(b)
  b.model.dropout_rate = 0.0  # dropout off: another program
  assert group_key(a) != group_key(b)
  b.model.dropout_rate, b.model.hidden_size = 0.5, 64
  assert group_key(a) != group_key(b)
  with pytest.raises(ValueError, match='differ in .* alone'):
    train_group([a, b], ['/tmp/never-a', '/tmp/never-b'])
