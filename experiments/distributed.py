"""Flags that start JAX's distributed runtime, shared by the command-line tools.

On several processes (hosts), the same command runs on each, plus `--distributed`
(JAX finds a Cloud TPU slice, SLURM or Open MPI job by itself) or the
coordinator's address, the number of processes and each one's id.
"""

from absl import flags

import seqrnn

flags.DEFINE_bool('distributed', False, 'Start JAX\'s distributed runtime, the cluster found by '
                  'JAX (Cloud TPU, SLURM, Open MPI) unless the flags below name it.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for --distributed.')
flags.DEFINE_integer('num_processes', None, 'Number of processes, for --distributed.')
flags.DEFINE_integer('process_id', None, 'This process\'s id in [0, num_processes).')
FLAGS = flags.FLAGS


def initialize():
  """Starts the distributed runtime if the flags ask for it (before any other JAX call)."""
  if FLAGS.distributed or FLAGS.coordinator_address:
    seqrnn.hosts.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
