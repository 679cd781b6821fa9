"""Loss and metrics of each task.

A task maps `(logits, batch)` to a dict of `(sum, count)` pairs; the loss is
`metrics['loss'][0] / metrics['loss'][1]`. Sums, not means, so that metrics
add up exactly over batches, devices and hosts (`summarize` divides at the
end). `batch['weights']` ([batch], optional) zeroes padding examples.
"""

import jax
import jax.numpy as jnp
import optax


def _weights(batch):
  w = batch.get('weights')
  return jnp.ones(batch['lengths'].shape, jnp.float32) if w is None else w.astype(jnp.float32)


def classification(logits_bc, batch):
  """Softmax cross-entropy of one label per sequence; accuracy."""
  w_b = _weights(batch)
  labels_b = batch['labels']
  xent_b = optax.softmax_cross_entropy_with_integer_labels(logits_bc.astype(jnp.float32), labels_b)
  correct_b = (jnp.argmax(logits_bc, -1) == labels_b)
  n = w_b.sum()
  return {'loss': ((xent_b * w_b).sum(), n), 'accuracy': ((correct_b * w_b).sum(), n)}


def labelling(logits_btc, batch):
  """Cross-entropy averaged over real timesteps only; per-step accuracy and
  whole-sequence accuracy (every real step right; in packed rows, `segments`,
  each sequence counted on its own); with `batch['unknown']` ([batch, time]
  bool, e.g. words unseen in training), accuracy on those steps."""
  w_b = _weights(batch)
  labels_bt = batch['labels']
  num_steps = labels_bt.shape[1]
  real_steps_bt = jnp.arange(num_steps)[None, :] < batch['lengths'][:, None]
  real_bt = real_steps_bt * w_b[:, None]
  # Padded positions may hold any label; clip so the gather stays in range.
  labels_bt = jnp.clip(labels_bt, 0, logits_btc.shape[-1] - 1)
  xent_bt = optax.softmax_cross_entropy_with_integer_labels(logits_btc.astype(jnp.float32), labels_bt)
  correct_bt = (jnp.argmax(logits_btc, -1) == labels_bt)
  # A row is one sequence unless it is packed (`segments` numbers its sequences).
  segments_bt = batch.get('segments', real_steps_bt.astype(jnp.int32))
  seq_correct, seqs = _sequences_correct(correct_bt, segments_bt, w_b)
  steps = real_bt.sum()
  metrics = {'loss': ((xent_bt * real_bt).sum(), steps),
             'accuracy': ((correct_bt * real_bt).sum(), steps),
             'sequence_accuracy': (seq_correct, seqs)}
  if 'unknown' in batch:
    unknown_bt = batch['unknown'] * real_bt
    metrics['unknown_accuracy'] = ((correct_bt * unknown_bt).sum(), unknown_bt.sum())
  return metrics


def _sequences_correct(correct_bt, segments_bt, w_b):
  """(weighted count of sequences with every step right, weighted count of
  sequences): a row's sequence s is its steps with segments == s >= 1."""
  batch, num_steps = segments_bt.shape
  ids = (jnp.arange(batch)[:, None] * (num_steps + 1) + segments_bt).reshape(-1)
  wrong = jax.ops.segment_sum((~correct_bt & (segments_bt > 0)).reshape(-1).astype(jnp.int32),
                              ids, num_segments=batch * (num_steps + 1))
  size = jax.ops.segment_sum((segments_bt > 0).reshape(-1).astype(jnp.int32), ids,
                             num_segments=batch * (num_steps + 1))
  w = jnp.repeat(w_b, num_steps + 1)
  return ((size > 0) & (wrong == 0)) @ w, (size > 0) @ w


TASKS = {'classification': classification, 'labelling': labelling}


def get_task(name):
  """The `(logits, batch) -> metrics` function of task `name`."""
  if name not in TASKS:
    raise ValueError(f'config.task={name!r} is not a task; expected one of {sorted(TASKS)}')
  return TASKS[name]


def summarize(metrics):
  """{'name': (sum, count)} -> {'name': sum / count} as Python floats (NaN if count is 0)."""
  return {k: float(s) / float(n) if n else float('nan') for k, (s, n) in metrics.items()}


def accumulate(total, metrics):
  """Adds two dicts of (sum, count) pairs (`total` may be None)."""
  if total is None:
    return metrics
  return {k: (total[k][0] + s, total[k][1] + n) for k, (s, n) in metrics.items()}
