"""Runs every config of a sweep, each in its own resumable workdir, then reports.

  python -m experiments.sweep --config=experiments/configs/digits.py \
      --sweep=experiments/sweeps/digits_cells.py --workdir=/tmp/sweep

A sweep file defines `get_sweep()`: a list of override dicts
({'model.cell': 'lstm', 'optim.learning_rate': 1e-3}), built with
`experiments.sweeps.product` and `zipped` or by hand. Run i goes to WORKDIR/runs/NAME, NAME made of its
overrides; its `status.json` says `done` (with its results and wall time) or
`failed` (with the error): a failed run (a bad value, a NaN) does not stop the
others. Started again, a sweep skips the runs that are done and resumes the
others from their checkpoints. Runs that differ only in the fields of
`seqrnn.group.VECTORISED` (seed, learning rate, weight decay, clipping norm,
regularisation rates) train together, K models in one jitted step
(`--novectorise` trains every run on its own). At the end `experiments.report` writes
WORKDIR/report.md, report.csv and the figures.

`--search=random --trials=N` draws N runs from the sweep file's `get_search_space()`
(`experiments.sweeps.random`); `--search=optuna --trials=N` searches it with Optuna,
pruning hopeless trials (`experiments.search`).
"""

import importlib.util
import json
import os
import pathlib
import sys
import time
import traceback

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

import seqrnn
import seqrnn.run
from experiments import distributed, sweeps
from experiments import report as report_lib
from seqrnn import workdir as workdir_lib

FLAGS = flags.FLAGS


