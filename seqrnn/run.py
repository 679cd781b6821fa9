"""`train_and_evaluate(config, workdir)`: the whole run, resumable from its workdir."""

import contextlib
import pathlib
import signal
import threading
import time
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from seqrnn import config as config_lib
from seqrnn import group
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
  """Refuses a workdir whose run used other values of the fields a resume may not change."""
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
    if config.model.words.char_encoder == 'none':
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
  (outcome,) = train_runs([config], [workdir], restart_from_scratch=restart_from_scratch)
  if isinstance(outcome, Exception):
    raise outcome
  return outcome


def train_runs(configs, workdirs, *, restart_from_scratch=False):
  """Trains K >= 1 runs, each in its own workdir exactly as if it ran alone.

  One run is `train_and_evaluate`. Several (configs differing only in the fields
  of `seqrnn.group.VECTORISED`) train together, stacked along a leading model
  axis in one vectorised step (`seqrnn.group`); the loop around the step, every
  run's files, the evaluations, signals and many processes are the same code.
  Returns, per run, its results dict or the error that stopped it alone (an
  update rejected without `train.skip_nonfinite`: its siblings go on). Raises
  ValueError before anything is written if the configs do not form a group or
  their workdirs hold checkpoints of different steps (train those one by one).
  """
  if len(configs) != len(workdirs) or not configs:
    raise ValueError(f'{len(configs)} configs for {len(workdirs)} workdirs')
  for workdir in workdirs:
    if workdir is None or not str(workdir).strip():
      raise ValueError(f'workdir={workdir!r}: name the directory the run writes into')
  for config in configs:
    config_lib.validate_config(config)
  if len({group.group_key(c) for c in configs}) != 1:
    raise ValueError(f'configs train together only if they differ in {group.VECTORISED} alone')
  flat = [config_lib.to_flat_dict(c) for c in configs]
  hosts.check_same_config(flat[0] if len(flat) == 1 else {
      f'run {k} {name}': v for k, f in enumerate(flat) for name, v in f.items()})
  workdirs = [pathlib.Path(w) for w in workdirs]
  with contextlib.ExitStack() as locks:
    for config, workdir in zip(configs, workdirs):
      if hosts.is_main():
        locks.enter_context(workdir_lib.locked(workdir))
      _check_resume(workdir, config)
      for sub in ('checkpoints', 'best'):
        workdir_lib.check_writable(workdir / sub, 'the checkpoint directory')
    return _train(configs, workdirs, restart_from_scratch)


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
  models: list    # each run's model (its evaluation reads its own regularisation rates)
  states: list    # each run's fresh train state, replicated over every device
  mesh: Any       # every device of every process, one axis 'data'


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


