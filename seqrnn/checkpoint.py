"""Orbax checkpoints of the train state under `WORKDIR/checkpoints`, verified on restore.

Orbax writes each checkpoint into a temporary directory and renames it when
complete, so a checkpoint cut short by a kill is never taken as the latest.
Bytes changed after that (a flipped bit, a truncated or deleted file) are
caught by a SHA-256 digest of the arrays, saved beside them and checked on
restore: a damaged checkpoint is moved aside and the one before it is used.

Damage is told apart from a mismatch: a checkpoint whose saved arrays have other
names, shapes or dtypes than the config's state (the config changed, or the data
it builds a vocabulary from) is refused with what differs, and nothing is moved.
"""

import hashlib
import logging
import pathlib
import sys
import traceback
import types

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from seqrnn import hosts
from seqrnn import workdir as workdir_lib


class _AskedForReadOnly(logging.Filter):
  """Drops Orbax's warnings that a manager is read only, which it logs for every read-only
  manager (evaluation, sweep reports): seqrnn asked for it, nothing to act on."""

  def filter(self, record):
    message = record.getMessage()
    return not ('Given directory is read only' in message
                or 'CheckpointManagerOptions.read_only=True' in message)


logging.getLogger('absl').addFilter(_AskedForReadOnly())


# A restore that fails leaves reads behind. Orbax restores in an event loop of its own and
# closes it as soon as one array's read fails, while TensorStore still reads the others
# (after one missing manifest, every array's read fails). Each of them then reports to the
# closed loop from a thread of its own, which Python prints as a "RuntimeError: Event loop
# is closed" traceback; asyncio logs the errors nobody awaits any more ("Task exception was
# never retrieved", or "Future ..."); and the reading coroutines left unfinished raise when
# they are collected ("Exception ignored in: <coroutine ...>"). Dozens of tracebacks in all,
# for a damage that `Checkpoints.restore` says in one line: these three are dropped,
# nothing else is.
_ORBAX = pathlib.Path(ocp.__file__).parent


def _is_abandoned_read(unraisable):
  """Whether an unraisable exception is a read a failed restore left: an Orbax coroutine
  collected unfinished, or a read reporting to its closed event loop."""
  if isinstance(unraisable.object, types.CoroutineType):
    return pathlib.Path(unraisable.object.cr_code.co_filename).is_relative_to(_ORBAX)
  if not (unraisable.object is None and unraisable.exc_type is RuntimeError
          and str(unraisable.exc_value) == 'Event loop is closed'):
    return False
  # The frames' function names alone: `traceback.extract_tb` would read their source files.
  frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(unraisable.exc_traceback)]
  return frames[-2:] == ['call_soon_threadsafe', '_check_closed']


class _UnawaitedReadError(logging.Filter):
  """Drops asyncio's log of a TensorStore read's error that nobody awaited."""

  def filter(self, record):
    error = record.exc_info[1] if record.exc_info else None
    return not (record.getMessage().startswith(('Task exception was never retrieved',
                                                'Future exception was never retrieved'))
                and 'tensorstore_spec=' in str(error))


logging.getLogger('asyncio').addFilter(_UnawaitedReadError())


def _quiet_abandoned_reads():
  """From now on, drops the unraisable exceptions of `_is_abandoned_read`; every other
  goes to the hook there was. Installed once, by the first restore (the hook is the
  process's: a library sets it only where it reads checkpoints)."""
  previous = sys.unraisablehook
  if getattr(previous, 'drops_abandoned_reads', False):
    return

  def hook(unraisable):
    if not _is_abandoned_read(unraisable):
      previous(unraisable)

  hook.drops_abandoned_reads = True
  sys.unraisablehook = hook


class NoUsableCheckpoint(RuntimeError):
  """Every checkpoint of a workdir failed to restore or to verify."""


class CheckpointMismatch(ValueError):
  """A readable checkpoint whose arrays do not fit the state of the config."""


