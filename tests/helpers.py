"""What the tests share: small configs, batches, and readers of a run's files."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from seqrnn.config import default_config

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


def xla_env(devices):
  """os.environ for a subprocess on `devices` fake CPU devices (XLA_FLAGS kept: conftest's)."""
  return dict(os.environ, XLA_FLAGS=' '.join(filter(None, [
      os.environ.get('XLA_FLAGS'), f'--xla_force_host_platform_device_count={devices}'])))


def digits_config(num_steps, **train):
  """Digits with a small GRU, a constant learning rate (so a run extended later
  equals a longer run), logs every 10 steps, checkpoints every 10."""
  from experiments.configs import digits
  config = digits.get_config()
  config.model.hidden_size = 32
  config.optim.schedule = 'constant'
  config.train.num_steps = num_steps
  config.train.log_every_steps = 10
  config.train.eval_every_steps = 50
  config.train.checkpoint_every_steps = 10
  for k, v in train.items():
    config.train[k] = v
  return config


def metric_records(workdir):
  """metrics.jsonl of `workdir` without the timing field."""
  lines = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [{k: v for k, v in json.loads(l).items() if k != 'steps_per_s'} for l in lines]


def restore_checkpoint(directory, step=None):
  """(step, the train state's arrays as saved) of an Orbax checkpoint directory;
  the latest step unless `step` is given."""
  import orbax.checkpoint as ocp
  with ocp.CheckpointManager(directory) as m:
    step = m.latest_step() if step is None else step
    return step, m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']


def tiny_model_config(cell='gru', **overrides):
  c = default_config().model
  c.cell = cell
  c.hidden_size = 8
  c.num_layers = 2
  c.words.embed_dim = 6
  for k, v in overrides.items():
    (c.words if k in c.words else c)[k] = v
  return c


def random_batch(seed, batch=4, time=7, features=5, num_classes=3, task='classification',
                 lengths=None):
  rng = np.random.default_rng(seed)
  lengths = np.asarray(lengths if lengths is not None else rng.integers(1, time + 1, batch), np.int32)
  inputs = rng.normal(size=(batch, time, features)).astype(np.float32)
  shape = (batch,) if task == 'classification' else (batch, time)
  return {'inputs': inputs, 'lengths': lengths,
          'labels': rng.integers(0, num_classes, shape).astype(np.int32)}


def sigterm_during_test_evaluation(monkeypatch):
  """From here on, evaluating the digits test split raises SIGTERM at its first batch."""
  import signal
  from seqrnn.data import batching
  real = batching.eval_batches

  def signalled(split, **kw):
    if len(split['lengths']) == 269:  # the test split of digits
      signal.raise_signal(signal.SIGTERM)
    return real(split, **kw)

  monkeypatch.setattr(batching, 'eval_batches', signalled)


def assert_gradient_is_finite_differences(loss, params, eps=1e-6, rtol=1e-7):
  """jax.grad(loss) at `params` (float64, under jax.enable_x64) along a fixed direction
  against the central difference (loss(p + eps d) - loss(p - eps d)) / (2 eps)."""
  grads = jax.grad(loss)(params)
  direction = jax.tree.map(lambda a: jnp.sin(jnp.arange(a.size) + 1.0).reshape(a.shape), params)
  shifted = lambda k: loss(jax.tree.map(lambda a, d: a + k * eps * d, params, direction))
  numeric = (shifted(1) - shifted(-1)) / (2 * eps)
  analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads),
                                                  jax.tree.leaves(direction)))
  np.testing.assert_allclose(analytic, numeric, rtol=rtol)


def tensorboard_tags(directory):
  """The summary tags of the TensorBoard event files in `directory` (read as TFRecords)."""
  import struct
  from tensorboardX.proto import event_pb2
  tags = set()
  for path in pathlib.Path(directory).glob('events.out.tfevents.*'):
    data, i = path.read_bytes(), 0
    while i < len(data):  # length (8 bytes), its CRC (4), the event, its CRC (4)
      (n,) = struct.unpack('<Q', data[i:i + 8])
      tags |= {v.tag for v in event_pb2.Event.FromString(data[i + 12:i + 12 + n]).summary.value}
      i += 16 + n
  return tags


def two_sweep_processes(*flags):
  """Runs `python -m experiments.sweep FLAGS` (digits' debug config) in two processes started
  together, from the repository's root; both must exit 0. Returns their (stdout, stderr)."""
  command = [sys.executable, '-m', 'experiments.sweep',
             '--config=experiments/configs/digits.py:debug', *flags]
  processes = [subprocess.Popen(command, cwd=pathlib.Path(__file__).resolve().parents[1],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in processes]
  assert [p.returncode for p in processes] == [0, 0], [err[-1500:] for _, err in outs]
  return outs
