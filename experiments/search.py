"""A search over a config's hyperparameters with Optuna (`pip install 'seqrnn[sweeps]'`).

  python -m experiments.sweep --config=experiments/configs/digits.py \
      --sweep=experiments/sweeps/digits_search.py --workdir=/tmp/search \
      --search=optuna --trials=20

The sweep file's `get_search_space()` gives {field: uniform(a, b) | loguniform(a, b) |
a list to choose from | a value} (`experiments.sweeps`). Optuna's TPE sampler proposes
each trial's values; the trial is an ordinary run in WORKDIR/runs/trial_NNNN, its
status.json and report row as a sweep's. Each evaluation reports `train.best_metric`
to the trial, and the pruner (`median`: below the median of the finished trials at
that step; `asha`: successive halving) stops hopeless trials there (status `pruned`).
A trial's value is its best eval metric, the one its best/ checkpoint holds.

The study lives in `--storage` (default sqlite:///WORKDIR/study.db). Several sweep
processes, on one machine or several sharing WORKDIR, pull trials from the same study
until it holds `--trials`; a trial left running by a process that was stopped resumes
from its checkpoints in the next process to look. `--trials_at_once=K` asks K trials
at a time: when they differ only in vectorisable fields (`seqrnn.group.VECTORISED`:
learning rate, weight decay, ...) they train as one vectorised group.
"""

import contextlib
import fcntl
import pathlib

import seqrnn
from experiments import report as report_lib
from experiments import sweep as sweep_lib
from experiments.sweeps import loguniform, uniform
from seqrnn import workdir as workdir_lib

SWEEPS_EXTRA = "--search=optuna needs Optuna: pip install 'seqrnn[sweeps]'"
PRUNERS = ('median', 'asha', 'none')


def _optuna():
  try:
    import optuna
  except ImportError:
    raise ImportError(SWEEPS_EXTRA) from None
  optuna.logging.set_verbosity(optuna.logging.WARNING)  # our lines say what a trial did
  return optuna


def trial_dir(workdir, number):
  return pathlib.Path(workdir) / 'runs' / f'trial_{number:04d}'


def suggest(trial, space):
  """The overrides of `trial`: each field of `space` drawn by Optuna (or fixed)."""
  overrides = {}
  for field, spec in space.items():
    if isinstance(spec, loguniform):
      overrides[field] = trial.suggest_float(field, spec.low, spec.high, log=True)
    elif isinstance(spec, uniform):
      overrides[field] = trial.suggest_float(field, spec.low, spec.high)
    elif isinstance(spec, list):
      overrides[field] = trial.suggest_categorical(field, spec)
    else:
      overrides[field] = spec
  return overrides


def make_pruner(name, optuna):
  """`median`: a trial whose eval metric at a step is below the median of the finished
  trials' at that step stops (after two finished trials); `asha`: successive halving
  (Li et al. 2020), promoting a quarter of the trials at each rung; `none`."""
  if name == 'median':
    return optuna.pruners.MedianPruner(n_startup_trials=2)
  if name == 'asha':
    return optuna.pruners.SuccessiveHalvingPruner()
  if name == 'none':
    return optuna.pruners.NopPruner()
  raise ValueError(f'--pruner={name!r} is not one of {PRUNERS}')


@contextlib.contextmanager
def _claiming(workdir):
  """Holds WORKDIR/.claim while a process counts the study's trials and asks new ones,
  so that two processes never ask more than --trials between them."""
  with open(pathlib.Path(workdir) / '.claim', 'a+') as f:
    fcntl.flock(f, fcntl.LOCK_EX)  # waits: the other process holds it for milliseconds
    yield


def _claim(study, space, workdir, at_once, trials, optuna):
  """Up to `at_once` trials to train: first those a stopped process left running
  (resumed), then new ones while the study holds fewer than `trials`. Returns
  [(optuna Trial, overrides, run_dir)]."""
  claimed = []
  for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
    run_dir = trial_dir(workdir, frozen.number)
    status = report_lib.read_status(run_dir)
    # 'stopped' by a signal, or 'running' with no live process holding its lock: a killed
    # one. 'running' with no lock file yet is a trial another process has just begun: its
    # status is written a moment before its run first locks the workdir.
    left = status.get('status') == 'stopped' or (status.get('status') == 'running'
                                                 and (run_dir / workdir_lib.LOCK).exists())
    if len(claimed) < at_once and left and not workdir_lib.held_elsewhere(run_dir):
      # Optuna has no public way to reopen a trial: Trial(study, id) is what ask() returns.
      claimed.append((optuna.trial.Trial(study, frozen._trial_id), status['overrides'], run_dir,
                      set(frozen.intermediate_values)))
  while len(claimed) < at_once and len(study.get_trials(deepcopy=False)) < trials:
    trial = study.ask()
    claimed.append((trial, suggest(trial, space), trial_dir(workdir, trial.number), set()))
  return claimed


def _reporter(trial, metric, reported):
  """on_eval for `trial`: reports each evaluation's `metric` (but the steps `reported`
  before), True when the pruner stops the trial."""

  def on_eval(step, metrics):
    if step not in reported:  # a resumed trial may evaluate a step again
      trial.report(metrics[metric], step)
      reported.add(step)
    return trial.should_prune()
  return on_eval


