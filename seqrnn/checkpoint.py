"""Orbax checkpoints of the train state under `WORKDIR/checkpoints`.

Orbax writes each checkpoint into a temporary directory and renames it when
complete, so a checkpoint cut short by a kill is never taken as the latest.
"""

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """Saves and restores a TrainState's arrays, plus a small JSON dict of the
  loop's host-side state (e.g. the metrics of a half-finished logging window)."""

  def __init__(self, directory, keep):
    self._manager = ocp.CheckpointManager(
        directory, item_names=('state', 'loop'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=False))

  def latest_step(self):
    return self._manager.latest_step()

  def restore_latest(self, state):
    """(state with the latest checkpoint's arrays, loop dict), or (state, {}) if none."""
    step = self._manager.latest_step()
    if step is None:
      return state, {}
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _arrays(state))
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), loop=ocp.args.JsonRestore()))
    return state.replace(**restored['state']), dict(restored['loop'])

  def save(self, state, loop):
    """Saves `state` at its step (once: a second save of one step is a no-op)."""
    step = int(state.step)
    if self._manager.latest_step() != step:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(_arrays(state)), loop=ocp.args.JsonSave(loop)), force=True)
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


def _arrays(state):
  return {'params': state.params, 'opt_state': state.opt_state, 'step': state.step}
