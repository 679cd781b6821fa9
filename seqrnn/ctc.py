"""Connectionist temporal classification (Graves et al. 2006): a label sequence shorter
than the input and not aligned to it, read from per-step scores over the labels and a
blank (class 0).

The loss is `optax.ctc_loss`; decoding and its metrics are here, all jit-able and
mask-aware: `greedy_decode` (the best class at each real step, repeats merged, blanks
dropped), `beam_decode` (prefix beam search, on the host), `edit_distance`
(Levenshtein's, the label error rate's numerator).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

BLANK = 0


def loss(logits_btc, lengths_b, labels_bl, label_lengths_b):
  """-log p(labels | inputs) [batch], summed over every alignment (optax.ctc_loss)."""
  t = jnp.arange(logits_btc.shape[1])[None, :]
  l = jnp.arange(labels_bl.shape[1])[None, :]
  return optax.ctc_loss(logits_btc.astype(jnp.float32), (t >= lengths_b[:, None]).astype(
      jnp.float32), labels_bl, (l >= label_lengths_b[:, None]).astype(jnp.float32),
                        blank_id=BLANK)


def greedy_decode(logits_btc, lengths_b):
  """Best path decoding: (labels [batch, time] int32, 0 past each one's length; lengths
  [batch]): each real step's best class, runs of one class merged, blanks dropped."""
  best = jnp.argmax(logits_btc, -1).astype(jnp.int32)
  num_steps = best.shape[1]
  real = jnp.arange(num_steps)[None, :] < lengths_b[:, None]
  before = jnp.pad(best[:, :-1], ((0, 0), (1, 0)), constant_values=BLANK)
  keep = real & (best != BLANK) & (best != before)
  position = jnp.where(keep, jnp.cumsum(keep, 1) - 1, num_steps)  # past the end: dropped
  rows = jnp.broadcast_to(jnp.arange(best.shape[0])[:, None], best.shape)
  decoded = jnp.zeros_like(best).at[rows, position].set(best, mode='drop')
  return decoded, keep.sum(1).astype(jnp.int32)


def edit_distance(a_bn, a_lengths_b, b_bm, b_lengths_b):
  """Levenshtein distance [batch] between a[:a_length] and b[:b_length] (insertions,
  deletions and substitutions cost 1). The dynamic programme's rows are scanned; each
  row's sequential minimum over insertions is a cumulative minimum."""
  m = b_bm.shape[1]
  j = jnp.arange(m + 1)

  def row(previous, a_i):  # previous: D[i-1, :] [batch, m + 1]
    substitute = previous[:, :-1] + (a_i[:, None] != b_bm)
    base = jnp.concatenate([previous[:, :1] + 1,
                            jnp.minimum(previous[:, 1:] + 1, substitute)], 1)
    current = jax.lax.cummin(base - j, axis=1) + j  # D[i, j] = min_k<=j base[k] + (j - k)
    return current, current

  first = jnp.broadcast_to(j, (a_bn.shape[0], m + 1)).astype(jnp.int32)
  _, rows = jax.lax.scan(row, first, a_bn.T)  # [n, batch, m + 1]
  rows = jnp.concatenate([first[None], rows])
  at_a = jnp.take_along_axis(rows, a_lengths_b[None, :, None], 0)[0]
  return jnp.take_along_axis(at_a, b_lengths_b[:, None], 1)[:, 0]


def beam_decode(logits_tc, length, beam_width):
  """Prefix beam search (Hannun et al. 2014) of one sequence on the host: the label
  sequence (a tuple) whose probability, summed over its alignments among the kept
  prefixes, is highest. `beam_width=1` is close to, not always equal to, greedy."""
  log_probs = np.asarray(jax.nn.log_softmax(jnp.asarray(logits_tc[:length], jnp.float32), -1),
                         np.float64)
  # prefix -> (log p ending in blank, log p ending in its last label)
  beams = {(): (0.0, -np.inf)}
  for step in log_probs:
    grown = {}

    def add(prefix, blank, label):
      old = grown.get(prefix, (-np.inf, -np.inf))
      grown[prefix] = (np.logaddexp(old[0], blank), np.logaddexp(old[1], label))

    for prefix, (p_blank, p_label) in beams.items():
      total = np.logaddexp(p_blank, p_label)
      add(prefix, total + step[BLANK], -np.inf)
      for c in range(len(step)):
        if c == BLANK:
          continue
        if prefix and prefix[-1] == c:
          add(prefix, -np.inf, p_label + step[c])           # the same label, not repeated
          add(prefix + (c,), -np.inf, p_blank + step[c])    # repeated across a blank
        else:
          add(prefix + (c,), -np.inf, total + step[c])
    beams = dict(sorted(grown.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam_width])
  return max(beams, key=lambda prefix: np.logaddexp(*beams[prefix]))


def beam_metrics(logits_btc, batch, beam_width):
  """The task's label error rate and sequence accuracy, of `beam_decode`'s labels (on the
  host), as {'beam_...': (sum, count)}."""
  lengths, weights = np.asarray(batch['lengths']), batch.get('weights')
  weights = np.ones(len(lengths)) if weights is None else np.asarray(weights)
  decoded = [beam_decode(logits_btc[b], int(n), beam_width) for b, n in enumerate(lengths)]
  width = max([len(d) for d in decoded] + [1])
  labels = np.array([list(d) + [BLANK] * (width - len(d)) for d in decoded], np.int32)
  distance = np.asarray(edit_distance(labels, np.array([len(d) for d in decoded]),
                                      batch['labels'], batch['label_lengths']))
  return {'beam_label_error_rate': ((distance * weights).sum(),
                                    (np.asarray(batch['label_lengths']) * weights).sum()),
          'beam_sequence_accuracy': (((distance == 0) * weights).sum(), weights.sum())}
