"""`train_and_evaluate(config, workdir)`: the whole run, resumable from its workdir, and
`train_runs(configs, workdirs)`: the loop of one run or of several trained together.

What the loop prepares is `seqrnn.prepare`'s; each run's host-side state and files
are `seqrnn.run_state.Run`'s; what stacking runs adds is `seqrnn.group`'s."""

import contextlib
import pathlib
import signal
import sys
import threading
import time

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import tqdm

from seqrnn import config as config_lib
from seqrnn import ctc, group
from seqrnn import hosts
from seqrnn import workdir as workdir_lib
from seqrnn.checkpoint import Checkpoints, NoUsableCheckpoint
from seqrnn.data import batching
# Also used from here by the benchmarks and research code: seqrnn.run.prepare_data, ...
from seqrnn import prepare
from seqrnn.prepare import (load_and_check_data, packing_line, prepare_data,  # noqa: F401
                            put_sharded, seed_keys, use_compilation_cache)
from seqrnn.run_state import Run, say, test_of_best
from seqrnn.tasks import accumulate, summarize
from seqrnn.train import eval_step, predict


class Preempted(Exception):
  """The run received SIGTERM/SIGINT; a checkpoint of the current step was saved."""


class Pruned(Exception):
  """`on_eval` stopped the run after an evaluation (a search's pruner judged it hopeless).
  It has the checkpoints saved before, and no test metrics."""


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


def _check_resume(workdir, saved, config):
  """Refuses a workdir whose run (`saved`, its flat config) used other values of the fields
  a resume may not change."""
  conflicts = config_lib.resume_conflicts(saved, config) if saved else {}
  if conflicts:
    detail = '; '.join(f'{k}: saved {a!r}, now {b!r}' for k, (a, b) in conflicts.items())
    raise ValueError(f'{workdir} holds a run with a different config ({detail}); its '
                     f'checkpoints cannot be resumed with it. Use another --workdir.')


def train_and_evaluate(config, workdir, *, restart_from_scratch=False, on_eval=None):
  """Trains `config` in `workdir`, resuming from its latest usable checkpoint.

  Writes config.json (and config_history.jsonl on later starts), metrics.jsonl,
  TensorBoard events and checkpoints/, holding the workdir's lock throughout.
  Returns {'eval': metrics, 'test': metrics, ...} at the end of training.

  A workdir whose checkpoints were all set aside as damaged is refused, so an
  earlier run's metrics are never replaced by a run from step 0 nobody asked
  for; `restart_from_scratch` trains it from step 0, moving the earlier
  metrics.jsonl and best/ aside first.

  `on_eval(0, step, metrics)`, if given, is called on process 0 after each evaluation
  with its eval metrics; when it returns True the run stops there, raising `Pruned`.
  """
  (outcome,) = train_runs([config], [workdir], restart_from_scratch=restart_from_scratch,
                          on_eval=on_eval)
  if isinstance(outcome, Exception):
    raise outcome
  return outcome


def train_runs(configs, workdirs, *, restart_from_scratch=False, on_eval=None):
  """Trains K >= 1 runs, each in its own workdir exactly as if it ran alone.

  One run is `train_and_evaluate`. Several (configs differing only in the fields
  of `seqrnn.group.VECTORISED`) train together, stacked along a leading model
  axis in one vectorised step (`seqrnn.group`); the loop around the step, every
  run's files, the evaluations, signals and many processes are the same code.
  Returns, per run, its results dict or the error that stopped it alone (an
  update rejected without `train.skip_nonfinite`, or `Pruned` when `on_eval(k, step,
  metrics)` returned True for run k: its siblings go on). Raises
  ValueError before anything is written if the configs do not form a group or
  their workdirs hold checkpoints of different steps (train those one by one).
  """
  if len(configs) != len(workdirs) or not configs:
    raise ValueError(f'{len(configs)} configs for {len(workdirs)} workdirs')
  for workdir in workdirs:
    if workdir is None or not str(workdir).strip():
      raise ValueError(f'workdir={workdir!r}: name the directory the run writes into')
    workdir_lib.check_local(workdir)
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
      for sub in ('checkpoints', 'best'):
        workdir_lib.check_writable(workdir / sub, 'the checkpoint directory')
    outcomes = _train(configs, workdirs, restart_from_scratch, on_eval)
    return [_refit(c, w, o) if c.train.refit and not isinstance(o, Exception) else o
            for c, w, o in zip(configs, workdirs, outcomes)]


