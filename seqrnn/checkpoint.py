"""Orbax checkpoints of the train state under `WORKDIR/checkpoints`, verified on restore.

Orbax writes each checkpoint into a temporary directory and renames it when
complete, so a checkpoint cut short by a kill is never taken as the latest.
Bytes changed after that (a flipped bit, a truncated or deleted file) are
caught by a SHA-256 digest of the arrays, saved beside them and checked on
restore: an unusable checkpoint is moved aside and the one before it is used.
"""

import hashlib
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from seqrnn import hosts


class NoUsableCheckpoint(RuntimeError):
  """Every checkpoint of a workdir failed to restore or to verify."""


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
    self._manager = ocp.CheckpointManager(
        directory, item_names=('state', 'loop'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                             read_only=read_only,
                                             enable_async_checkpointing=False))

  def latest_step(self):
    return self._manager.latest_step()

  def restore(self, state, step=None):
    """(state with a checkpoint's arrays, its loop dict): checkpoint `step`, or the
    latest usable one. With no checkpoint at all: (state, {}) if `step` is None.

    An unusable checkpoint (it fails to restore, or its arrays fail the digest)
    is moved aside, said in one line, and the one before it is tried; a named
    `step`, or a read-only directory, raises NoUsableCheckpoint instead.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if step is not None and step not in steps:
      raise NoUsableCheckpoint(f'{self.directory} has no checkpoint of step {step} '
                               f'(it has {sorted(steps)})')
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _arrays(state))
    for s in steps if step is None else [step]:
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
          f'restored and verified; they were moved aside. Move {self.directory} away to '
          f'start the run from scratch, or use another --workdir.')
    return state, {}

  def _move_aside(self, step):
    """Renames checkpoint `step` to STEP.unusable[N] (process 0; the others wait).
    Returns the new path on process 0, None elsewhere."""
    aside = None
    if hosts.is_main():
      path = self.directory / str(step)
      aside, n = path.with_name(f'{step}.unusable'), 1
      while aside.exists():
        n += 1
        aside = path.with_name(f'{step}.unusable{n}')
      path.rename(aside)  # Orbax ignores a directory whose name is not a step
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


def _arrays(state):
  # A fresh state's step is a Python int: saved and restored as int32 either way.
  return {'params': state.params, 'opt_state': state.opt_state,
          'step': jnp.asarray(state.step, jnp.int32)}
