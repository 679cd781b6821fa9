"""Many processes: real `jax.distributed` runs of two processes on this machine train,
evaluate and stop as one run on one process does; every example is counted once."""

import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from helpers import metric_records, xla_env
from seqrnn.data import batching

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAGS = ['--config=experiments/configs/digits.py', '--config.model.hidden_size=16',
         '--config.optim.schedule=constant', '--config.train.num_steps=100',
         '--config.train.log_every_steps=10', '--config.train.eval_every_steps=50',
         '--config.train.checkpoint_every_steps=50']


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch(workdir, num_processes, extra=None):
  """`experiments.main` on `num_processes` processes of 4 // num_processes CPU devices each;
  `extra`: more flags for each process (a list of lists)."""
  env = xla_env(4 // num_processes)
  port = _free_port()
  hosts = [] if num_processes == 1 else [
      f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={num_processes}']
  return [subprocess.Popen(
      [sys.executable, '-m', 'experiments.main', f'--workdir={workdir}', *FLAGS, *hosts]
      + ([f'--process_id={i}'] if hosts else []) + (extra[i] if extra else []),
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(num_processes)]


def _finish(processes):
  outs = [p.communicate(timeout=300) for p in processes]
  return [p.returncode for p in processes], outs


def _run(workdir, num_processes):
  codes, outs = _finish(_launch(workdir, num_processes))
  assert codes == [0] * num_processes, [err[-2000:] for _, err in outs]
  return outs


def _params(workdir):
  """(latest step, params) of the run's checkpoints, onto this process's one device
  (they were saved from 4 devices, over one or two processes)."""
  steps = [int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit()]
  path = workdir / 'checkpoints' / str(max(steps)) / 'state'
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(path)
  metadata = getattr(metadata, 'item_metadata', metadata)
  here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here), metadata)
  return max(steps), checkpointer.restore(path, target)['params']


def _metrics(records, split):
  return [r for r in records if r['split'] == split]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """The same run on one process of 4 devices and on two processes of 2 devices."""
  one, two = tmp_path_factory.mktemp('one'), tmp_path_factory.mktemp('two')
  return {'one': (one, _run(one, 1)), 'two': (two, _run(two, 2))}


def test_two_processes_train_and_evaluate_as_one_process_does(runs):
  (one, _), (two, outs) = runs['one'], runs['two']
  step_one, params_one = _params(one)
  step_two, params_two = _params(two)
  assert step_one == step_two == 100
  # The same maths; the cross-device sums run in another order.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               params_one, params_two)
  for split in ('eval', 'test'):
    for a, b in zip(_metrics(metric_records(one), split), _metrics(metric_records(two), split),
                    strict=True):
      assert a['step'] == b['step']
      np.testing.assert_allclose([a['accuracy'], a['loss']], [b['accuracy'], b['loss']],
                                 rtol=1e-3)
  # Only process 0 writes logs and prints.
  assert [r['step'] for r in metric_records(two)] == [r['step'] for r in metric_records(one)]
  assert len(list(two.glob('events.out.tfevents.*'))) == 1
  assert 'test: accuracy=' in outs[0][0]
  assert 'test:' not in outs[1][0] and 'data digits' not in outs[1][0]  # (gloo prints its own)


def test_a_sigterm_to_one_process_stops_both_at_one_step_and_the_restart_resumes_exactly(
    runs, tmp_path):
  two, _ = runs['two']
  workdir = tmp_path / 'stopped'
  processes = _launch(workdir, 2)
  deadline = time.time() + 120
  while time.time() < deadline:
    path = workdir / 'metrics.jsonl'
    if path.exists() and path.read_text().count('"train"') >= 2:
      break
    time.sleep(0.02)
  processes[1].send_signal(signal.SIGTERM)  # process 1 only
  codes, outs = _finish(processes)
  stopped = [int(err.split('stopped by a signal at step ')[1].split(';')[0]) for _, err in outs]
  assert codes == [1, 1] and stopped[0] == stopped[1] < 100, [err[-1500:] for _, err in outs]
  assert sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir())[-1] == stopped[0]

  _run(workdir, 2)
  jax.tree.map(np.testing.assert_array_equal, _params(two)[1], _params(workdir)[1])
  assert metric_records(workdir) == metric_records(two)


@pytest.mark.parametrize('process_count', [1, 2, 3])
def test_evaluation_shares_count_every_example_once_whatever_the_processes(process_count):
  n, batch_size = 23, 6  # 23 divides by neither
  split = {'inputs': np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 4, 1), np.float32),
           'lengths': np.random.default_rng(0).integers(1, 5, n).astype(np.int32),
           'labels': np.zeros(n, np.int32)}
  counts = np.zeros(n)
  for p in range(process_count):
    for batch in batching.eval_batches(split, batch_size=batch_size, buckets=(4,),
                                       process_index=p, process_count=process_count):
      ids = batch['inputs'][:, 0, 0].astype(int)
      np.add.at(counts, ids, batch['weights'])
  np.testing.assert_array_equal(counts, np.ones(n))