def _refit(config, workdir, results):
  """`results` with 'refit': the results of `config` trained again from scratch on the
  whole training split for the epochs of its selected step (train.refit), in
  WORKDIR/refit, a workdir of its own (resumable; its eval split is its training split)."""
  epochs = results['best_step'] / results['steps_per_epoch']
  refit = config.copy_and_resolve_references()
  refit.data.uea.eval_fraction, refit.train.num_epochs = 0.0, epochs
  refit.train.refit, refit.train.early_stopping_patience = False, 0
  say(f'refit: the selected step {results["best_step"]} is {epochs:.2f} epochs of the training '
      f'series left after holding out eval; training {epochs:.2f} epochs of all of them in '
      f'{workdir / "refit"}')
  (outcome,) = train_runs([refit], [workdir / 'refit'])
  if isinstance(outcome, Exception):
    return outcome
  say('refit test: ' + _fmt(outcome['test']))
  return {**results, 'refit': {'epochs': epochs, 'test': outcome['test']}}


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


def restore_run(workdir, checkpoint='best'):
  """(config, setup, state) of a saved state of the run in `workdir`: its config as
  config.json holds it, its data prepared again, and the state of `checkpoint` ('best',
  'latest' or a step number), on every device."""
  workdir = pathlib.Path(workdir)
  flat = workdir_lib.saved_config(workdir)
  if flat is None:
    raise FileNotFoundError(f'{workdir} holds no run (no config.json)')
  config = config_lib.from_flat_dict(flat)
  setup = prepare.setup([config], started=[flat])
  sub = 'best' if checkpoint == 'best' else 'checkpoints'
  checkpoints = Checkpoints((workdir / sub).absolute(), None, read_only=True)
  try:
    step = None if checkpoint in ('best', 'latest') else int(checkpoint)
    state, loop = checkpoints.restore(setup.states[0], step)
  finally:
    checkpoints.close()
  if not loop:
    raise NoUsableCheckpoint(f'{workdir / sub} holds no checkpoint yet')
  return config, setup, state


def evaluate_checkpoint(workdir, checkpoint='best', split='test', beam_width=0):
  """Metrics of a saved state of the run in `workdir`, with the config it runs.

  `checkpoint`: 'best' (the best eval step's state, WORKDIR/best), 'latest', or a
  step number of WORKDIR/checkpoints. `beam_width` > 0 (task 'ctc', one process) adds
  the metrics of prefix beam search decoding (`beam_...`). Writes nothing. Returns
  (step, metrics).
  """
  config, setup, state = restore_run(workdir, checkpoint)
  if split not in setup.dataset.splits:
    raise ValueError(f'split={split!r} is not one of {sorted(setup.dataset.splits)}')
  if beam_width and (config.task != 'ctc' or jax.process_count() > 1):
    raise ValueError(f'beam_width={beam_width}: beam search decodes CTC outputs (this run\'s task '
                     f'is {config.task!r}) on one process (there are {jax.process_count()})')
  if not beam_width:
    return int(hosts.local_value(state.step)), _evaluate(
        state, setup.dataset.splits[split], config, setup.buckets,
        put_sharded(setup.mesh, P('data')))
  total = None  # one pass: each batch's outputs give the task's metrics and the beams'
  for batch in batching.eval_batches(setup.dataset.splits[split], buckets=setup.buckets,
                                     batch_size=config.data.eval_batch_size):
    outputs, metrics = _jit_predict_and_eval(state, batch)
    total = accumulate(total, {**metrics, **ctc.beam_metrics(np.asarray(outputs, np.float32),
                                                             batch, beam_width)})
  return int(hosts.local_value(state.step)), summarize(total)


@jax.jit
def _jit_predict_and_eval(state, batch):
  """(the model's outputs, the task's metrics) of a batch: `eval_step` keeping its outputs."""
  outputs = predict(state, batch)
  return outputs, state.task(outputs, batch)


