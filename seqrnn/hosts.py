"""Many processes (hosts): JAX's distributed runtime, and decisions all of them share.

A run on N processes is the same program on each: every process loads its share
of each global batch, all of them take part in every step and in Orbax's
collective checkpoints, and only process 0 writes logs and files of its own.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(coordinator_address=None, num_processes=None, process_id=None):
  """Starts `jax.distributed` before any other JAX call.

  With no arguments, JAX finds the cluster itself (Cloud TPU VMs, SLURM, Open
  MPI); elsewhere give the coordinator's `host:port`, the number of processes
  and this process's id. CPU processes exchange data over gloo.
  """
  try:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except (AttributeError, ValueError):  # a JAX without the option: its default
    pass
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def is_main():
  """Whether this process writes the run's logs and files (process 0)."""
  return jax.process_index() == 0


def any_process(flag):
  """True on every process if `flag` is True on any (a collective: call it on all)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.max(multihost_utils.process_allgather(np.int32(bool(flag)))))


def barrier(name):
  """Waits until every process reaches the barrier `name`."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def local_value(tree):
  """The values of a pytree of replicated arrays as numpy, on any process (each
  holds a copy; `jax.device_get` refuses arrays that span processes)."""
  def get(array):
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
      assert array.is_fully_replicated, array.sharding
      return array.addressable_data(0)
    return array
  return jax.device_get(jax.tree.map(get, tree))
