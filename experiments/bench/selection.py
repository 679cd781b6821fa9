"""Which eval metric should choose a run's model? A measurement, not a test.

  python -m experiments.bench.selection --workdir=/tmp/selection \
      --runs='uea.py:ArrowHead,uea.py:GunPoint' --set=data.uea.eval_fraction=0.25

Trains each run once, evaluating and keeping a checkpoint every `--every` steps, then
takes the test metrics of every kept step and says which step each rule would have
chosen and its test accuracy: the best eval accuracy (its first step), the lowest eval
loss, the last step, and the best test accuracy (an oracle no rule can reach). The
table ends with the mean of each over the runs.
"""

import json
import pathlib

from absl import app, flags

from jax.sharding import PartitionSpec as P

import seqrnn
from seqrnn import config as config_lib
from seqrnn import prepare
from seqrnn.checkpoint import Checkpoints
from seqrnn.run import _evaluate  # the loop's own evaluation
from seqrnn.run_state import select_best

_RUNS = flags.DEFINE_list('runs', ['uea.py:ArrowHead'], 'CONFIG_FILE:ARG of experiments/configs')
_SET = flags.DEFINE_multi_string('set', [], 'FIELD=VALUE (a Python literal) for every run')
_EVERY = flags.DEFINE_integer('every', 50, 'Steps between evaluations and kept checkpoints')
_MARGIN = flags.DEFINE_float('margin', 0.05, 'train.best_loss_margin of the rule '
                             '"eval accuracy within the margin"')
_WORKDIR = flags.DEFINE_string('workdir', '/tmp/selection', 'A workdir per run under it')


def _config(spec):
  import ast
  import importlib
  file, _, arg = spec.partition(':')
  module = importlib.import_module(f'experiments.configs.{file.removesuffix(".py")}')
  config = module.get_config(arg or None)
  for item in _SET.value:
    name, _, text = item.partition('=')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    config_lib.set_field(config, name, value)
  config.train.eval_every_steps = config.train.checkpoint_every_steps = _EVERY.value
  config.train.keep_checkpoints = config.train.num_steps // _EVERY.value + 1
  return config


def measure(spec, workdir):
  """{rule: (step, test accuracy)} of one run."""
  config = _config(spec)
  seqrnn.train_and_evaluate(config, workdir)
  records = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  evals = {r['step']: r for r in records if r['split'] == 'eval'}
  setup = prepare.setup([config])  # one setup, one compiled evaluation for every step
  checkpoints = Checkpoints((workdir / 'checkpoints').absolute(), None, read_only=True)
  put = prepare.put_sharded(setup.mesh, P('data'))
  test = {}
  for step in evals:
    state, _ = checkpoints.restore(setup.states[0], step)
    test[step] = _evaluate(state, setup.dataset.splits['test'], setup.configs[0],
                           setup.buckets, put)['accuracy']
  checkpoints.close()
  steps = sorted(evals)
  (workdir / 'selection.json').write_text(json.dumps(
      {s: {'eval': evals[s], 'test accuracy': test[s]} for s in steps}))
  ordered = [evals[s] for s in steps]  # the loop's own rule for the first three
  chosen = {
      'eval accuracy': select_best(ordered, 'accuracy')['step'],
      'within margin': select_best(ordered, 'accuracy', _MARGIN.value)['step'],
      'eval loss': select_best(ordered, 'loss')['step'],
      'last step': steps[-1],
      'oracle': max(steps, key=lambda s: test[s]),
  }
  return {rule: (step, test[step]) for rule, step in chosen.items()}


def main(argv):
  del argv
  root = pathlib.Path(_WORKDIR.value)
  rules = ('eval accuracy', 'within margin', 'eval loss', 'last step', 'oracle')
  print('| run | ' + ' | '.join(f'{r}: step, test acc' for r in rules) + ' |')
  print('|---' * (len(rules) + 1) + '|')
  table = []
  for spec in _RUNS.value:
    row = measure(spec, root / spec.replace('/', '_').replace(':', '_'))
    table.append(row)
    print(f'| {spec} | ' + ' | '.join(f'{row[r][0]}, {row[r][1]:.4f}' for r in rules) + ' |',
          flush=True)
  means = [sum(row[r][1] for row in table) / len(table) for r in rules]
  print('| mean | ' + ' | '.join(f'{m:.4f}' for m in means) + ' |')


if __name__ == '__main__':
  app.run(main)
