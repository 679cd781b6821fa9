"""Data parallelism: the batch sharded over several (fake CPU) devices gives the same run."""

import json
import pathlib
import subprocess
import sys

import numpy as np

from helpers import xla_env

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
import jax
from experiments.configs import digits
from seqrnn import train_and_evaluate
config = digits.get_config()
config.model.hidden_size = 16
config.train.num_steps = 30
config.train.eval_every_steps = config.train.checkpoint_every_steps = 30
results = train_and_evaluate(config, sys.argv[1])
print(json.dumps({'devices': jax.device_count(), 'test': results['test']}))
"""


def _run(workdir, devices):
  env = xla_env(devices)
  out = subprocess.run([sys.executable, '-c', SCRIPT, str(workdir)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_training_sharded_over_four_devices_matches_one_device(tmp_path):
  one, four = _run(tmp_path / 'one', 1), _run(tmp_path / 'four', 4)
  assert (one['devices'], four['devices']) == (1, 4)
  # The same maths; only the order of the cross-device sums differs.
  for name in ('loss', 'accuracy'):
    np.testing.assert_allclose(four['test'][name], one['test'][name], rtol=1e-3)
