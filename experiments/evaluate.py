"""Evaluates a saved state of a run, with the config the run uses.

  python -m experiments.evaluate --workdir=/tmp/digits --checkpoint=best --split=test

`--checkpoint`: `best` (the state of the best eval step, kept in WORKDIR/best),
`latest`, or a step number of WORKDIR/checkpoints. `--beam_width=K` (CTC runs) adds the
metrics of prefix beam search with K beams. Nothing is written.
"""

import sys

from absl import app, flags, logging

import seqrnn
from seqrnn.run import evaluate_checkpoint

flags.DEFINE_string('workdir', None, 'The run\'s workdir.')
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
  try:
    step, metrics = evaluate_checkpoint(FLAGS.workdir, FLAGS.checkpoint, FLAGS.split,
                                        FLAGS.beam_width)
  except (ValueError, TypeError, OSError, RuntimeError) as e:
    sys.exit(f'error: {e}')
  if seqrnn.hosts.is_main():
    print(f'{FLAGS.split} at step {step} ({FLAGS.checkpoint}): '
          + ' '.join(f'{k}={v:.4f}' for k, v in metrics.items()))


if __name__ == '__main__':
  app.run(main)
