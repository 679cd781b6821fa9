"""Loss and metrics of each task.

A task maps `(logits, batch)` to a dict of `(sum, count)` pairs; the loss is
`metrics['loss'][0] / metrics['loss'][1]`, unless the metrics hold an `objective`
(label smoothing), which training minimises in its place while `loss` stays the
plain cross-entropy that evaluation reports and selects by. Sums, not means, so that metrics
add up exactly over batches, devices and hosts (`summarize` divides at the
end). `batch['weights']` ([batch], optional) zeroes padding examples.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from seqrnn import crf
from seqrnn import ctc as ctc_lib
from seqrnn import spans as spans_lib


def _weights(batch):
  w = batch.get('weights')
  return jnp.ones(batch['lengths'].shape, jnp.float32) if w is None else w.astype(jnp.float32)


def _smoothed_xent(logits, labels, smoothing):
  """Cross-entropy against targets (1 - smoothing) one-hot + smoothing / C (Szegedy et
  al. 2016): (1 - smoothing) * -log p[label] + smoothing * mean over classes of -log p."""
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
  nll = -jnp.take_along_axis(log_p, labels[..., None], -1)[..., 0]
  return (1 - smoothing) * nll - smoothing * log_p.mean(-1)


def classification(logits_bc, batch, label_smoothing=0.0):
  """Softmax cross-entropy of one label per sequence; accuracy. With
  `label_smoothing`, also the `objective` training minimises (`_smoothed_xent`)."""
  w_b = _weights(batch)
  labels_b = batch['labels']
  xent_b = optax.softmax_cross_entropy_with_integer_labels(logits_bc.astype(jnp.float32), labels_b)
  correct_b = (jnp.argmax(logits_bc, -1) == labels_b)
  n = w_b.sum()
  metrics = {'loss': ((xent_b * w_b).sum(), n), 'accuracy': ((correct_b * w_b).sum(), n)}
  if label_smoothing:
    metrics['objective'] = ((_smoothed_xent(logits_bc, labels_b, label_smoothing) * w_b).sum(), n)
  return metrics


def labelling(logits_btc, batch, spans=None, label_smoothing=0.0):
  """Per-step labels, by the model's head: logits [batch, time, C] (softmax) or
  `crf.CRFScores` (a linear-chain CRF). The loss is the softmax's cross-entropy, or
  the CRF's negative log-likelihood of each sequence, summed and divided by the real
  timesteps alike (a per-token figure either way); predictions are each step's argmax,
  or Viterbi's best sequence. Metrics: per-step accuracy and whole-sequence accuracy
  (every real step right; in packed rows, `segments`, each sequence counted on its
  own); with `batch['unknown']` ([batch, time] bool, e.g. words unseen in training),
  accuracy on those steps; with `spans` (`spans.bio_tags` of the tag names), the span F1
  of BIO tags, as (2 * right spans, predicted + gold spans). With `label_smoothing`
  (softmax head), also the `objective` training minimises (`_smoothed_xent`)."""
  if label_smoothing and isinstance(logits_btc, crf.CRFScores):
    raise ValueError("label smoothing is the softmax head's; a CRF scores whole sequences")
  w_b = _weights(batch)
  labels_bt = batch['labels']
  num_steps = labels_bt.shape[1]
  real_steps_bt = jnp.arange(num_steps)[None, :] < batch['lengths'][:, None]
  real_bt = real_steps_bt * w_b[:, None]
  # Padded positions may hold any label; clip so the gather stays in range.
  labels_bt = jnp.clip(labels_bt, 0, num_classes(logits_btc) - 1)
  if isinstance(logits_btc, crf.CRFScores):
    segments = batch.get('segments')
    loss = (crf.nll(logits_btc, labels_bt, batch['lengths'], segments) * w_b).sum()
    predicted_bt = crf.viterbi(logits_btc, batch['lengths'], segments)
  else:
    xent_bt = optax.softmax_cross_entropy_with_integer_labels(logits_btc.astype(jnp.float32),
                                                              labels_bt)
    loss = (xent_bt * real_bt).sum()
    predicted_bt = jnp.argmax(logits_btc, -1)
  correct_bt = predicted_bt == labels_bt
  # A row is one sequence unless it is packed (`segments` numbers its sequences).
  segments_bt = batch.get('segments', real_steps_bt.astype(jnp.int32))
  seq_correct, seqs = _sequences_correct(correct_bt, segments_bt, w_b)
  steps = real_bt.sum()
  metrics = {'loss': (loss, steps),
             'accuracy': ((correct_bt * real_bt).sum(), steps),
             'sequence_accuracy': (seq_correct, seqs)}
  if label_smoothing:
    metrics['objective'] = ((_smoothed_xent(logits_btc, labels_bt, label_smoothing)
                             * real_bt).sum(), steps)
  if spans is not None:
    first_bt = crf.boundaries(batch['lengths'], num_steps, batch.get('segments'))[1]
    right, predicted, gold = spans_lib.span_counts(predicted_bt, labels_bt, real_steps_bt,
                                                   first_bt, w_b, *spans)
    metrics['span_f1'] = (2 * right, predicted + gold)
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


def ctc(logits_btc, batch):
  """CTC (`seqrnn.ctc`): `labels` [batch, max_labels] of `label_lengths` [batch], in
  [1, C) (class 0 is the blank), not aligned to the steps. The loss is -log p(labels)
  a sequence; predictions are greedy (best path) decodings. Metrics: the label error
  rate (edit distance over the number of target labels) and whole-sequence accuracy."""
  w_b = _weights(batch)
  labels_bl, label_lengths_b = batch['labels'], batch['label_lengths']
  loss_b = ctc_lib.loss(logits_btc, batch['lengths'], labels_bl, label_lengths_b)
  decoded, decoded_lengths = ctc_lib.greedy_decode(logits_btc, batch['lengths'])
  distance_b = ctc_lib.edit_distance(decoded, decoded_lengths, labels_bl, label_lengths_b)
  n = w_b.sum()
  return {'loss': ((loss_b * w_b).sum(), n),
          'label_error_rate': ((distance_b * w_b).sum(), (label_lengths_b * w_b).sum()),
          'sequence_accuracy': (((distance_b == 0) * w_b).sum(), n)}


def num_classes(logits):
  """C of a head's output: logits [..., C] or CRFScores."""
  return logits.num_classes if isinstance(logits, crf.CRFScores) else logits.shape[-1]


