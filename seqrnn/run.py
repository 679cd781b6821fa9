"""`train_and_evaluate(config, workdir)`: the whole run, resumable from its workdir."""

import contextlib
import pathlib
import signal
import threading
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from seqrnn import config as config_lib
from seqrnn import data as data_lib
from seqrnn import hosts
from seqrnn import workdir as workdir_lib
from seqrnn.batch import validate_batch
from seqrnn.checkpoint import Checkpoints, NoUsableCheckpoint
from seqrnn.data import batching
from seqrnn.metrics_log import MetricLog, NoLog
from seqrnn.models import build_model
from seqrnn.tasks import accumulate, get_task, summarize
from seqrnn.train import (create_train_state, eval_step, make_optimizer, train_step,
                          with_hyperparams_of)


class Preempted(Exception):
  """The run received SIGTERM/SIGINT; a checkpoint of the current step was saved."""


@contextlib.contextmanager
def _stop_on_signals():
  """Yields an Event set by SIGTERM/SIGINT (handled in the main thread only)."""
  stop = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return
  previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield stop
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def _check_resume(workdir, config):
  """Refuses a workdir whose run used other values of config_lib.FIXED_FIELDS."""
  saved = workdir_lib.saved_config(workdir)
  conflicts = config_lib.resume_conflicts(saved, config) if saved else {}
  if conflicts:
    detail = '; '.join(f'{k}: saved {a!r}, now {b!r}' for k, (a, b) in conflicts.items())
    raise ValueError(f'{workdir} holds a run with a different config ({detail}); its '
                     f'checkpoints cannot be resumed with it. Use another --workdir.')


def load_and_check_data(config):
  """The Dataset of `config.data`, every split validated against the model's needs."""
  dataset = data_lib.load(config.data)
  for name, split in dataset.splits.items():
    if config.model.char_encoder == 'none':
      split.pop('chars', None)  # read by nothing: not batched, not sent to the devices
    validate_batch(split, task=config.task, num_classes=dataset.num_classes,
                   num_features=dataset.num_features, vocab_size=dataset.vocab_size,
                   num_chars=dataset.num_chars, name=f'data set {config.data.name!r} split {name!r}')
  return dataset


def train_and_evaluate(config, workdir, *, restart_from_scratch=False):
  """Trains `config` in `workdir`, resuming from its latest usable checkpoint.

  Writes config.json (and config_history.jsonl on later starts), metrics.jsonl,
  TensorBoard events and checkpoints/, holding the workdir's lock throughout.
  Returns {'eval': metrics, 'test': metrics, ...} at the end of training.

  A workdir whose checkpoints were all set aside as damaged is refused, so an
  earlier run's metrics are never replaced by a run from step 0 nobody asked
  for; `restart_from_scratch` trains it from step 0, moving the earlier
  metrics.jsonl and best/ aside first.
  """
  if workdir is None or not str(workdir).strip():
    raise ValueError(f'workdir={workdir!r}: name the directory the run writes into')
  config_lib.validate_config(config)
  hosts.check_same_config(config_lib.to_flat_dict(config))
  workdir = pathlib.Path(workdir)
  lock = workdir_lib.locked(workdir) if hosts.is_main() else contextlib.nullcontext()
  with lock:
    _check_resume(workdir, config)
    for sub in ('checkpoints', 'best'):
      workdir_lib.check_writable(workdir / sub, 'the checkpoint directory')
    return _train_and_evaluate(config, workdir, restart_from_scratch)


def use_compilation_cache(directory):
  """Points JAX's persistent compilation cache at `directory`, so that a second run,
  or a resume, of the same config loads its compiled steps instead of compiling
  them again. '' leaves JAX's own setting as it is."""
  if not directory:
    return
  path = str(pathlib.Path(directory).expanduser())
  if jax.config.jax_compilation_cache_dir != path:
    jax.config.update('jax_compilation_cache_dir', path)
    compilation_cache.reset_cache()  # a cache in use would otherwise keep its old directory
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.2)


class _Setup(NamedTuple):
  dataset: Any
  buckets: tuple
  state: Any      # a fresh train state, replicated over every device
  put: Callable   # a process's share of a global batch -> sharded global arrays


def seed_keys(seed):
  """(parameter initialisation key, dropout key) of a run seeded `seed`."""
  return tuple(jax.random.split(jax.random.key(seed)))


