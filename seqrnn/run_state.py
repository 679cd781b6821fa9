"""One run's host-side state and files: restore or start, the logging window, the best
state, checkpoints, the record of each start in its workdir."""

import jax
import numpy as np
from tqdm import tqdm

from seqrnn import config as config_lib
from seqrnn import hosts
from seqrnn import workdir as workdir_lib
from seqrnn.checkpoint import Checkpoints, NoUsableCheckpoint
from seqrnn.metrics_log import MetricLog, NoLog
from seqrnn.prepare import seed_keys
from seqrnn.tasks import accumulate, summarize
from seqrnn.train import with_hyperparams_of


def restore_or_start(checkpoints, state, workdir, restart_from_scratch=False):
  """(state, loop) of the latest usable checkpoint; (state, {}) for a run with none,
  unless every one it had was set aside as damaged: then NoUsableCheckpoint,
  or with `restart_from_scratch` the earlier run's metrics.jsonl and best/ are
  moved aside (kept, renamed) and the run starts from step 0."""
  restored, loop = checkpoints.restore(state)
  aside = checkpoints.set_aside()
  if loop:
    if restart_from_scratch:
      raise ValueError(f'--restart_from_scratch: {checkpoints.directory} holds a usable '
                       f'checkpoint (step {checkpoints.latest_step()}), which the run resumes '
                       f'from; the flag is for a run whose checkpoints were all set aside')
    return restored, loop
  if aside and not restart_from_scratch:
    raise NoUsableCheckpoint(
        f'{checkpoints.directory} holds only checkpoints set aside as damaged '
        f'({", ".join(aside)}): nothing was trained and metrics.jsonl is untouched. Run '
        f'again with --restart_from_scratch to train from step 0 (the earlier metrics.jsonl '
        f'and best/ are kept under other names), or use another --workdir.')
  if restart_from_scratch and hosts.is_main():
    for name in ('metrics.jsonl', 'best'):
      if (workdir / name).exists():
        moved = workdir_lib.keep_aside(workdir / name, 'before_restart')
        say(f'restarting from scratch: the earlier {name} is now {moved.name}')
  hosts.barrier('seqrnn-restart-from-scratch')
  return state, {}


class Run:
  """One run's host-side state: its workdir's files, its logging window, its best
  eval value and dropout key, what it returns. The window's sums, the count of
  skipped updates, the best value and the key are saved with each checkpoint,
  so a resumed run logs exactly what the uninterrupted run would have."""

  def __init__(self, config, workdir, fresh, restart_from_scratch):
    self.config, self.workdir = config, workdir
    self.checkpoints = Checkpoints((workdir / 'checkpoints').absolute(),
                                   config.train.keep_checkpoints)
    try:
      restored, loop = restore_or_start(self.checkpoints, fresh, workdir, restart_from_scratch)
    except BaseException:
      self.checkpoints.close()
      raise
    # The config's hyperparameters, not the checkpoint's, from here on.
    self.state = restored.replace(opt_state=with_hyperparams_of(restored.opt_state,
                                                                fresh.opt_state))
    self.start = int(hosts.local_value(self.state.step))
    self.best = Checkpoints((workdir / 'best').absolute(), 1)
    self.log = NoLog()
    self.window = {k: tuple(v) for k, v in loop.get('window', {}).items()} or None
    self.skipped = loop.get('skipped', 0)
    self.best_value = loop.get('best')  # of train.best_metric on eval, None before the first
    self.since_best = loop.get('since_best', 0)  # evaluations since the best (early stopping)
    # The best step's eval loss and the lowest so far (train.best_loss_margin); None in
    # checkpoints from before them: the band then starts at the next evaluation.
    self.best_loss, self.lowest_loss = loop.get('best_loss'), loop.get('lowest_loss')
    metric = config.train.best_metric
    was = None if self.best_value is None else loop.get('best_of') or _saved_best_metric(workdir)
    if self.best_value is not None and was != metric:
      say(f'{workdir}: train.best_metric changed from {was!r} to {metric!r}: the best step is '
          f'chosen again from the next evaluation on')
      self.best_value, self.best_loss, self.since_best = None, None, 0
    self.key_data = np.asarray(loop['rng'] if 'rng' in loop else
                               jax.random.key_data(seed_keys(config.seed)[1]), np.uint32)
    self.results, self.error, self.finished = {}, None, False
    # A run that stopped early resumes stopped, unless the patience now in force is longer.
    self.stopped_early = self.start if self.patience_spent() else None

  def open_log(self, start):
    """Records this start in the workdir and opens metrics.jsonl at `start` (process 0)."""
    if hosts.is_main():
      report_start(self.workdir, self.config, start)
      self.log = MetricLog(self.workdir, start)

  def add(self, step, metrics):
    """Adds one step's metrics {name: (sum, count)} to the window; a rejected update
    stops the run (or is counted, with train.skip_nonfinite)."""
    bad = metrics.pop('nonfinite')[0] > 0, metrics.pop('invalid_batch')[0] > 0
    if not any(bad):
      self.window = accumulate(self.window, metrics)
    elif self.config.train.skip_nonfinite:
      self.skipped += 1  # a skipped step's NaN stays out of the logged averages
    else:
      what = ('a non-finite loss, gradient or update' if bad[0] else
              'an invalid batch (a length outside [1, time] or a label out of range)')
      self.error = FloatingPointError(
          f'{what} at step {step}; the update was not applied and the checkpoints in '
          f'{self.workdir / "checkpoints"} (latest step {self.checkpoints.latest_step()}) are '
          f'untouched. Set config.train.skip_nonfinite to skip such updates instead.')

  def write_train(self, step, steps_per_s):
    metrics = summarize(self.window or {})
    metrics.update(skipped_updates=self.skipped, steps_per_s=steps_per_s)
    self.log.write(step, 'train', metrics)
    self.window = None
    return metrics

  def write_eval(self, step, metrics, state):
    """Logs eval `metrics` of `state`, kept in best/ if the best so far."""
    self.results['eval'] = metrics
    self.log.write(step, 'eval', metrics)
    name = self.config.train.best_metric
    loss = metrics['loss']
    self.lowest_loss = loss if self.lowest_loss is None else min(loss, self.lowest_loss)
    best = None if self.best_value is None else {name: self.best_value, 'loss': self.best_loss}
    if is_new_best(name, metrics, best, self.lowest_loss, self.config.train.best_loss_margin):
      self.best_value, self.best_loss, self.since_best = metrics[name], loss, 0
      self.best.save(state, {name: self.best_value, 'loss': loss})
    else:
      self.since_best += 1

  def patience_spent(self):
    """Whether train.early_stopping_patience evaluations in a row brought no better one."""
    patience = self.config.train.early_stopping_patience
    return bool(patience) and self.since_best >= patience

  def save(self, step, state):
    self.log.sync()
    self.checkpoints.save(state, {
        'window': self.window or {}, 'skipped': self.skipped, 'best': self.best_value,
        'best_of': self.config.train.best_metric, 'since_best': self.since_best,
        'best_loss': self.best_loss, 'lowest_loss': self.lowest_loss,
        'rng': self.key_data.tolist(), 'data_position': step})  # the next batch is step + 1's

  def close(self):
    for close in (self.log.close, self.checkpoints.close, self.best.close):
      close()


