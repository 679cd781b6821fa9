"""A damaged checkpoint is never restored: it is set aside and the one before it used."""

import asyncio
import logging
import shutil
import sys
import types

import jax
import numpy as np
import pytest

from helpers import digits_config, metric_records, restore_checkpoint
from seqrnn import checkpoint, train_and_evaluate
from seqrnn.checkpoint import CheckpointMismatch, NoUsableCheckpoint


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


# The reads a failed restore leaves behind (seqrnn.checkpoint) must not reach the user as
# tracebacks: pytest makes each unraisable exception a PytestUnraisableExceptionWarning, here
# an error, and asyncio's logs of them would be in `err`.
@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')
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


def _coroutine_defined_in(path):
  namespace = {}
  exec(compile('async def read(): pass', str(path), 'exec'), namespace)
  return namespace['read']()


def test_only_reads_a_failed_restore_left_are_kept_from_the_user(monkeypatch):
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', seen.append)
  checkpoint._quiet_abandoned_reads()
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)  # what each read left running does when it ends
  except RuntimeError as e:
    closed = e
  orbax_read = _coroutine_defined_in(checkpoint._ORBAX / 'reads.py')
  our_read = _coroutine_defined_in(__file__)

  def unraisable(exc, obj=None):
    return types.SimpleNamespace(exc_type=type(exc), exc_value=exc,
                                 exc_traceback=exc.__traceback__, err_msg=None, object=obj)

  sys.unraisablehook(unraisable(closed))  # dropped
  sys.unraisablehook(unraisable(closed, obj=loop))  # from an object's finaliser: shown
  elsewhere = RuntimeError('Event loop is closed')  # the same words raised elsewhere: shown
  sys.unraisablehook(unraisable(elsewhere))
  collected = ValueError('a coroutine collected unfinished')
  sys.unraisablehook(unraisable(collected, obj=orbax_read))  # Orbax's: dropped
  sys.unraisablehook(unraisable(collected, obj=our_read))  # anyone else's: shown
  orbax_read.close(), our_read.close()
  assert [(u.exc_value, u.object) for u in seen] == [(closed, loop), (elsewhere, None),
                                                     (collected, our_read)]


def test_only_read_errors_nobody_awaits_are_kept_from_the_log():
  def record(message, error):
    return logging.LogRecord('asyncio', logging.ERROR, __file__, 1, message, None,
                             (type(error), error, None))

  unawaited = checkpoint._UnawaitedReadError()
  read_error = ValueError("NOT_FOUND: Error opening \"zarr\" driver [tensorstore_spec='{}']")
  assert not unawaited.filter(record('Task exception was never retrieved', read_error))
  assert not unawaited.filter(record('Future exception was never retrieved', read_error))
  assert unawaited.filter(record('Task exception was never retrieved', ValueError('other')))
  assert unawaited.filter(record('Exception in callback', read_error))


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


def _treebank_run(tmp_path, train_text, num_steps):
  """A small tagger on the treebank in tmp_path/ud (train_text as its training file)."""
  from experiments.configs import ud_pos
  from test_data import CONLLU
  (tmp_path / 'ud').mkdir(exist_ok=True)
  for name, text in (('train', train_text), ('dev', CONLLU), ('test', CONLLU)):
    (tmp_path / 'ud' / f'xx-ud-{name}.conllu').write_text(text)
  config = ud_pos.get_config('debug')
  config.data.path, config.model.words.char_encoder = str(tmp_path / 'ud'), 'none'
  config.data.batch_size = config.data.eval_batch_size = 2
  config.train.num_steps = num_steps
  return train_and_evaluate(config, tmp_path / 'run')


def test_a_checkpoint_that_no_longer_fits_the_data_is_refused_naming_what_differs(tmp_path):
  from test_data import CONLLU
  _treebank_run(tmp_path, CONLLU * 3, 10)
  listing = sorted(p.name for p in (tmp_path / 'run' / 'checkpoints').iterdir())
  metrics = (tmp_path / 'run' / 'metrics.jsonl').read_text()
  # The training file edited in place: a new word seen twice, so the vocabulary grows by one.
  edited = CONLLU * 3 + '# sent_id = 3\n1\tyeni\tyeni\tADJ\tJJ\t_\t0\troot\t_\t_\n\n' * 2
  with pytest.raises(CheckpointMismatch, match=r'checkpoint .*checkpoints/10 does not fit this '
                     r'config and data \(\d+ arrays differ: .*embedding: saved \((\d+), 16\) '
                     r'float32, now \((?!\1)\d+, 16\) float32.*nothing was moved'):
    _treebank_run(tmp_path, edited, 20)
  assert sorted(p.name for p in (tmp_path / 'run' / 'checkpoints').iterdir()) == listing
  assert (tmp_path / 'run' / 'metrics.jsonl').read_text() == metrics
  _treebank_run(tmp_path, CONLLU * 3, 20)  # the file put back: the run resumes
  assert restore_checkpoint(tmp_path / 'run' / 'checkpoints')[0] == 20


def test_a_run_whose_checkpoints_were_all_set_aside_is_not_restarted_unless_asked(
    trained, tmp_path, capfd):
  stopped, _ = trained
  workdir = tmp_path / 'run'
  shutil.copytree(stopped, workdir)
  shutil.rmtree(workdir / 'checkpoints' / '10')  # keep_checkpoints=1: step 20 alone
  _flip_one_bit(workdir / 'checkpoints' / '20')
  metrics = (workdir / 'metrics.jsonl').read_text()
  with pytest.raises(NoUsableCheckpoint, match='were moved aside.*--restart_from_scratch'):
    train_and_evaluate(digits_config(30), workdir)
  with pytest.raises(NoUsableCheckpoint, match=r'holds only checkpoints set aside as damaged '
                                               r'\(20.unusable\): nothing was trained'):
    train_and_evaluate(digits_config(30), workdir)
  assert (workdir / 'metrics.jsonl').read_text() == metrics
  train_and_evaluate(digits_config(30), workdir, restart_from_scratch=True)
  assert (workdir / 'metrics.jsonl.before_restart').read_text() == metrics
  assert (workdir / 'best.before_restart').is_dir()
  assert metric_records(workdir)[0]['step'] == 10  # a new run from step 0
  assert restore_checkpoint(workdir / 'checkpoints')[0] == 30
  with pytest.raises(ValueError, match=r'holds a usable checkpoint \(step 30\)'):
    train_and_evaluate(digits_config(40), workdir, restart_from_scratch=True)


def test_a_restored_state_compiles_to_the_fresh_states_program(trained):
  """So a resume finds the train step in the persistent compilation cache: JAX keys it on
  the lowered program, which a weakly typed fresh step counter (an int) once changed."""
  from seqrnn import prepare
  from seqrnn.checkpoint import Checkpoints
  from seqrnn.data import batching
  from seqrnn.train import train_step
  stopped, _ = trained
  config = digits_config(20)
  setup = prepare.setup([config])
  checkpoints = Checkpoints((stopped / 'checkpoints').absolute(), None, read_only=True)
  try:
    restored, _ = checkpoints.restore(setup.states[0], None)
  finally:
    checkpoints.close()
  batch = batching.train_batch(setup.dataset.splits['train'], 0, batch_size=64,
                               buckets=setup.buckets, seed=0)
  lower = lambda state: jax.jit(train_step).lower(state, batch, jax.random.key(0)).as_text()
  assert lower(restored) == lower(setup.states[0])
