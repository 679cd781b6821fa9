"""Trains and evaluates one config.

  python -m experiments.main --config=experiments/configs/digits.py --workdir=/tmp/digits \
      --config.model.cell=lstm --config.model.num_layers=2
  python -m experiments.main --config=experiments/configs/digits.py --print_config  # and exit

On several processes (hosts), the same command on each, plus `--distributed` (JAX
finds a Cloud TPU slice, SLURM or Open MPI job by itself) or the coordinator's
address, the number of processes and each one's id:

  python -m experiments.main ... --coordinator_address=10.0.0.1:1234 \
      --num_processes=2 --process_id=0      # and --process_id=1 on the other host
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

import seqrnn
from experiments import distributed

config_flags.DEFINE_config_file('config', None, 'Path to a config file with get_config().',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Where config.json, metrics.jsonl, TensorBoard events '
                    'and checkpoints go; an existing workdir is resumed.')
flags.DEFINE_bool('restart_from_scratch', False, 'Train a workdir whose checkpoints were all '
                  'set aside as damaged from step 0 again (its earlier metrics.jsonl and best/ '
                  'are kept under other names); without it such a workdir is refused.')
flags.DEFINE_bool('traceback', False, 'On an error, show its whole traceback, not one line.')
flags.DEFINE_bool('print_config', False, 'Print the config, resolved and validated, one '
                  '`field = value` a line, and exit: nothing is trained or written.')
flags.mark_flags_as_required(['config'])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
  if FLAGS.print_config:
    try:
      seqrnn.validate_config(FLAGS.config)
    except (ValueError, TypeError) as e:
      sys.exit(f'error: {e}')
    for name, value in seqrnn.config.to_flat_dict(FLAGS.config).items():
      print(f'{name} = {value!r}')
    return
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required (where the run writes; --print_config needs '
                         'none)')
  distributed.initialize()
  try:
    results = seqrnn.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                                        restart_from_scratch=FLAGS.restart_from_scratch)
  except seqrnn.Preempted as e:
    sys.exit(str(e))
  except (ValueError, TypeError, OSError, RuntimeError, FloatingPointError, ImportError) as e:
    # Bad configs, data files, workdirs and checkpoints, and a missing extra, say what is
    # wrong in their message; the traceback would only bury it.
    if FLAGS.traceback:
      raise
    sys.exit(f'error: {e}\n(--traceback shows where it was raised)')
  if seqrnn.hosts.is_main():
    print(f'compiled train shapes: {results["compiled_train_shapes"]} '
          f'(buckets {results["buckets"]})')
    for split in ('eval', 'test'):
      print(f'{split}: ' + ' '.join(f'{k}={v:.4f}' for k, v in results[split].items()))
    if 'test_best' in results:
      print(f'test of the best eval step ({results["best_step"]}): '
            + ' '.join(f'{k}={v:.4f}' for k, v in results['test_best'].items()))
    if 'refit' in results:
      print(f'test of the refit ({results["refit"]["epochs"]:.2f} epochs of all training series): '
            + ' '.join(f'{k}={v:.4f}' for k, v in results['refit']['test'].items()))


if __name__ == '__main__':
  # Checked before absl parses flags, whose error for a mistyped field or variant is a traceback.
  sys.argv = seqrnn.config.upgrade_command_line(sys.argv)  # names before the config groups
  if errors := seqrnn.config.command_line_errors(sys.argv[1:]):
    sys.exit('\n'.join(errors))
  app.run(main)