def _tell(study, trial, status, run_dir, metric, optuna):
  """Tells the study how `trial` ended: its value is its best eval `metric`."""
  state = optuna.trial.TrialState
  if status['status'] == 'done':
    value = report_lib.run_row(run_dir, status).get(f'best_eval_{metric}')
    study.tell(trial, value, state=None if value is not None else state.FAIL)
  elif status['status'] == 'pruned':
    study.tell(trial, state=state.PRUNED)
  elif status['status'] == 'failed':
    study.tell(trial, state=state.FAIL)
  # else running elsewhere: the process training it tells


def _best(study, workdir, metric, optuna, prefix, params=False):
  """A line on the study's best finished trial (all processes'), '' before there is one."""
  done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
  if not done:
    return ''
  top = study.best_trial
  return (f'{prefix}{trial_dir(workdir, top.number).name} (eval {metric} {top.value:.4f})'
          + (f' {_show(top.params)}' if params else ''))


def run_search(config, space, workdir, *, trials, storage=None, pruner='median', at_once=1,
               seed=None, vectorise=True, say=print):
  """Runs an Optuna study of `trials` trials over `space` on `config` under `workdir`
  with the others sharing its storage; then writes the report. Returns {name: status}."""
  optuna = _optuna()
  if not space or not isinstance(space, dict):
    raise ValueError('get_search_space() must return a non-empty dict {field: spec}')
  if trials < 1 or at_once < 1:
    raise ValueError(f'--trials={trials} and --trials_at_once={at_once} must be at least 1')
  _check_space(config, space)
  workdir_lib.check_local(workdir)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  url = storage or f'sqlite:///{workdir.absolute() / "study.db"}'
  metric = config.train.best_metric
  base = seqrnn.config.to_flat_dict(config)
  with _claiming(workdir):  # two processes starting together: one creates the tables
    storage = (optuna.storages.RDBStorage(url, engine_kwargs={'connect_args': {'timeout': 60}})
               if url.startswith('sqlite:') else url)  # the other waits for a write to end
    study = optuna.create_study(
        storage=storage, study_name=workdir.name, load_if_exists=True,
        direction='minimize' if metric in seqrnn.config.LOWER_IS_BETTER else 'maximize',
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),  # sees running trials
        pruner=make_pruner(pruner, optuna))
    saved = study.user_attrs.get('base_config')
    if saved is None:
      study.set_user_attr('base_config', base)
  if saved is not None and saved != base:
    changed = [f'{k} {saved.get(k)!r} -> {v!r}' for k, v in base.items() if saved.get(k) != v]
    raise ValueError(f'the study {workdir.name!r} in {url} was started with another base '
                     f'config ({", ".join(changed[:4])}): nothing was run. Give the search another '
                     f'--workdir, or the config it was started with')
  statuses = {}
  while True:
    with _claiming(workdir):
      claimed = _claim(study, space, workdir, at_once, trials, optuna)
    if not claimed:
      break
    jobs = [(trial.number, overrides, run_dir) for trial, overrides, run_dir, _ in claimed]
    by_number = {c[0].number: c for c in claimed}
    for group in sweep_lib.batches(config, jobs, vectorise):
      group_trials = [by_number[n][0] for n, _, _ in group]
      reporters = [_reporter(by_number[n][0], metric, reported=by_number[n][3])
                   for n, _, _ in group]
      on_eval = lambda k, step, metrics: reporters[k](step, metrics)
      together = f' (vectorised, {len(group)} models in one step)' if len(group) > 1 else ''
      for n, overrides, run_dir in group:
        say(f'[trial {n + 1}/{trials}] {run_dir.name} {_show(overrides)}: running{together}')
      results = (sweep_lib.run_together(config, [(o, d) for _, o, d in group], on_eval)
                 if len(group) > 1 else [sweep_lib.run_one(config, *group[0][1:], on_eval)])
      for (n, _, run_dir), trial, status in zip(group, group_trials, results):
        _tell(study, trial, status, run_dir, metric, optuna)
        statuses[run_dir.name] = status
        say(f'[trial {n + 1}/{trials}] {run_dir.name}: {status["status"]}'
            f'{" (" + status["error"] + ")" if "error" in status else ""}'
            f'{_best(study, workdir, metric, optuna, "; best so far ")}')
  if seqrnn.hosts.is_main():
    if line := _best(study, workdir, metric, optuna, 'best trial of the study: ', params=True):
      say(line)
    for path in report_lib.report(workdir, sorted(
        f for f, spec in space.items() if isinstance(spec, (uniform, loguniform)))):
      say(f'wrote {path}')
  return statuses


def _check_space(config, space):
  """Refuses, before any trial, a field the config lacks or a value it refuses (the low
  end of a range, each choice of a list), naming it."""
  sweep_lib.check_fields(config, [space])
  for field, spec in space.items():
    for value in (spec if isinstance(spec, list) else
                  [spec.low] if isinstance(spec, (uniform, loguniform)) else [spec]):
      sweep_lib.with_overrides(config, {field: value})


def _show(overrides):
  return ', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in overrides.items())