def prepare_data(config):
  """(dataset, buckets) of `config`, checked; with the compilation cache in place."""
  use_compilation_cache(config.train.compilation_cache)
  dataset = load_and_check_data(config)
  num_devices = jax.device_count()
  for field in ('batch_size', 'eval_batch_size'):
    if config.data[field] % num_devices:
      raise ValueError(f'config.data.{field}={config.data[field]} is not divisible by the '
                       f'{num_devices} devices the batch is sharded over')
  all_lengths = np.concatenate([s['lengths'] for s in dataset.splits.values()])
  if config.data.num_buckets == 'auto':
    trained = config.train.num_steps * config.data.batch_size
    return dataset, batching.auto_bucket_lengths(all_lengths, trained_sequences=trained)
  return dataset, batching.bucket_lengths(all_lengths, int(config.data.num_buckets))


def _setup(config):
  """Data, buckets and a fresh train state for `config`, on every device."""
  dataset, buckets = prepare_data(config)
  model = build_model(config.task, config.model, num_classes=dataset.num_classes,
                      vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
  init_key = seed_keys(config.seed)[0]
  state = create_train_state(init_key, model, batching.train_batch(
      dataset.splits['train'], 0, batch_size=config.data.batch_size, buckets=buckets,
      seed=config.seed, pack=config.data.pack), make_optimizer(config.optim, config.train.num_steps),
                             get_task(config.task))
  # Every device of every process holds the whole state; batches are split by rows.
  mesh = Mesh(jax.devices(), ('data',))
  rows = NamedSharding(mesh, P('data'))

  def put(batch):
    return {k: jax.make_array_from_process_local_data(rows, v) for k, v in batch.items()}

  return _Setup(dataset, buckets, jax.device_put(state, NamedSharding(mesh, P())), put)


def _evaluate(state, split, config, buckets, put, stop=None, on_stop=None):
  """Metrics of `state` on `split` (a whole split dict), each process reading its
  share; raises Preempted(on_stop()) between batches once `stop` is set."""
  total = None
  for batch in batching.eval_batches(split, batch_size=config.data.eval_batch_size,
                                     buckets=buckets, process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    if stop is not None and hosts.any_process(stop.is_set()):
      raise Preempted(on_stop())
    total = accumulate(total, _jit_eval(state, put(batch)))
  return summarize(hosts.local_value(total))


_jit_eval = jax.jit(eval_step)


def evaluate_checkpoint(workdir, checkpoint='best', split='test'):
  """Metrics of a saved state of the run in `workdir`, with the config it runs.

  `checkpoint`: 'best' (the best eval step's state, WORKDIR/best), 'latest', or a
  step number of WORKDIR/checkpoints. Writes nothing. Returns (step, metrics).
  """
  workdir = pathlib.Path(workdir)
  flat = workdir_lib.saved_config(workdir)
  if flat is None:
    raise FileNotFoundError(f'{workdir} holds no run (no config.json)')
  config = config_lib.from_flat_dict(flat)
  setup = _setup(config)
  sub = 'best' if checkpoint == 'best' else 'checkpoints'
  checkpoints = Checkpoints((workdir / sub).absolute(), None, read_only=True)
  try:
    step = None if checkpoint in ('best', 'latest') else int(checkpoint)
    state, loop = checkpoints.restore(setup.state, step)
  finally:
    checkpoints.close()
  if not loop:
    raise NoUsableCheckpoint(f'{workdir / sub} holds no checkpoint yet')
  if split not in setup.dataset.splits:
    raise ValueError(f'split={split!r} is not one of {sorted(setup.dataset.splits)}')
  return int(hosts.local_value(state.step)), _evaluate(
      state, setup.dataset.splits[split], config, setup.buckets, setup.put)


def _packing(split, buckets):
  rows = batching.steps_per_epoch(split, 1, buckets, pack=True)
  return f', packed {len(split["lengths"]) / rows:.2f} a row ({rows} rows an epoch)'


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
        _say(f'restarting from scratch: the earlier {name} is now {moved.name}')
  hosts.barrier('seqrnn-restart-from-scratch')
  return state, {}


def _train_and_evaluate(config, workdir, restart_from_scratch=False):
  dataset, buckets, state, put = _setup(config)
  train_split = dataset.splits['train']
  batch_args = dict(batch_size=config.data.batch_size, buckets=buckets, seed=config.seed,
                    pack=config.data.pack, process_index=jax.process_index(),
                    process_count=jax.process_count())
  padding = batching.epoch_padding_fraction(train_split, batch_size=config.data.batch_size,
                                            buckets=buckets, seed=config.seed,
                                            pack=config.data.pack)
  eval_padding = batching.eval_padding_fraction(
      dataset.splits['eval'], batch_size=config.data.eval_batch_size, buckets=buckets)
  _say(f'data {config.data.name}: {len(train_split["lengths"])} training sequences, '
       f'padded lengths {buckets}{_packing(train_split, buckets) if config.data.pack else ""}, '
       f'padding fraction of a training epoch {padding:.3f}, '
       f'of evaluation {eval_padding:.3f}')
  if dataset.splits['eval'] is train_split:
    _say('the eval split is the training split (data.eval_fraction=0): eval metrics are '
         'training metrics without dropout, and the test line is the model of the last step')
  dropout_key = seed_keys(config.seed)[1]
  checkpoints = Checkpoints((workdir / 'checkpoints').absolute(), config.train.keep_checkpoints)
  try:
    restored, loop = restore_or_start(checkpoints, state, workdir, restart_from_scratch)
  except BaseException:
    checkpoints.close()
    raise
  best = Checkpoints((workdir / 'best').absolute(), 1)
  # The config's hyperparameters, not the checkpoint's, from here on.
  state = restored.replace(opt_state=with_hyperparams_of(restored.opt_state, state.opt_state))
  start = int(hosts.local_value(state.step))
  if hosts.is_main():
    _report_start(workdir, config, start)

  jit_train = jax.jit(train_step, donate_argnums=0)
  compiled = {}  # the train step for each input shape

  def train_on(state, batch, rng, bar):
    shape = batch['inputs'].shape
    if shape not in compiled:
      bar.set_description(f'train (compiling for inputs {shape})')
      start_compile = time.perf_counter()
      compiled[shape] = jit_train.lower(state, batch, rng).compile()
      _say(f'compiled the train step for inputs {shape} in '
           f'{time.perf_counter() - start_compile:.1f} s')
      bar.set_description('train')
      bar.unpause()  # the rate and the time left exclude compilation
    return compiled[shape](state, batch, rng)

  def evaluate(split, stop=None, state_now=None):
    """Metrics of `split`; raises Preempted between batches once `stop` is set."""
    return _evaluate(state if state_now is None else state_now, dataset.splits[split], config,
                     buckets, put, stop, on_stop=lambda: (
                         f'stopped by a signal during the final {split} evaluation; the '
                         f'checkpoint of step {last_step} is saved in '
                         f'{workdir / "checkpoints"}; run again with the same --workdir to '
                         f'evaluate it'))

  log = MetricLog(workdir, start) if hosts.is_main() else NoLog()
  last_step = start
  results = {}
  pending = []  # (step, device metrics) not yet fetched
  # The logging window's sums, and the count of skipped updates, survive a
  # restart (they are saved with each checkpoint), so a resumed run logs
  # exactly what the uninterrupted run would have.
  window = {k: tuple(v) for k, v in loop.get('window', {}).items()} or None
  skipped = loop.get('skipped', 0)
  best_value = loop.get('best')  # of cfg.best_metric on eval, None before the first
  if 'rng' in loop:  # the run's dropout key, saved with its checkpoints
    dropout_key = jax.random.wrap_key_data(np.asarray(loop['rng'], np.uint32))
  window_start, window_steps = time.perf_counter(), 0
  cfg = config.train

  def drain():
    """Fetches pending metrics into the window; stops on a rejected update."""
    nonlocal pending, window, skipped
    for (s, _), m in zip(pending, hosts.local_value([m for _, m in pending])):
      bad = m.pop('nonfinite')[0] > 0, m.pop('invalid_batch')[0] > 0
      if any(bad):
        if not cfg.skip_nonfinite:
          what = ('a non-finite loss, gradient or update' if bad[0] else
                  'an invalid batch (a length outside [1, time] or a label out of range)')
          raise FloatingPointError(
              f'{what} at step {s}; the update was not applied and the checkpoints in '
              f'{workdir / "checkpoints"} (latest step {checkpoints.latest_step()}) are '
              f'untouched. Set config.train.skip_nonfinite to skip such updates instead.')
        skipped += 1
        continue  # a skipped step's NaN stays out of the logged averages
      window = accumulate(window, {k: (float(a), float(b)) for k, (a, b) in m.items()})
    pending = []

  def make(step):
    return put(batching.train_batch(train_split, step, **batch_args))

  try:
    with _stop_on_signals() as stop:
      with tqdm(total=cfg.num_steps, initial=min(start, cfg.num_steps), desc='train',
                dynamic_ncols=True, disable=not hosts.is_main()) as bar:
        for step, batch in zip(range(start + 1, cfg.num_steps + 1),
                               batching.prefetch(make, range(start, cfg.num_steps))):
          state, metrics = train_on(state, batch, dropout_key, bar)
          last_step = step
          pending.append((step, metrics))
          # Every process stops at the same step, whichever one the signal reached.
          stopping = hosts.any_process(stop.is_set())
          window_steps += 1
          bar.update(1)
          last = step == cfg.num_steps
          if step % cfg.log_every_steps == 0 or last:
            drain()
            train_metrics = summarize(window or {})
            now = time.perf_counter()
            train_metrics.update(skipped_updates=skipped,
                                 steps_per_s=window_steps / (now - window_start))
            log.write(step, 'train', train_metrics)
            bar.set_postfix({k: f'{v:.4f}' for k, v in train_metrics.items()
                             if k in ('loss', 'accuracy')})
            window, window_start, window_steps = None, now, 0
          if step % cfg.eval_every_steps == 0 or last:
            drain()
            results['eval'] = evaluate('eval')
            log.write(step, 'eval', results['eval'])
            _say(f'step {step}: eval ' + _fmt(results['eval']))
            if best_value is None or results['eval'][cfg.best_metric] > best_value:
              best_value = results['eval'][cfg.best_metric]
              best.save(state, {cfg.best_metric: best_value})
          if step % cfg.checkpoint_every_steps == 0 or last or stopping:
            drain()
            log.sync()
            checkpoints.save(state, {
                'window': window or {}, 'skipped': skipped, 'best': best_value,
                'rng': jax.random.key_data(dropout_key).tolist(),
                'data_position': step})  # the next batch is the one of step + 1
          if stopping:
            raise Preempted(f'stopped by a signal at step {step}; checkpoint saved in '
                            f'{workdir / "checkpoints"}; run again with the same --workdir '
                            f'to resume')

      # Signals stay handled until the last line is written: a stop here leaves
      # the final checkpoint, and a restart redoes only this evaluation.
      results['eval'] = results.get('eval') or evaluate('eval', stop)
      results['test'] = evaluate('test', stop)
      log.write(last_step, 'test', results['test'])
      results.update(test_of_best(best, state, last_step, results['test'],
                                  lambda s: evaluate('test', stop, s), log))
  finally:
    log.close()
    checkpoints.close()
    best.close()
  results['compiled_train_shapes'] = len(compiled)
  results['buckets'] = buckets
  return results


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


def _report_start(workdir, config, start):
  """Records this start in the workdir and says what a resume changes."""
  changes = workdir_lib.record_start(workdir, config_lib.to_flat_dict(config), start)
  if not start:
    return
  _say(f'resuming {workdir} from its checkpoint at step {start}')
  if changes:
    _say('changed since the last start: ' + ', '.join(
        f'{k} {a!r} -> {b!r}' for k, (a, b) in changes.items()))
  num_steps = config.train.num_steps
  if start >= num_steps:
    _say(f'the checkpoint is at step {start}, at or past train.num_steps={num_steps}: '
         f'nothing is trained; the model of step {start} is evaluated')
  elif 'train.num_steps' in changes and config.optim.schedule == 'cosine':
    old = changes['train.num_steps'][0]
    _say(f'train.num_steps changed from {old} to {num_steps} with a cosine schedule: '
         f'the learning rate is recomputed over {num_steps} steps and changes at step '
         f'{start} from what the old schedule gave')


def _say(line):
  """Prints `line` on process 0 (without breaking its progress bar)."""
  if hosts.is_main():
    tqdm.write(line)


def _fmt(metrics):
  return ' '.join(f'{k}={v:.4f}' for k, v in metrics.items())