@pytest.mark.parametrize('process_count', [2, 4])
def test_training_shares_are_disjoint_and_cover_the_global_batch(process_count):
  n = 40
  split = {'inputs': np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 3, 1), np.float32),
           'lengths': np.full(n, 3, np.int32), 'labels': np.zeros(n, np.int32)}
  kw = dict(batch_size=8, buckets=(3,), seed=0)
  for step in range(6):
    whole = batching.train_batch(split, step, **kw)['inputs'][:, 0, 0]
    shares = [batching.train_batch(split, step, process_index=p, process_count=process_count,
                                   **kw)['inputs'][:, 0, 0] for p in range(process_count)]
    np.testing.assert_array_equal(np.concatenate(shares), whole)
    assert len(set(np.concatenate(shares))) == 8


def test_processes_given_different_configs_stop_at_once_naming_the_fields(tmp_path):
  codes, outs = _finish(_launch(tmp_path, 2, extra=[
      ['--config.model.dropout_rate=0.1'],
      ['--config.model.dropout_rate=0.3', '--config.train.num_steps=60']]))
  assert codes == [1, 1], [err[-1500:] for _, err in outs]
  for _, err in outs:
    assert ('the processes of this run were given different configs (model.dropout_rate: '
            'process 0 0.1, process 1 0.3; train.num_steps: process 0 100, process 1 60)') in err
  assert not (tmp_path / 'config.json').exists() and not (tmp_path / 'checkpoints').exists()


def test_a_vectorised_group_on_two_processes_trains_as_on_one(tmp_path):
  sweep = tmp_path / 'seeds.py'
  sweep.write_text("def get_sweep():\n  return [{'seed': 0}, {'seed': 1, "
                   "'optim.learning_rate': 3e-3}]\n")
  overrides = [f for f in FLAGS if 'num_steps' not in f] + ['--config.train.num_steps=40']
  outs = {}
  for n in (1, 2):
    env = xla_env(4 // n)
    hosts = [] if n == 1 else [f'--coordinator_address=127.0.0.1:{_free_port()}',
                               f'--num_processes={n}']
    processes = [subprocess.Popen(
        [sys.executable, '-m', 'experiments.sweep', f'--sweep={sweep}',
         f'--workdir={tmp_path / str(n)}', *overrides, *hosts]
        + ([f'--process_id={i}'] if hosts else []),
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(n)]
    codes, outs[n] = _finish(processes)
    assert codes == [0] * n, [err[-2000:] for _, err in outs[n]]
  assert 'vectorised, 2 models in one step' in outs[2][0][0]
  assert 'running' not in outs[2][1][0] and 'wrote' not in outs[2][1][0]  # process 0 prints
  for run in ('seed=0', 'seed=1,optim.learning_rate=0.003'):
    one, two = (metric_records(tmp_path / str(n) / 'runs' / run) for n in (1, 2))
    assert [(r['step'], r['split']) for r in one] == [(r['step'], r['split']) for r in two]
    for a, b in zip(one, two):
      np.testing.assert_allclose([a['accuracy'], a['loss']], [b['accuracy'], b['loss']],
                                 rtol=1e-3)


def test_local_device_ids_reach_jax_distributed_for_one_slurm_task_per_node():
  # JAX gives a SLURM task the GPU of its SLURM_LOCALID alone; --local_device_ids names the
  # node's GPUs instead. Here jax.distributed.initialize is replaced to show what it is given.
  script = ('import jax, sys\n'
            'from absl import app\n'
            'from experiments import distributed\n'
            'jax.distributed.initialize = lambda **kw: print(sorted(kw.items()))\n'
            'app.run(lambda argv: distributed.initialize(), sys.argv)\n')
  run = lambda *flags: subprocess.run([sys.executable, '-c', script, *flags], cwd=ROOT,
                                      capture_output=True, text=True, timeout=120)
  out = run('--distributed', '--local_device_ids=0,1,2,3')
  assert out.returncode == 0 and out.stdout.strip() == (
      "[('coordinator_address', None), ('local_device_ids', [0, 1, 2, 3]), "
      "('num_processes', None), ('process_id', None)]"), out.stderr
  assert "('local_device_ids', None)" in run('--distributed').stdout  # JAX's own choice
  out = run('--local_device_ids=0,1')
  assert out.returncode == 1 and 'is for a distributed run: add --distributed' in out.stderr
  out = run('--distributed', '--local_device_ids=gpu0')
  assert out.returncode == 1 and '--local_device_ids=gpu0: give device numbers' in out.stderr
