"""Tables and figures of a finished run or sweep, from its files alone.

  python -m experiments.report WORKDIR

WORKDIR is one run's workdir (it holds metrics.jsonl) or a sweep's (its runs
are WORKDIR/runs/*). Writes into WORKDIR:
  report.md, report.csv  one row per run: its overrides, status, best eval
                         metric and its step, test metrics (of the last step and
                         of the best checkpoint), wall time, median steps/s
  curves.png, .pdf       learning curves of every run, one panel per metric,
                         train (thin) and eval (dots); in a sweep of more than 10
                         runs the best in colour, the others grey
  vs_FIELD.png, .pdf     for each swept numeric field: the best eval metric and
                         the test metric of the finished runs against its value
"""

import csv
import json
import math
import pathlib
import statistics
import sys

from absl import app

from seqrnn.config import better
from seqrnn.run_state import select_best

STATUS_FILE = 'status.json'  # written by experiments.sweep into each run's workdir


def read_metrics(run_dir):
  """metrics.jsonl of `run_dir` as a list of records (a line cut by a kill is skipped)."""
  path = pathlib.Path(run_dir) / 'metrics.jsonl'
  records = []
  if path.exists():
    for line in path.read_text().splitlines():
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


def read_status(run_dir):
  """The status.json of `run_dir` as a dict; {} when there is none, or when it cannot
  be read (cut short or garbled: said on stderr, naming it), i.e. a run not done."""
  path = pathlib.Path(run_dir) / STATUS_FILE
  if not path.exists():
    return {}
  try:
    status = json.loads(path.read_text())
    if not isinstance(status, dict):
      raise ValueError(f'a JSON {type(status).__name__}, not an object')
    return status
  except (ValueError, OSError) as e:
    sys.stderr.write(f'{path} cannot be read ({e}); the run is taken as not done\n')
    return {}


def _config(run_dir):
  path = pathlib.Path(run_dir) / 'config.json'
  return json.loads(path.read_text()) if path.exists() else {}


def run_row(run_dir, status=None):
  """One run's summary: a flat dict of what report.md/csv show (`status`: its
  status.json, read here if not given)."""
  run_dir = pathlib.Path(run_dir)
  status = read_status(run_dir) if status is None else status
  records = read_metrics(run_dir)
  best_name = _config(run_dir).get('train.best_metric', 'accuracy')
  evals = [r for r in records if r['split'] == 'eval' and best_name in r]
  row = {'run': run_dir.name, 'status': status.get('status', 'done' if any(
      r['split'] == 'test' for r in records) else 'unfinished')}
  row.update(status.get('overrides', {}))
  if evals:  # the step the run kept in best/
    best = select_best(evals, best_name, _config(run_dir).get('train.best_loss_margin', 0.0))
    row[f'best_eval_{best_name}'] = best[best_name]
    row['best_step'] = best['step']
  for split, prefix in (('test', 'test_'), ('test_best', 'test_best_')):
    for r in records:
      if r['split'] == split:
        row.update({prefix + k: v for k, v in r.items() if k not in ('step', 'split')})
  for r in read_metrics(run_dir / 'refit'):  # train.refit: trained again on all the data
    if r['split'] == 'test':
      row.update({'refit_test_' + k: v for k, v in r.items() if k not in ('step', 'split')})
  rates = [r['steps_per_s'] for r in records if r['split'] == 'train' and 'steps_per_s' in r]
  if rates:
    row['steps_per_s'] = statistics.median(rates)
  if 'wall_s' in status:
    row['wall_s'] = status['wall_s']
  if status.get('error'):
    row['error'] = status['error']
  return row


def run_dirs(workdir):
  """The run workdirs of `workdir`: itself for a single run, else its runs/*."""
  workdir = pathlib.Path(workdir)
  if (workdir / 'metrics.jsonl').exists() or (workdir / STATUS_FILE).exists():
    return [workdir]
  return sorted(p for p in (workdir / 'runs').glob('*') if p.is_dir())