class Checkpoints:
  """Saves and restores a TrainState's arrays, plus a small JSON dict of the
  loop's host-side state (e.g. the metrics of a half-finished logging window)."""

  def __init__(self, directory, keep, read_only=False):
    """`keep`: checkpoints kept (None: all). `read_only`: for looking at a run's
    checkpoints (e.g. to evaluate one): nothing is created, moved or deleted."""
    self.directory = pathlib.Path(directory)
    self.read_only = read_only
    if read_only and not self.directory.is_dir():
      raise FileNotFoundError(f'{self.directory} holds no checkpoints (not a directory)')
    # Handlers named up front, so that a checkpoint's metadata reads before any restore.
    self._manager = ocp.CheckpointManager(
        directory, item_handlers={'state': ocp.StandardCheckpointHandler(),
                                  'loop': ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                             read_only=read_only,
                                             enable_async_checkpointing=False))

  def latest_step(self):
    return self._manager.latest_step()

  def set_aside(self):
    """The checkpoints moved aside as damaged (directories STEP.unusable[N])."""
    if not self.directory.is_dir():
      return []
    return sorted(p.name for p in self.directory.iterdir() if '.unusable' in p.name)

  def restore(self, state, step=None):
    """(state with a checkpoint's arrays, its loop dict): checkpoint `step`, or the
    latest usable one. With no checkpoint at all: (state, {}) if `step` is None.

    A damaged checkpoint (its metadata or arrays cannot be read, or they fail the
    digest) is moved aside, said in one line, and the one before it is tried; a
    named `step`, or a read-only directory, raises NoUsableCheckpoint instead.
    One whose arrays do not fit `state` raises CheckpointMismatch, moving nothing.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if step is not None and step not in steps:
      raise NoUsableCheckpoint(f'{self.directory} has no checkpoint of step {step} '
                               f'(it has {sorted(steps)})')
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _arrays(state))
    target_shapes = _shapes(target)
    _quiet_abandoned_reads()  # before a restore can fail: its abandoned reads follow at once
    for s in steps if step is None else [step]:
      try:
        saved = self._manager.item_metadata(s)['state']
        saved = _shapes(getattr(saved, 'tree', saved))
      except Exception:  # noqa: BLE001 - unreadable metadata: the restore below tells
        saved = {}
      differences = _differences(saved, target_shapes) if saved else []
      # Every process takes the same branch (the restore is a collective).
      if hosts.any_process(bool(differences)):
        raise CheckpointMismatch(
            f'checkpoint {self.directory / str(s)} does not fit this config and data '
            f'({len(differences) or "its"} arrays differ: {"; ".join(differences[:4])}'
            f'{"; ..." if len(differences) > 4 else ""}); nothing was moved. The config or '
            f'the data it reads (e.g. a vocabulary built from edited files) changed since it '
            f'was saved: put them back, or use another --workdir.')
      try:
        restored = self._manager.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), loop=ocp.args.JsonRestore()))
        loop = dict(restored['loop'])
        if loop.get('sha256') != digest(restored['state']):
          raise ValueError('its arrays do not match the SHA-256 digest saved with them')
      except Exception as e:  # noqa: BLE001 - any damage makes the checkpoint unusable
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if step is not None or self.read_only:
          raise NoUsableCheckpoint(f'checkpoint {self.directory / str(s)} is unusable '
                                   f'({reason[:200]})') from e
        aside = self._move_aside(s)
        if hosts.is_main():
          sys.stderr.write(f'checkpoint {self.directory / str(s)} is unusable '
                           f'({reason[:200]}); moved to {aside.name}, trying the one before it\n')
        continue
      return state.replace(**restored['state']), loop
    if steps:
      raise NoUsableCheckpoint(
          f'none of the checkpoints in {self.directory} (steps {sorted(steps)}) could be '
          f'restored and verified; they were moved aside. Run again with '
          f'--restart_from_scratch to train from step 0 (the earlier metrics and best state '
          f'are kept aside), or use another --workdir.')
    return state, {}

  def _move_aside(self, step):
    """Renames checkpoint `step` to STEP.unusable[N] (process 0; the others wait).
    Returns the new path on process 0, None elsewhere."""
    aside = None
    if hosts.is_main():  # Orbax ignores a directory whose name is not a step
      aside = workdir_lib.keep_aside(self.directory / str(step), 'unusable')
    hosts.barrier(f'seqrnn-checkpoint-{step}-aside')
    self._manager.reload()
    return aside

  def save(self, state, loop):
    """Saves `state` at its step (once: a second save of one step is a no-op)."""
    step = int(state.step)
    if self._manager.latest_step() != step:
      arrays = _arrays(state)
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(arrays),
          loop=ocp.args.JsonSave({**loop, 'sha256': digest(arrays)})), force=True)
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


def digest(arrays):
  """SHA-256 of a pytree of arrays: every leaf's path, dtype, shape and bytes."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(hosts.local_value(arrays))[0]:
    a = np.asarray(leaf)
    h.update(f'{jax.tree_util.keystr(path)} {a.dtype} {a.shape}\n'.encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _dotted(path):
  """Orbax's name of an array: its tree path's keys joined by dots."""
  return '.'.join(str(getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k)))) for k in path)


def _shapes(tree):
  """{dotted name: (shape, dtype name)} of a tree of arrays or array metadata."""
  return {_dotted(path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _differences(saved, now):
  """Lines naming each array whose name, shape or dtype differs between two `_shapes`."""
  out = []
  for name in sorted(set(saved) | set(now)):
    a, b = saved.get(name), now.get(name)
    if a != b:
      out.append(f'{name}: saved {"absent" if a is None else f"{a[0]} {a[1]}"}, '
                 f'now {"absent" if b is None else f"{b[0]} {b[1]}"}')
  return out


def _arrays(state):
  # A fresh state's step is a Python int: saved and restored as int32 either way.
  return {'params': state.params, 'opt_state': state.opt_state,
          'step': jnp.asarray(state.step, jnp.int32)}
