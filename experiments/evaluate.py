"""Evaluates a saved state of a run, with the config the run uses, or an ensemble of runs.

  python -m experiments.evaluate --workdir=/tmp/digits --checkpoint=best --split=test
  python -m experiments.evaluate --workdir=/tmp/s0,/tmp/s1,/tmp/s2 --checkpoint=latest
  python -m experiments.evaluate --workdir=/tmp/sweep --checkpoint=latest   # a sweep's runs

`--checkpoint`: `best` (the state of the best eval step, kept in WORKDIR/best),
`latest`, or a step number of WORKDIR/checkpoints. `--beam_width=K` (CTC runs) adds the
metrics of prefix beam search with K beams. Several workdirs (runs on the same data with the
softmax head, e.g. one config's seeds) are evaluated as an ensemble: their class probabilities
averaged (`seqrnn.ensemble`); a sweep's workdir (`experiments.sweep`: its runs under runs/,
named with commas) stands for all its runs. Nothing is written.
"""

import pathlib
import sys

from absl import app, flags, logging

import seqrnn
from experiments.report import run_dirs
from seqrnn.ensemble import evaluate_ensemble
from seqrnn.run import evaluate_checkpoint

flags.DEFINE_list('workdir', None, 'The run\'s workdir, or several: an ensemble of them; '
                  'a sweep\'s workdir: the ensemble of its runs.')
flags.DEFINE_string('checkpoint', 'best', "'best', 'latest' or a step number.")
flags.DEFINE_enum('split', 'test', ['train', 'eval', 'test'], 'The split to evaluate.')
flags.DEFINE_integer('beam_width', 0, 'CTC runs: also decode by prefix beam search with this '
                     'many beams (0: greedy only).')
flags.mark_flags_as_required(['workdir'])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  if FLAGS.checkpoint not in ('best', 'latest') and not FLAGS.checkpoint.isdigit():
    raise app.UsageError(f"--checkpoint={FLAGS.checkpoint!r}: 'best', 'latest' or a step")
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  workdirs = [run for workdir in FLAGS.workdir for run in runs_in(workdir)]
  if len(workdirs) > 1 and FLAGS.beam_width:
    raise app.UsageError('--beam_width decodes one CTC run, not an ensemble')
  try:
    if len(workdirs) > 1:
      step, metrics = evaluate_ensemble(workdirs, FLAGS.checkpoint, FLAGS.split)
    else:
      step, metrics = evaluate_checkpoint(workdirs[0], FLAGS.checkpoint, FLAGS.split,
                                          FLAGS.beam_width)
  except (ValueError, TypeError, OSError, RuntimeError) as e:
    sys.exit(f'error: {e}')
  if seqrnn.hosts.is_main():
    print(f'{FLAGS.split} at step {step} ({FLAGS.checkpoint}): '
          + ' '.join(f'{k}={v:.4f}' for k, v in metrics.items()))


def runs_in(workdir):
  """[workdir], or a sweep's runs where `workdir` holds no run of its own but runs/ (their
  names hold commas, which --workdir would split)."""
  workdir_path = pathlib.Path(workdir)
  if (workdir_path / 'config.json').exists() or not (workdir_path / 'runs').is_dir():
    return [workdir]
  return [str(run) for run in run_dirs(workdir_path) if (run / 'config.json').exists()]


if __name__ == '__main__':
  app.run(main)
