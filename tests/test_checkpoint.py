"""A damaged checkpoint is never restored: it is set aside and the one before it used."""

import shutil

import jax
import numpy as np
import pytest

from conftest import digits_config, metric_records, restore_checkpoint
from seqrnn import train_and_evaluate
from seqrnn.checkpoint import NoUsableCheckpoint


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A 20-step run with checkpoints at steps 10 and 20, and the same run to 30."""
  stopped, whole = tmp_path_factory.mktemp('stopped'), tmp_path_factory.mktemp('whole')
  train_and_evaluate(digits_config(20), stopped)
  train_and_evaluate(digits_config(30, keep_checkpoints=3), whole)
  return stopped, whole


def _largest_array_file(step_dir):
  files = [p for p in (step_dir / 'state').rglob('*') if p.is_file() and '/d/' in str(p)]
  return max(files, key=lambda p: p.stat().st_size)


def _flip_one_bit(step_dir):
  path = _largest_array_file(step_dir)
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0x10
  path.write_bytes(bytes(data))


def _truncate(step_dir):
  path = _largest_array_file(step_dir)
  path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 3])


DAMAGE = {
    'one flipped bit in an array file': _flip_one_bit,
    'a truncated array file': _truncate,
    'no manifest': lambda d: (d / 'state' / 'manifest.ocdbt').unlink(),
    'garbled array metadata': lambda d: (d / 'state' / '_METADATA').write_text('{"x'),
    'garbled loop state': lambda d: (d / 'loop' / 'metadata').write_text('not json'),
    'no array metadata': lambda d: (d / 'state' / '_METADATA').unlink(),
}


@pytest.mark.parametrize('damage', DAMAGE)
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(
    trained, tmp_path, capfd, damage):
  stopped, whole = trained
  workdir = tmp_path / 'run'
  shutil.copytree(stopped, workdir)
  DAMAGE[damage](workdir / 'checkpoints' / '20')
  train_and_evaluate(digits_config(30, keep_checkpoints=3), workdir)
  err = capfd.readouterr().err
  bad = [l for l in err.splitlines() if 'is unusable' in l]
  assert len(bad) == 1 and f'{workdir / "checkpoints" / "20"} is unusable' in bad[0], err
  assert 'Traceback' not in err
  assert (workdir / 'checkpoints' / '20.unusable').is_dir()  # kept, for a look
  # Steps 11-20 were redone from step 10: the same run as one never damaged.
  jax.tree.map(np.testing.assert_array_equal, restore_checkpoint(workdir / 'checkpoints', 30)[1],
               restore_checkpoint(whole / 'checkpoints', 30)[1])
  assert metric_records(workdir) == metric_records(whole)


def test_when_no_checkpoint_is_usable_the_run_stops_with_one_message(trained, tmp_path, capfd):
  stopped, _ = trained
  workdir = tmp_path / 'run'
  shutil.copytree(stopped, workdir)
  for step in ('10', '20'):
    _flip_one_bit(workdir / 'checkpoints' / step)
  metrics = (workdir / 'metrics.jsonl').read_text()
  with pytest.raises(NoUsableCheckpoint, match=r'none of the checkpoints .* \(steps \[10, 20\]\)'):
    train_and_evaluate(digits_config(30), workdir)
  assert 'Traceback' not in capfd.readouterr().err
  assert (workdir / 'metrics.jsonl').read_text() == metrics  # nothing overwritten