def _train(configs, workdirs, restart_from_scratch, on_eval):
  saved = [workdir_lib.saved_config(w) for w in workdirs]
  setup = prepare.setup(configs, started=saved)
  configs = setup.configs  # config.adapt's rule applied, train.num_epochs now in steps
  for config, workdir, began in zip(configs, workdirs, saved):
    _check_resume(workdir, began, config)  # as adapted: what config.json holds
  _say_data(configs[0], setup.dataset, setup.buckets, setup.steps_per_epoch)
  if setup.adapted:
    say(f'config.adapt={configs[0].adapt} for this training split: ' + ', '.join(
        f'{k} {a!r} -> {b!r}' for k, (a, b) in setup.adapted.items()))
  runs = []
  try:
    for config, workdir, fresh in zip(configs, workdirs, setup.states):
      runs.append(Run(config, workdir, fresh, restart_from_scratch))
    starts = sorted({r.start for r in runs})
    if len(starts) > 1:
      raise ValueError(f'the runs hold checkpoints of different steps {starts}: train them '
                       f'one by one')
    for r in runs:
      r.open_log(starts[0])
    return _loop(runs, setup, starts[0], on_eval)
  finally:
    for r in runs:
      r.close()


def _loop(runs, setup, start, on_eval=None):
  """Trains `runs` (all at step `start`) to train.num_steps, then evaluates each; a run
  whose eval metric stopped improving (train.early_stopping_patience) ends earlier."""
  configs = [r.config for r in runs]
  cfg, k_runs = configs[0].train, len(runs)
  end = cfg.num_steps
  if k_runs == 1 and runs[0].stopped_early is not None:  # a resume of a run that had ended
    say(f'the run stopped early at step {start}: nothing is trained; it is evaluated')
    end = start
  dataset, buckets, mesh = setup.dataset, setup.buckets, setup.mesh
  batch_args = dict(batch_size=configs[0].data.batch_size, buckets=buckets,
                    pack=configs[0].data.pack, balance=configs[0].data.balance_classes,
                    process_index=jax.process_index(),
                    process_count=jax.process_count())
  put_rows = put_sharded(mesh, P('data'))  # [batch, ...]: split by rows over every device
  jitted, hyper = group.hyper_step(configs, setup.models[0])
  if k_runs == 1:
    state = runs[0].state
    extra = (runs[0].key_data, hyper)
    put = put_rows
    make = lambda step: put(batching.train_batch(dataset.splits['train'], step,
                                                 seed=configs[0].seed, **batch_args))
  else:  # [models, batch, ...]: the batch axis sharded
    state = jax.device_put(group.stack([r.state.replace(tx=setup.states[0].tx) for r in runs]),
                           NamedSharding(mesh, P()))
    extra = (np.stack([r.key_data for r in runs]), hyper)
    put = put_sharded(mesh, P(None, 'data'))
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
      say(f'compiled the train step for inputs {shape} in '
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
    return _evaluate(state_k, dataset.splits[split], configs[k], buckets, put_rows,
                     stop, on_stop=lambda: (
                         f'stopped by a signal during the final {split} evaluation; '
                         f'{saved(last_step)}; run again with the same --workdir to evaluate it'))

  def finish(k, state_k, step, stop):
    """Run k's final evaluations: eval, test of `state_k` (step `step`), test of the best."""
    r = runs[k]
    r.results['eval'] = r.results.get('eval') or evaluate(k, 'eval', state_k, stop)
    r.results['test'] = evaluate(k, 'test', state_k, stop)
    r.log.write(step, 'test', r.results['test'])
    r.results.update(test_of_best(r.best, state_k, step, r.results['test'],
                                  lambda s: evaluate(k, 'test', s, stop), r.log))
    r.results.update(compiled_train_shapes=len(compiled), buckets=buckets,
                     steps_per_epoch=setup.steps_per_epoch)
    if r.stopped_early is not None:
      r.results['stopped_early'] = r.stopped_early
    r.log.write_hparams(config_lib.to_flat_dict(r.config), {
        f'{split}_{name}': value for split in ('eval', 'test', 'test_best')
        for name, value in r.results.get(split, {}).items()})
    r.finished = True

  last_step, pending = start, []  # pending: (step, device metrics) not yet fetched
  window_start, window_steps = time.perf_counter(), 0
  bar_name = 'train' if k_runs == 1 else f'train {k_runs} models'
  # A bar on a terminal; in a log file (a batch job, `> log 2>&1`) a plain line a log step.
  on_terminal = sys.stderr.isatty()
  with _stop_on_signals() as stop:
    with tqdm(total=cfg.num_steps, initial=min(start, cfg.num_steps), desc=bar_name,
              dynamic_ncols=True, disable=not (hosts.is_main() and on_terminal)) as bar:
      for step, batch in zip(range(start + 1, end + 1),
                             batching.prefetch(make, range(start, end))):
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
        active = [k for k, r in enumerate(runs) if r.error is None and not r.finished]
        if not active:
          break
        if logs:
          now = time.perf_counter()
          rate = window_steps / (now - window_start)
          for k in active:
            train_metrics = runs[k].write_train(step, rate)
          shown = {k: f'{train_metrics[k]:.4f}' for k in ('loss', 'accuracy') if k in train_metrics}
          if k_runs == 1:
            bar.set_postfix(shown)
          if not on_terminal:
            say(f'{bar_name} step {step}/{cfg.num_steps}: '
                + ''.join(f'{k}={v} ' for k, v in shown.items() if k_runs == 1)
                + f'({rate:.1f} steps/s, {(cfg.num_steps - step) / rate:.0f} s left)')
          window_start, window_steps = now, 0
        states = {k: state_of(k) for k in active} if evals or saves else {}
        if evals:
          for k in active:
            runs[k].write_eval(step, evaluate(k, 'eval', states[k]), states[k])
          _say_eval(step, runs)
          if on_eval is not None:
            for k in active:  # process 0 asks (a search's storage is its); all stop the run
              if hosts.any_process(hosts.is_main() and on_eval(k, step, runs[k].results['eval'])):
                runs[k].error = Pruned(f'pruned at step {step}: eval '
                                       f'{_fmt(runs[k].results["eval"])}')
          for k in active:
            if runs[k].error is None and runs[k].patience_spent():
              r = runs[k]
              r.stopped_early = step
              say(f'{"" if k_runs == 1 else f"run {k}: "}stopped early at step {step}: eval '
                  f'{cfg.best_metric} has not improved on step {r.best.latest_step()}\'s for '
                  f'{r.since_best} evaluations (train.early_stopping_patience)')
              r.save(step, states[k])
              finish(k, states[k], step, stop)
          active = [k for k in active if runs[k].error is None and not runs[k].finished]
          if not active:
            break
        if saves:
          for k in active:
            runs[k].save(step, states[k])
        if stopping:
          raise Preempted(f'stopped by a signal at step {step}; {saved(step)}; run again with '
                          f'the same --workdir to resume')

    # Signals stay handled until the last line is written: a stop here leaves
    # the final checkpoint, and a restart redoes only this evaluation.
    for k, r in enumerate(runs):
      if r.error is None and not r.finished:
        finish(k, state_of(k), last_step, stop)
  return [r.error if r.error is not None else r.results for r in runs]


def _drain(pending, runs):
  """Fetches the pending steps' metrics into each run still training."""
  picks = [lambda x: x] if len(runs) == 1 else [lambda x, k=k: x[k] for k in range(len(runs))]
  for (step, _), metrics in zip(pending, hosts.local_value([m for _, m in pending])):
    for r, pick in zip(runs, picks):
      if r.error is None:
        r.add(step, {name: (float(pick(s)), float(pick(n))) for name, (s, n) in metrics.items()})


def _say_data(config, dataset, buckets, per_epoch):
  """The data line: sequences, padded lengths, packing and padding."""
  train_split = dataset.splits['train']
  padding = batching.epoch_padding_fraction(train_split, batch_size=config.data.batch_size,
                                            buckets=buckets, seed=config.seed,
                                            pack=config.data.pack,
                                            balance=config.data.balance_classes)
  eval_padding = batching.eval_padding_fraction(
      dataset.splits['eval'], batch_size=config.data.eval_batch_size, buckets=buckets)
  epochs = (f'train.num_epochs={config.train.num_epochs:g}: {config.train.num_steps} steps'
            if config.train.num_epochs else f'{config.train.num_steps / per_epoch:.1f} epochs')
  say(f'data {config.data.name}: {len(train_split["lengths"])} training sequences, '
      f'padded lengths {buckets}{packing_line(train_split, buckets) if config.data.pack else ""}, '
      f'{per_epoch} steps an epoch ({epochs}), padding fraction of a training epoch '
      f'{padding:.3f}, of evaluation {eval_padding:.3f}')
  if dataset.splits['eval'] is train_split:
    say('the eval split is the training split (data.uea.eval_fraction=0): eval metrics are '
        'training metrics without dropout, and the test line is the model of the last step')


def _say_eval(step, runs):
  if len(runs) == 1:
    say(f'step {step}: eval ' + _fmt(runs[0].results['eval']))
    return
  name = runs[0].config.train.best_metric
  say(f'step {step}: eval {name} ' + ' '.join(
      f'{r.results["eval"][name]:.4f}' if r.error is None and not r.finished else 'stopped'
      for r in runs))


def _fmt(metrics):
  return ' '.join(f'{k}={v:.4f}' for k, v in metrics.items())