def write_table(rows, workdir):
  """report.md and report.csv of `rows` in `workdir`; returns their paths."""
  columns = []
  for row in rows:
    columns += [k for k in row if k not in columns]
  workdir = pathlib.Path(workdir)
  with open(workdir / 'report.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(_cell(row.get(c, '')) for c in columns) + ' |' for row in rows]
  (workdir / 'report.md').write_text('\n'.join(lines) + '\n')
  return workdir / 'report.md', workdir / 'report.csv'


def _cell(value):
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value).replace('|', '/').replace('\n', ' ')[:200]


REPORT_EXTRA = "the figures need matplotlib: pip install 'seqrnn[report]'"


def _pyplot():
  try:
    import matplotlib
  except ImportError:
    raise ImportError(REPORT_EXTRA) from None
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


MAX_COLOURS = 10  # runs with a colour each; in a larger sweep the best in colour, the rest grey


def plot_curves(runs, path, best=None):
  """Learning curves: `runs` is {name: records}, one panel per metric, train a thin line
  and eval dots. Up to MAX_COLOURS runs each have a colour named in the legend; more are
  drawn grey but `best` (a run's name), so that a large sweep's figure stays readable.
  Writes `path` (PNG) and the same figure as PDF beside it (vector, for a paper)."""
  plt = _pyplot()
  from matplotlib.lines import Line2D
  names = sorted({k for records in runs.values() for r in records
                  if r['split'] in ('train', 'eval') for k in r
                  # the schedule is the config's: TensorBoard and metrics.jsonl have it
                  if k not in ('step', 'split', 'steps_per_s', 'skipped_updates',
                               'learning_rate')})
  cols = min(3, max(1, len(names)))
  rows = max(1, math.ceil(len(names) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 2.4, 3.2 * rows), squeeze=False,
                           layout='constrained')
  palette = plt.rcParams['axes.prop_cycle'].by_key()['color']
  many = len(runs) > MAX_COLOURS
  colours = {run: (palette[0] if run == best else '0.78') if many else palette[i % len(palette)]
             for i, run in enumerate(sorted(runs))}
  for ax, name in zip(axes.flat, names):
    for run, records in sorted(runs.items(), key=lambda item: item[0] == best):  # best on top
      for split, style in (('train', dict(lw=1, alpha=0.6)), ('eval', dict(marker='o', ms=3))):
        points = [(r['step'], r[name]) for r in records if r['split'] == split and name in r]
        if points:
          ax.plot(*zip(*points), color=colours[run], **style)
    ax.set_title(name)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(names):]:
    ax.axis('off')
  handles = [Line2D([], [], color='0.3', lw=1, alpha=0.6), Line2D([], [], color='0.3', marker='o',
                                                                  ms=3)]
  labels = ['train', 'eval']
  shown = [best] if many and best in runs else [] if many else sorted(runs)
  handles += [Line2D([], [], color=colours[run], lw=2) for run in shown]
  labels += [f'{run} (best)' if many else run for run in shown]
  if many:
    handles.append(Line2D([], [], color=colours[next(r for r in runs if r != best)], lw=2))
    labels.append(f'the other {len(runs) - len(shown)} runs')
  fig.legend(handles, [_short(l) for l in labels], loc='outside right upper', fontsize=7,
             frameon=False)
  return _save(fig, path, plt)