def _setup(configs):
  """Data, buckets, models and fresh train states of `configs` (one group), on every device."""
  base = configs[0]
  dataset, buckets = prepare_data(base)
  models = [build_model(c.task, c.model, num_classes=dataset.num_classes,
                        vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
            for c in configs]
  example = batching.train_batch(dataset.splits['train'], 0, batch_size=base.data.batch_size,
                                 buckets=buckets, seed=base.seed, pack=base.data.pack)
  # Every device of every process holds the whole state; batches are split by rows.
  mesh = Mesh(jax.devices(), ('data',))
  # The first model trains them all (a vectorised step gives each run its own rates).
  states = [jax.device_put(create_train_state(
      seed_keys(c.seed)[0], models[0], example, make_optimizer(c.optim, c.train.num_steps),
      get_task(c.task)), NamedSharding(mesh, P())) for c in configs]
  return _Setup(dataset, buckets, models, states, mesh)


def _put(mesh, spec):
  """A process's share of a global batch -> global arrays sharded as `spec`."""
  sharding = NamedSharding(mesh, spec)
  return lambda batch: {k: jax.make_array_from_process_local_data(sharding, v)
                        for k, v in batch.items()}


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
  setup = _setup([config])
  sub = 'best' if checkpoint == 'best' else 'checkpoints'
  checkpoints = Checkpoints((workdir / sub).absolute(), None, read_only=True)
  try:
    step = None if checkpoint in ('best', 'latest') else int(checkpoint)
    state, loop = checkpoints.restore(setup.states[0], step)
  finally:
    checkpoints.close()
  if not loop:
    raise NoUsableCheckpoint(f'{workdir / sub} holds no checkpoint yet')
  if split not in setup.dataset.splits:
    raise ValueError(f'split={split!r} is not one of {sorted(setup.dataset.splits)}')
  return int(hosts.local_value(state.step)), _evaluate(
      state, setup.dataset.splits[split], config, setup.buckets, _put(setup.mesh, P('data')))


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


class _Run:
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
    self.key_data = np.asarray(loop['rng'] if 'rng' in loop else
                               jax.random.key_data(seed_keys(config.seed)[1]), np.uint32)
    self.results, self.error = {}, None

  def open_log(self, start):
    """Records this start in the workdir and opens metrics.jsonl at `start` (process 0)."""
    if hosts.is_main():
      _report_start(self.workdir, self.config, start)
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
    if self.best_value is None or metrics[name] > self.best_value:
      self.best_value = metrics[name]
      self.best.save(state, {name: self.best_value})

  def save(self, step, state):
    self.log.sync()
    self.checkpoints.save(state, {
        'window': self.window or {}, 'skipped': self.skipped, 'best': self.best_value,
        'rng': self.key_data.tolist(), 'data_position': step})  # the next batch is step + 1's

  def close(self):
    for close in (self.log.close, self.checkpoints.close, self.best.close):
      close()


def _train(configs, workdirs, restart_from_scratch):
  setup = _setup(configs)
  _say_data(configs[0], setup.dataset, setup.buckets)
  runs = []
  try:
    for config, workdir, fresh in zip(configs, workdirs, setup.states):
      runs.append(_Run(config, workdir, fresh, restart_from_scratch))
    starts = sorted({r.start for r in runs})
    if len(starts) > 1:
      raise ValueError(f'the runs hold checkpoints of different steps {starts}: train them '
                       f'one by one')
    for r in runs:
      r.open_log(starts[0])
    return _loop(runs, setup, starts[0])
  finally:
    for r in runs:
      r.close()


def _loop(runs, setup, start):
  """Trains `runs` (all at step `start`) to train.num_steps, then evaluates each."""
  configs = [r.config for r in runs]
  cfg, k_runs = configs[0].train, len(runs)
  dataset, buckets, mesh = setup.dataset, setup.buckets, setup.mesh
  batch_args = dict(batch_size=configs[0].data.batch_size, buckets=buckets,
                    pack=configs[0].data.pack, process_index=jax.process_index(),
                    process_count=jax.process_count())
  if k_runs == 1:
    state = runs[0].state
    jitted = jax.jit(train_step, donate_argnums=0)
    extra = (jax.random.wrap_key_data(runs[0].key_data),)
    put = _put(mesh, P('data'))
    make = lambda step: put(batching.train_batch(dataset.splits['train'], step,
                                                 seed=configs[0].seed, **batch_args))
  else:  # [models, batch, ...]: the batch axis sharded
    state = jax.device_put(group.stack([r.state.replace(tx=setup.states[0].tx) for r in runs]),
                           NamedSharding(mesh, P()))
    jitted, hyper = group.vectorised_step(configs, setup.models[0])
    extra = (np.stack([r.key_data for r in runs]), hyper)
    put = _put(mesh, P(None, 'data'))
    make = lambda step: put(group.stacked_batch([batching.train_batch(
        dataset.splits['train'], step, seed=c.seed, **batch_args) for c in configs]))
  for r in runs:
    r.state = None  # the loop's state holds them
  compiled = {}  # the train step for each input shape

  def train_on(state, batch, bar):
    shape = batch['inputs'].shape
    if shape not in compiled:
      bar.set_description(f'train (compiling for inputs {shape})')
      start_compile = time.perf_counter()
      compiled[shape] = jitted.lower(state, batch, *extra).compile()
      _say(f'compiled the train step for inputs {shape} in '
           f'{time.perf_counter() - start_compile:.1f} s')
      bar.set_description(bar_name)
      bar.unpause()  # the rate and the time left exclude compilation
    return compiled[shape](state, batch, *extra)

  def state_of(k):
    return state if k_runs == 1 else group.take(state, k).replace(apply_fn=setup.models[k].apply)

  def saved(step):
    if k_runs == 1:
      return f'the checkpoint of step {step} is saved in {runs[0].workdir / "checkpoints"}'
    return f'the checkpoint of step {step} is saved in each of the {k_runs} runs\' workdirs'

  def evaluate(k, split, state_k, stop=None):
    """Metrics of `split`; raises Preempted between batches once `stop` is set."""
    return _evaluate(state_k, dataset.splits[split], configs[k], buckets, _put(mesh, P('data')),
                     stop, on_stop=lambda: (
                         f'stopped by a signal during the final {split} evaluation; '
                         f'{saved(last_step)}; run again with the same --workdir to evaluate it'))

  last_step, pending = start, []  # pending: (step, device metrics) not yet fetched
  window_start, window_steps = time.perf_counter(), 0
  bar_name = 'train' if k_runs == 1 else f'train {k_runs} models'
  with _stop_on_signals() as stop:
    with tqdm(total=cfg.num_steps, initial=min(start, cfg.num_steps), desc=bar_name,
              dynamic_ncols=True, disable=not hosts.is_main()) as bar:
      for step, batch in zip(range(start + 1, cfg.num_steps + 1),
                             batching.prefetch(make, range(start, cfg.num_steps))):
        state, metrics = train_on(state, batch, bar)
        last_step = step
        pending.append((step, metrics))
        # Every process stops at the same step, whichever one the signal reached.
        stopping = hosts.any_process(stop.is_set())
        window_steps += 1
        bar.update(1)
        last = step == cfg.num_steps
        logs = step % cfg.log_every_steps == 0 or last
        evals = step % cfg.eval_every_steps == 0 or last
        saves = step % cfg.checkpoint_every_steps == 0 or last or stopping
        if not (logs or evals or saves):
          continue
        _drain(pending, runs)
        pending = []
        active = [k for k, r in enumerate(runs) if r.error is None]
        if not active:
          break
        if logs:
          now = time.perf_counter()
          for k in active:
            train_metrics = runs[k].write_train(step, window_steps / (now - window_start))
          if k_runs == 1:
            bar.set_postfix({k: f'{v:.4f}' for k, v in train_metrics.items()
                             if k in ('loss', 'accuracy')})
          window_start, window_steps = now, 0
        states = {k: state_of(k) for k in active} if evals or saves else {}
        if evals:
          for k in active:
            runs[k].write_eval(step, evaluate(k, 'eval', states[k]), states[k])
          _say_eval(step, runs)
        if saves:
          for k in active:
            runs[k].save(step, states[k])
        if stopping:
          raise Preempted(f'stopped by a signal at step {step}; {saved(step)}; run again with '
                          f'the same --workdir to resume')

    # Signals stay handled until the last line is written: a stop here leaves
    # the final checkpoint, and a restart redoes only this evaluation.
    for k, r in enumerate(runs):
      if r.error is not None:
        continue
      state_k = state_of(k)
      r.results['eval'] = r.results.get('eval') or evaluate(k, 'eval', state_k, stop)
      r.results['test'] = evaluate(k, 'test', state_k, stop)
      r.log.write(last_step, 'test', r.results['test'])
      r.results.update(test_of_best(r.best, state_k, last_step, r.results['test'],
                                    lambda s, k=k: evaluate(k, 'test', s, stop), r.log))
      r.results.update(compiled_train_shapes=len(compiled), buckets=buckets)
  return [r.error if r.error is not None else r.results for r in runs]


def _drain(pending, runs):
  """Fetches the pending steps' metrics into each run still training."""
  for (step, _), metrics in zip(pending, hosts.local_value([m for _, m in pending])):
    for k, r in enumerate(runs):
      pick = (lambda x: x) if len(runs) == 1 else (lambda x, k=k: x[k])
      if r.error is None:
        r.add(step, {name: (float(pick(s)), float(pick(n))) for name, (s, n) in metrics.items()})


def _say_data(config, dataset, buckets):
  """The data line: sequences, padded lengths, packing and padding."""
  train_split = dataset.splits['train']
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
    _say('the eval split is the training split (data.uea.eval_fraction=0): eval metrics are '
         'training metrics without dropout, and the test line is the model of the last step')


def _say_eval(step, runs):
  if len(runs) == 1:
    _say(f'step {step}: eval ' + _fmt(runs[0].results['eval']))
    return
  name = runs[0].config.train.best_metric
  _say(f'step {step}: eval {name} ' + ' '.join(
      f'{r.results["eval"][name]:.4f}' if r.error is None else 'stopped' for r in runs))


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
