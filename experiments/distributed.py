"""Flags that start JAX's distributed runtime, shared by the command-line tools.

On several processes (hosts), the same command runs on each, plus `--distributed`
(JAX finds a Cloud TPU slice, SLURM or Open MPI job by itself) or the
coordinator's address, the number of processes and each one's id.
"""

from absl import app, flags

import seqrnn

flags.DEFINE_bool('distributed', False, 'Start JAX\'s distributed runtime, the cluster found by '
                  'JAX (Cloud TPU, SLURM, Open MPI) unless the flags below name it.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for --distributed.')
flags.DEFINE_integer('num_processes', None, 'Number of processes, for --distributed.')
flags.DEFINE_integer('process_id', None, 'This process\'s id in [0, num_processes).')
flags.DEFINE_list('local_device_ids', None, 'The GPUs this process uses (e.g. 0,1,2,3). Under '
                  'SLURM JAX gives each process the one GPU of its local task id alone: with one '
                  'task per node, name all of the node\'s GPUs here (or run one task per GPU).')
FLAGS = flags.FLAGS


def initialize():
  """Starts the distributed runtime if the flags ask for it (before any other JAX call)."""
  if FLAGS.local_device_ids and not (FLAGS.distributed or FLAGS.coordinator_address):
    raise app.UsageError('--local_device_ids is for a distributed run: add --distributed')
  if FLAGS.distributed or FLAGS.coordinator_address:
    ids = FLAGS.local_device_ids
    try:
      ids = None if ids is None else [int(i) for i in ids]
    except ValueError:
      raise app.UsageError(f'--local_device_ids={",".join(ids)}: give device numbers, e.g. '
                           f'0,1,2,3') from None
    seqrnn.hosts.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                            local_device_ids=ids)