TASKS = {'classification': classification, 'labelling': labelling, 'ctc': ctc}


def get_task(name, spans=None, label_smoothing=0.0):
  """The `(logits, batch) -> metrics` function of task `name`; `spans` (labelling: the
  `spans.bio_tags` of BIO tag names) adds the span F1; `label_smoothing` in (0, 1)
  (classification, labelling) adds the smoothed `objective` that training minimises."""
  if name not in TASKS:
    raise ValueError(f'config.task={name!r} is not a task; expected one of {sorted(TASKS)}')
  if spans is not None and name != 'labelling':
    raise ValueError(f"BIO spans are labelling's; config.task={name!r}")
  if label_smoothing and name == 'ctc':
    raise ValueError("label smoothing spreads a softmax's target over the classes; "
                     "config.task='ctc' has no target a step")
  options = {'spans': spans} if spans is not None else {}
  if label_smoothing:
    options['label_smoothing'] = label_smoothing
  return functools.partial(TASKS[name], **options) if options else TASKS[name]


def summarize(metrics):
  """{'name': (sum, count)} -> {'name': sum / count} as Python floats (NaN if count is 0)."""
  return {k: float(s) / float(n) if n else float('nan') for k, (s, n) in metrics.items()}


def accumulate(total, metrics):
  """Adds two dicts of (sum, count) pairs (`total` may be None)."""
  if total is None:
    return metrics
  return {k: (total[k][0] + s, total[k][1] + n) for k, (s, n) in metrics.items()}