def plot_against(rows, field, metrics, path):
  """Each of `metrics` (row keys) against the numeric override `field`, over the runs
  that finished. Other overrides that repeat over few values (a cell, a depth) give a
  line each; continuous ones (a random search's) are not grouped: dots alone. Pruned
  runs show as grey rings where they have the metric (the best eval before they stopped)."""
  plt = _pyplot()
  done = [r for r in rows if r.get('status') == 'done' and _is_number(r.get(field))]
  pruned = [r for r in rows if r.get('status') == 'pruned' and _is_number(r.get(field))]
  others = sorted({k for r in done for k in r.get('_overrides', {}) if k != field})
  grouping = [k for k in others if 1 < len({repr(r.get(k)) for r in done}) <= 6
              and len({repr(r.get(k)) for r in done}) < len(done)]
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 2.4, 3.2),
                           squeeze=False, sharex=True, layout='constrained')
  for ax, metric in zip(axes.flat, metrics):
    groups = {}
    for row in done:
      if isinstance(row.get(metric), float):
        key = ', '.join(f'{k}={_short(row.get(k))}' for k in grouping)
        groups.setdefault(key, []).append((row[field], row[metric]))
    for key, points in sorted(groups.items()):
      ax.plot(*zip(*sorted(points)), 'o-' if grouping else 'o', label=key or None)
    rings = [(r[field], r[metric]) for r in pruned if isinstance(r.get(metric), float)]
    if rings:
      ax.plot(*zip(*rings), 'o', mfc='none', color='0.55', label='pruned (its best eval)')
    values = [x for x, _ in rings] + [x for points in groups.values() for x, _ in points]
    if values and min(values) > 0 and max(values) / min(values) >= 10:
      ax.set_xscale('log')
    ax.set_xlabel(field)
    ax.set_ylabel(metric.replace('_', ' '))
    ax.grid(alpha=0.3)
  left_out = len(rows) - len(done) - len(pruned)
  fig.suptitle(f'{len(done)} runs' + (f', {len(pruned)} pruned' if pruned else '')
               + (f' ({left_out} failed or unfinished, not shown)' if left_out else ''), fontsize=9)
  if grouping or pruned:
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc='outside right upper', fontsize=7,
               frameon=False)
  return _save(fig, path, plt)


def _short(value):
  """A float with 4 significant digits (a legend of full-precision draws is unreadable); a
  run's name one override a line."""
  return f'{value:.4g}' if isinstance(value, float) else str(value).replace(',', ',\n')


def _save(fig, path, plt):
  fig.savefig(path, dpi=150)
  fig.savefig(pathlib.Path(path).with_suffix('.pdf'))
  plt.close(fig)
  return path


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def numeric_field(values):
  """Whether a field's values over the runs (None where a run does not set it) are
  numbers, at least two of them different: a field to plot results against."""
  given = [v for v in values if v is not None]
  return all(_is_number(v) for v in given) and len(set(given)) > 1


def report(workdir, overrides_fields=()):
  """Writes the table and figures of `workdir` (a run or a sweep); returns the paths."""
  workdir = pathlib.Path(workdir)
  dirs = run_dirs(workdir)
  overrides = {}
  rows = []
  for d in dirs:
    status = read_status(d)
    overrides[d] = status.get('overrides', {})
    rows.append(run_row(d, status))
  paths = list(write_table(rows, workdir))
  for row, d in zip(rows, dirs):
    row['_overrides'] = overrides[d]
  curves = {d.name: read_metrics(d) for d in dirs}
  for stale in ('curves.png', 'curves.pdf'):  # an earlier report's figure, if any
    (workdir / stale).unlink(missing_ok=True)
  try:
    _pyplot()
  except ImportError as e:  # the light install: the tables alone, and why
    print(f'{workdir}: tables written; {e}', file=sys.stderr)
    return paths
  if any(curves.values()):  # runs that all failed before training draw nothing, not a blank
    best = None  # (run, value) of the best run in its metric's direction (a tie: the last name)
    for r in sorted(rows, key=lambda r: r['run'], reverse=True):
      for k in (k for k in r if k.startswith('best_eval_')):
        if better(k[len('best_eval_'):], r[k], best and best[1]):
          best = (r['run'], r[k])
    paths.append(plot_curves(curves, workdir / 'curves.png', best=best and best[0]))
  fields = list(overrides_fields) or sorted(
      {k for d in dirs for k in overrides[d] if numeric_field([r.get(k) for r in rows])})
  metrics = sorted({k for r in rows for k in r if k.startswith(('best_eval_', 'test_accuracy'))})
  for field in fields:
    if metrics:
      paths.append(plot_against(rows, field, metrics, workdir / f'vs_{field}.png'))
  return paths


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('usage: python -m experiments.report WORKDIR')
  if not run_dirs(argv[1]):
    raise app.UsageError(f'{argv[1]} holds no run (no metrics.jsonl, no runs/*)')
  for path in report(argv[1]):
    print(path)


if __name__ == '__main__':
  app.run(main)