def is_new_best(metric, metrics, best, lowest_loss, margin):
  """Whether eval `metrics` ({name: value}) become the selected step.

  `best` is the current best step's {metric: value, 'loss': value} (None before any;
  its loss None in checkpoints from before train.best_loss_margin), `lowest_loss` the
  lowest eval loss so far, this eval's included. With `margin` > 0 a step is eligible
  only while its eval loss is at most (1 + margin) * lowest_loss, so that accuracy
  cannot select a step the loss says has overfit; the best only leaves that band when
  the lowest loss falls, i.e. at an eval that is itself eligible, which then replaces it.
  """
  if best is None:
    return True
  if margin and metric != 'loss':
    bound = (1 + margin) * lowest_loss
    if metrics['loss'] > bound:
      return False
    if best.get('loss') is not None and best['loss'] > bound:
      return True
  return config_lib.better(metric, metrics[metric], best[metric])


def select_best(evals, metric, margin=0.0):
  """The record of `evals` (eval metric dicts, in step order) that a run keeps in best/
  with train.best_metric=`metric` and train.best_loss_margin=`margin`; None if empty."""
  best = lowest = None
  for record in evals:
    lowest = record['loss'] if lowest is None else min(lowest, record['loss'])
    if is_new_best(metric, record, best, lowest, margin):
      best = record
  return best


def _saved_best_metric(workdir):
  """The train.best_metric of the run's first start (checkpoints from before 'best_of')."""
  return (workdir_lib.saved_config(workdir) or {}).get('train.best_metric', 'accuracy')


def test_of_best(best, state, last_step, test, evaluate_test, log):
  """{'best_step', 'test_best'}: the test metrics (`evaluate_test(state)`) of the
  best eval step's state kept in `best`, written to `log`; {} before any eval.
  An overfitting run's last step is not its best; `test` is the last step's."""
  best_step = best.latest_step()
  if best_step is None:
    return {}
  metrics = test if best_step == last_step else evaluate_test(best.restore(state)[0])
  log.write(best_step, 'test_best', metrics)
  return {'best_step': best_step, 'test_best': metrics}


def report_start(workdir, config, start):
  """Records this start in the workdir and says what a resume changes."""
  changes = workdir_lib.record_start(workdir, config_lib.to_flat_dict(config), start)
  if not start:
    return
  say(f'resuming {workdir} from its checkpoint at step {start}')
  if changes:
    say('changed since the last start: ' + ', '.join(
        f'{k} {a!r} -> {b!r}' for k, (a, b) in changes.items()))
  num_steps = config.train.num_steps
  if start >= num_steps:
    say(f'the checkpoint is at step {start}, at or past train.num_steps={num_steps}: '
        f'nothing is trained; the model of step {start} is evaluated')
  elif 'train.num_steps' in changes and config.optim.schedule == 'cosine':
    old = changes['train.num_steps'][0]
    say(f'train.num_steps changed from {old} to {num_steps} with a cosine schedule: '
        f'the learning rate is recomputed over {num_steps} steps and changes at step '
        f'{start} from what the old schedule gave')


def say(line):
  """Prints `line` on process 0 (without breaking its progress bar)."""
  if hosts.is_main():
    tqdm.write(line)
