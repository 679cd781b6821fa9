"""An ensemble of saved runs: their class probabilities averaged, scored by their task.

Runs on the same data whose outputs are class scores (the softmax head: classification
or labelling), typically one config trained with several seeds, predict a split
together. The ensemble's log-probabilities are the log of the mean of the runs'
softmax probabilities, and the task turns them into metrics as it does one model's
logits: the loss and accuracy of the averaged distribution. On small training sets a
single run's test accuracy moves by several points with its seed alone; the average
of a few runs moves less and is usually better than the mean run (docs/results.md).
"""

import jax
import jax.numpy as jnp
import numpy as np

from seqrnn import hosts
from seqrnn import run as run_lib
from seqrnn.data import batching
from seqrnn.tasks import accumulate, summarize
from seqrnn.train import predict


@jax.jit
def _log_probs(state, batch):
  """[batch, ..., classes] log-softmax of one run's outputs on `batch`."""
  return jax.nn.log_softmax(predict(state, batch).astype(jnp.float32), -1)


def _check_members(workdirs, members, split):
  config, setup, _ = members[0]
  if config.task not in ('classification', 'labelling') or config.model.head != 'softmax':
    raise ValueError(f'an ensemble averages class probabilities: {workdirs[0]} is task='
                     f'{config.task!r} with model.head={config.model.head!r}, whose outputs are '
                     f"not (classification or labelling with the softmax head)")
  if split not in setup.dataset.splits:
    raise ValueError(f'split={split!r} is not one of {sorted(setup.dataset.splits)}')
  ours = setup.dataset.splits[split]
  for workdir, (other, other_setup, _) in zip(workdirs[1:], members[1:]):
    theirs = other_setup.dataset.splits.get(split)
    if (other.task != config.task or other.model.head != config.model.head or theirs is None
        or not all(np.array_equal(ours[k], theirs[k]) for k in ('labels', 'lengths'))):
      raise ValueError(f'{workdir} does not predict the same {split} split as {workdirs[0]} '
                       f'(its task, labels or sequence lengths differ): an ensemble averages '
                       f'runs on the same data')


def evaluate_ensemble(workdirs, checkpoint='best', split='test'):
  """(steps, metrics) of the runs in `workdirs` predicting `split` together, each from
  its saved state `checkpoint` ('best', 'latest' or a step number). `steps` lists each
  run's restored step; `metrics` are the task's of the averaged probabilities."""
  if jax.process_count() > 1:
    raise ValueError('an ensemble is evaluated on one process')
  if len(workdirs) < 2:
    raise ValueError(f'an ensemble needs two runs or more, got {list(workdirs)}')
  members = [run_lib.restore_run(w, checkpoint) for w in workdirs]
  _check_members(workdirs, members, split)
  batch_size = members[0][0].data.eval_batch_size  # the same rows in every run's batches
  streams = [batching.eval_batches(setup.dataset.splits[split], batch_size=batch_size,
                                   buckets=setup.buckets) for _, setup, _ in members]
  task = members[0][2].task
  total = None
  for batches in zip(*streams):
    log_probs = jnp.stack([_log_probs(state, batch)
                           for (_, _, state), batch in zip(members, batches)])
    mean = jax.nn.logsumexp(log_probs, 0) - np.log(len(members))  # log of the mean probability
    total = accumulate(total, task(mean, batches[0]))
  return [int(hosts.local_value(state.step)) for _, _, state in members], summarize(total)