def _load(path, function):
  """What the function `function` of the Python file at `path` returns."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'--sweep={str(path)!r} is not a file')
  spec = importlib.util.spec_from_file_location(f'_sweep_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, function):
    raise ValueError(f'{path} defines no {function}()')
  return getattr(module, function)()


def load_space(path):
  """The search space, {field: spec}, of the sweep file at `path` (get_search_space())."""
  return _load(path, 'get_search_space')


def load_sweep(path):
  """The override dicts of the sweep file at `path`."""
  path = pathlib.Path(path)
  sweep = _load(path, 'get_sweep')
  if not sweep or not all(isinstance(o, dict) for o in sweep):
    raise ValueError(f'{path}: get_sweep() must return a non-empty list of override dicts')
  sweep = [_plain(o) for o in sweep]
  names = [run_name(o) for o in sweep]
  if len(set(names)) != len(names):
    raise ValueError(f'{path}: get_sweep() lists a run twice: {sorted(names)}')
  return sweep


def _plain(overrides):
  """`overrides` with numpy scalars (`np.arange(3)`'s items) as Python numbers."""
  return {k: v.item() if isinstance(v, np.generic) else v for k, v in overrides.items()}


def run_name(overrides):
  """A directory name for a run: its overrides, `field=value` joined by commas."""
  if not overrides:
    return 'base'
  return ','.join(f'{k}={v}' for k, v in overrides.items()).replace('/', '_')


def with_overrides(config, overrides):
  """A copy of `config` with `overrides` ({'group.field': value}) applied; an unknown
  field or a value of the wrong type raises, naming it."""
  config = config.copy_and_resolve_references()
  for name in set(overrides) & set(seqrnn.config.RENAMED):
    logging.warning('override %s is deprecated: it is now %s', name, seqrnn.config.RENAMED[name])
  for name, value in overrides.items():
    try:
      seqrnn.config.set_field(config, name, value)
    except ValueError as e:
      raise ValueError(f'override {name}={value!r}: {e}') from None
  seqrnn.validate_config(config)
  return config


def _status_path(run_dir):
  return run_dir / report_lib.STATUS_FILE


def _begin(overrides, run_dir):
  """Marks `run_dir` running; returns its status dict (wall time carried over)."""
  run_dir.mkdir(parents=True, exist_ok=True)
  path = _status_path(run_dir)
  previous = report_lib.read_status(run_dir)
  status = {'overrides': overrides, 'status': 'running', 'wall_s': previous.get('wall_s', 0.0)}
  _write(path, status)
  return status


def _end(status, run_dir, outcome, seconds):
  """Records a run's results dict, or the exception that stopped it."""
  if isinstance(outcome, seqrnn.Pruned):  # by a search's pruner: not a failure
    status.update(status='pruned', error=str(outcome).splitlines()[0][:500])
  elif isinstance(outcome, Exception):
    status.update(status='failed', error=f'{type(outcome).__name__}: {outcome}'.splitlines()[0][:500])
  else:
    status.update(status='done', results={k: v for k, v in outcome.items()
                                          if k in ('eval', 'test', 'test_best', 'best_step',
                                                   'stopped_early', 'refit')})
  status['wall_s'] += seconds
  _write(_status_path(run_dir), status)
  return status


ELSEWHERE = 'running elsewhere'  # another process (a second sweep on this workdir) holds it


def run_one(config, overrides, run_dir, on_eval=None):
  """Trains one run of the sweep in `run_dir`, writing its status.json. Returns it.
  `on_eval(0, step, metrics)` returning True prunes it (`seqrnn.train_and_evaluate`)."""
  previous = report_lib.read_status(run_dir)
  if previous.get('status') == 'done':  # finished meanwhile by another sweep process
    return previous
  status = _begin(overrides, run_dir)
  start = time.perf_counter()
  try:
    outcome = seqrnn.train_and_evaluate(with_overrides(config, overrides), run_dir,
                                        on_eval=on_eval)
  except workdir_lib.WorkdirInUse:  # taken since it was seen free: the holder's status stands
    _write(_status_path(run_dir), previous or status)
    return {**status, 'status': ELSEWHERE}
  except seqrnn.Preempted:
    _write(_status_path(run_dir), {**status, 'status': 'stopped'})
    raise
  except Exception as e:  # noqa: BLE001 - a failed run is recorded; the sweep goes on
    outcome = e
    logging.debug(traceback.format_exc())
  return _end(status, run_dir, outcome, time.perf_counter() - start)


def run_together(config, jobs, on_eval=None):
  """Trains `jobs` [(overrides, run_dir)], two or more of one shape, as one vectorised
  group (`seqrnn.group`); one by one where the group cannot be formed. Returns statuses.
  `on_eval(k, step, metrics)` returning True prunes job k alone."""
  alone = lambda k: None if on_eval is None else lambda _, *a: on_eval(k, *a)
  previous = [report_lib.read_status(d) for _, d in jobs]
  statuses = [_begin(o, d) for o, d in jobs]
  start = time.perf_counter()
  try:
    outcomes = seqrnn.run.train_runs([with_overrides(config, o) for o, _ in jobs],
                                     [d for _, d in jobs], on_eval=on_eval)
  except workdir_lib.WorkdirInUse:  # another process took one: the rest go one by one
    for before, status, (_, d) in zip(previous, statuses, jobs):
      _write(_status_path(d), before or status)
    return [run_one(config, o, d, alone(k)) for k, (o, d) in enumerate(jobs)]
  except seqrnn.Preempted:
    for status, (_, d) in zip(statuses, jobs):
      _write(_status_path(d), {**status, 'status': 'stopped'})
    raise
  except Exception as e:  # noqa: BLE001 - e.g. checkpoints of different steps, or damaged
    # One by one, each run resumes from its own checkpoints and records its own failure.
    logging.warning('training %d runs one by one: %s', len(jobs), e)
    return [run_one(config, o, d, alone(k)) for k, (o, d) in enumerate(jobs)]
  seconds = time.perf_counter() - start
  return [_end({**status, 'trained_with': len(jobs)}, d, outcome, seconds)
          for status, (_, d), outcome in zip(statuses, jobs, outcomes)]


def _write(path, record):
  if not seqrnn.hosts.is_main():
    return  # on many processes, process 0 writes for all
  tmp = path.with_suffix(f'.{os.getpid()}.tmp')  # two sweep processes may write one status
  tmp.write_text(json.dumps(record, indent=1) + '\n')
  tmp.replace(path)


def batches(config, jobs, vectorise):
  """`jobs` [(index, overrides, run_dir)] in lists trained together: runs whose
  configs differ only in `seqrnn.group.VECTORISED` fields, when `vectorise`."""
  if not vectorise:
    return [[job] for job in jobs]
  from seqrnn.group import group_key
  groups = {}
  for job in jobs:
    try:
      key = group_key(with_overrides(config, job[1]))
    except (ValueError, TypeError):
      key = ('alone', job[0])  # a bad value: it fails on its own
    groups.setdefault(key, []).append(job)
  return list(groups.values())


def run_sweep(config, sweep, workdir, say=print, vectorise=True):
  """Runs every override dict of `sweep` on `config` under `workdir`, skipping the
  runs already done, the runs of one shape together when `vectorise`; then writes
  the report. Returns {name: status}."""
  workdir_lib.check_local(workdir)
  workdir = pathlib.Path(workdir)
  sweep = [_plain(o) for o in sweep]
  check_fields(config, sweep)
  _check_same_runs(config, sweep, workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  statuses, todo = {}, []
  metric = config.train.best_metric
  best = None

  def record(i, name, status, what):
    nonlocal best
    statuses[name] = status
    value = status.get('results', {}).get('eval', {}).get(metric)
    if value is not None and seqrnn.config.better(metric, value, best and best[1]):
      best = (name, value)
    best_line = f'; best so far {best[0]} (eval {metric} {best[1]:.4f})' if best else ''
    say(f'[{i}/{len(sweep)}] {name}: {what}{best_line}')

  for i, overrides in enumerate(sweep, 1):
    name = run_name(overrides)
    run_dir = workdir / 'runs' / name
    status = report_lib.read_status(run_dir)
    if status.get('status') == 'done':
      record(i, name, status, 'done before, skipped')
    elif workdir_lib.held_elsewhere(run_dir):  # two sweep processes share the work
      record(i, name, {**status, 'status': ELSEWHERE}, 'held by another process, skipped')
    else:
      todo.append((i, overrides, run_dir))
  for batch in batches(config, todo, vectorise):
    together = f' (vectorised, {len(batch)} models in one step)' if len(batch) > 1 else ''
    for i, _, run_dir in batch:
      say(f'[{i}/{len(sweep)}] {run_dir.name}: running{together}')
    jobs = [(o, d) for _, o, d in batch]
    results = run_together(config, jobs) if len(batch) > 1 else [run_one(config, *jobs[0])]
    for (i, _, run_dir), status in zip(batch, results):
      record(i, run_dir.name, status,
             status['status'] + (f' ({status["error"]})' if 'error' in status else ''))
  statuses = {run_name(o): statuses[run_name(o)] for o in sweep}  # in the sweep's order
  if seqrnn.hosts.is_main():
    for path in report_lib.report(workdir, _swept_fields(sweep)):
      say(f'wrote {path}')
  return statuses


def check_fields(config, sweep):
  """Refuses, before anything runs, a sweep naming a field the config does not have (a
  typo would otherwise fail every run it is in, one by one). A bad value of a real field
  fails its run alone, recorded in its status."""
  names = sorted({name for overrides in sweep for name in overrides})
  errors = [e for e in map(seqrnn.config.unknown_field, names) if e is not None]
  if errors:
    raise ValueError(f'nothing was run: the sweep names {len(errors)} field(s) the config does '
                     f'not have: {"; ".join(errors)}')


def _check_same_runs(config, sweep, workdir):
  """Refuses a sweep whose runs already in `workdir` were started with another
  config than the one it gives them now (say a base config edited since): a run
  is the same run only if its whole resolved config is, and a finished one would
  otherwise be skipped and reported with the old config's results."""
  changed = []
  for overrides in sweep:
    run_dir = workdir / 'runs' / run_name(overrides)
    saved = workdir_lib.saved_config(run_dir)
    try:
      now = seqrnn.config.to_flat_dict(with_overrides(config, overrides))
    except (ValueError, TypeError):
      continue  # a bad value: refused when the run starts, and recorded as failed
    if saved is None:
      continue
    then = seqrnn.config.to_flat_dict(seqrnn.config.from_flat_dict(saved))
    fields = [f'{k} {then.get(k)!r} -> {v!r}' for k, v in now.items() if then.get(k) != v]
    if fields:
      changed.append(f'{run_dir.name} ({", ".join(fields[:4])}{", ..." if len(fields) > 4 else ""})')
  if changed:
    raise ValueError(
        f'{workdir} holds runs of this sweep started with another config: '
        f'{"; ".join(changed[:3])}{f"; and {len(changed) - 3} more" if len(changed) > 3 else ""}. '
        f'Nothing was run: give the sweep another --workdir, or the config it was started with')


def _swept_fields(sweep):
  """The fields that take more than one value in `sweep`, numeric wherever set."""
  fields = {k for o in sweep for k in o}
  return sorted(f for f in fields if report_lib.numeric_field([o.get(f) for o in sweep]))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  if FLAGS.search != 'grid' and not FLAGS.trials:
    raise app.UsageError(f'--search={FLAGS.search} needs --trials=N')
  distributed.initialize()
  say = print if seqrnn.hosts.is_main() else lambda _: None
  try:
    if FLAGS.search == 'optuna':
      from experiments import search
      statuses = search.run_search(
          FLAGS.config, load_space(FLAGS.sweep), FLAGS.workdir, trials=FLAGS.trials,
          storage=FLAGS.storage, pruner=FLAGS.pruner, at_once=FLAGS.trials_at_once,
          seed=FLAGS.search_seed, vectorise=FLAGS.vectorise, say=say)
    else:
      sweep = (load_sweep(FLAGS.sweep) if FLAGS.search == 'grid' else
               sweeps.random(FLAGS.trials, FLAGS.search_seed or 0, load_space(FLAGS.sweep)))
      statuses = run_sweep(FLAGS.config, sweep, FLAGS.workdir, vectorise=FLAGS.vectorise, say=say)
  except seqrnn.Preempted as e:
    sys.exit(f'{e}; run the sweep again to go on')
  except (ValueError, TypeError, OSError, ImportError) as e:
    sys.exit(f'error: {e}')
  elsewhere = [name for name, status in statuses.items() if status['status'] == ELSEWHERE]
  if elsewhere:
    print(f'{len(elsewhere)} runs were trained by another process: run the sweep again once '
          f'it ends for a report with their results')
  failed = [name for name, status in statuses.items() if status['status'] == 'failed']
  if failed:  # the exit status says so too, for scripts and schedulers
    sys.exit(f'{len(failed)} of {len(statuses)} runs failed ({", ".join(failed[:3])}'
             f'{", ..." if len(failed) > 3 else ""}): their errors are in report.md and in '
             f'each run\'s status.json')


def define_flags():
  """The command line's flags (defined when run as a program: experiments.search and
  the tests import this module)."""
  config_flags.DEFINE_config_file('config', None, 'The base config file.', lock_config=True)
  flags.DEFINE_string('sweep', None, 'A Python file with get_sweep().')
  flags.DEFINE_string('workdir', None, 'The sweep\'s directory (runs go to WORKDIR/runs).')
  flags.DEFINE_bool('vectorise', True, 'Train the runs that differ only in seed, learning rate, '
                    'weight decay, clipping norm and regularisation rates together, as one '
                    'vectorised model axis.')
  flags.DEFINE_enum('search', 'grid', ['grid', 'random', 'optuna'],
                    'grid: the runs of the sweep file\'s get_sweep(). random: --trials runs drawn '
                    'from its get_search_space(). optuna: an Optuna study of --trials trials over '
                    'get_search_space(), pruning hopeless trials (experiments.search).')
  flags.DEFINE_integer('trials', None, 'With --search=random or optuna: how many runs.')
  flags.DEFINE_string('storage', None, 'With --search=optuna: the study\'s storage URL '
                      '(default sqlite:///WORKDIR/study.db); processes sharing it share the study.')
  flags.DEFINE_enum('pruner', 'median', ['median', 'asha', 'none'], 'With --search=optuna.')
  flags.DEFINE_integer('trials_at_once', 1, 'With --search=optuna: trials asked together, trained '
                       'as one vectorised group where they differ in vectorisable fields only.')
  flags.DEFINE_integer('search_seed', None, 'Seeds the random draws of --search=random (default 0) '
                       'and Optuna\'s sampler (default: unseeded, so that processes sharing a study '
                       'draw different trials).')
  flags.mark_flags_as_required(['config', 'sweep', 'workdir'])


if __name__ == '__main__':
  define_flags()
  sys.argv = seqrnn.config.upgrade_command_line(sys.argv)  # names before the config groups
  if errors := seqrnn.config.command_line_errors(sys.argv[1:]):
    sys.exit('\n'.join(errors))
  app.run(main)
