"""Many processes (hosts): JAX's distributed runtime, and decisions all of them share.

A run on N processes is the same program on each: every process loads its share
of each global batch, all of them take part in every step and in Orbax's
collective checkpoints, and only process 0 writes logs and files of its own.
"""

import hashlib
import json

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(coordinator_address=None, num_processes=None, process_id=None,
               local_device_ids=None):
  """Starts `jax.distributed` before any other JAX call.

  With no arguments, JAX finds the cluster itself (Cloud TPU VMs, SLURM, Open
  MPI); elsewhere give the coordinator's `host:port`, the number of processes
  and this process's id. `local_device_ids` are the GPUs this process uses (JAX
  gives a SLURM task the GPU of its local id alone). CPU processes exchange data
  over gloo.
  """
  try:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except (AttributeError, ValueError):  # a JAX without the option: its default
    pass
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             local_device_ids=local_device_ids)


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


def check_same_config(flat_config):
  """Raises ValueError on every process unless all hold the same flat config.

  Processes given different values would otherwise train silently apart (a
  dropout rate), drift until their checkpoints fail the digest (a clipping
  norm), or wait on each other forever (a step count). One collective compares
  digests; only when they differ are the configs gathered to name the fields.
  """
  if jax.process_count() == 1:
    return
  text = json.dumps(flat_config, sort_keys=True)
  digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
  digests = np.asarray(multihost_utils.process_allgather(digest))
  if (digests == digests[0]).all():
    return
  data = np.frombuffer(text.encode(), np.uint8)
  longest = int(np.max(multihost_utils.process_allgather(np.int32(len(data)))))
  texts = np.asarray(multihost_utils.process_allgather(np.pad(data, (0, longest - len(data)))))
  configs = [json.loads(bytes(t).rstrip(b'\0').decode()) for t in texts]
  differences = []
  for p, other in enumerate(configs[1:], 1):
    fields = sorted(k for k in set(configs[0]) | set(other) if configs[0].get(k) != other.get(k))
    differences += [f'{k}: process 0 {configs[0].get(k)!r}, process {p} {other.get(k)!r}'
                    for k in fields]
  raise ValueError('the processes of this run were given different configs (' +
                   '; '.join(differences[:8]) + ('; ...' if len(differences) > 8 else '') +
                   '): start every process with the same config and flags')
