"""A linear-chain CRF over per-step scores (Lafferty et al. 2001; the BiLSTM-CRF tagger
of Huang et al. 2015 and Lample et al. 2016).

A label sequence y_1..y_n of one sequence scores

    s(y) = start[y_1] + sum_t emissions[t, y_t] + sum_{t>1} transitions[y_{t-1}, y_t] + end[y_n]

and p(y) = exp(s(y)) / Z, Z summed over every label sequence of that length by the
forward algorithm in log space (`log_partition`); the best sequence is Viterbi's
(`viterbi`). Padding changes nothing (past a sequence's length nothing is read), and
a packed row (`segments`, see `seqrnn.batch`) holds several sequences, each scored and
decoded on its own: a row's score is the sum of its sequences'.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class CRFScores(NamedTuple):
  """What a CRF head gives the labelling task: emissions [batch, time, C] (float32) and
  its parameters, transitions [C, C] (from the row's label to the column's), start
  and end [C]."""
  emissions: jax.Array
  transitions: jax.Array
  start: jax.Array
  end: jax.Array

  @property
  def num_classes(self):
    return self.emissions.shape[-1]


class CRF(nn.Module):
  """The CRF's parameters over the emissions of a dense layer: [batch, time, C] ->
  CRFScores. Zero at initialisation: a fresh CRF is the softmax tagger's argmax."""
  num_classes: int

  @nn.compact
  def __call__(self, emissions_btc):
    zeros = nn.initializers.zeros_init()
    c = self.num_classes
    return CRFScores(emissions_btc.astype(jnp.float32),
                     self.param('transitions', zeros, (c, c), jnp.float32),
                     self.param('start', zeros, (c,), jnp.float32),
                     self.param('end', zeros, (c,), jnp.float32))


def boundaries(lengths_b, num_steps, segments_bt=None):
  """(real, first, last) booleans [batch, time]: the real steps, and those where a
  sequence starts and ends (a row's own, or each packed sequence's)."""
  real = jnp.arange(num_steps)[None, :] < lengths_b[:, None]
  seg = real.astype(jnp.int32) if segments_bt is None else segments_bt
  before = jnp.pad(seg[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
  after = jnp.pad(seg[:, 1:], ((0, 0), (0, 1)), constant_values=-1)
  return real, real & (seg != before), real & (seg != after)


def sequence_score(scores, labels_bt, lengths_b, segments_bt=None):
  """s(y) of the given labels [batch, time]: [batch], summed over a row's sequences."""
  real, first, last = boundaries(lengths_b, labels_bt.shape[1], segments_bt)
  labels_bt = jnp.where(real, labels_bt, 0)
  emitted = jnp.take_along_axis(scores.emissions, labels_bt[..., None], -1)[..., 0]
  moved = scores.transitions[labels_bt[:, :-1], labels_bt[:, 1:]]  # [batch, time - 1]
  inside = real[:, 1:] & ~first[:, 1:]
  return (jnp.where(real, emitted, 0).sum(1) + jnp.where(inside, moved, 0).sum(1)
          + jnp.where(first, scores.start[labels_bt], 0).sum(1)
          + jnp.where(last, scores.end[labels_bt], 0).sum(1))


def log_partition(scores, lengths_b, segments_bt=None):
  """log Z [batch] by the forward algorithm (a `lax.scan` over time in log space),
  summed over a row's sequences."""
  real, first, last = boundaries(lengths_b, scores.emissions.shape[1], segments_bt)

  def step(carry, inputs):
    alpha, total = carry  # [batch, C], [batch]
    e_t, real_t, first_t, last_t = inputs
    moved = jax.nn.logsumexp(alpha[:, :, None] + scores.transitions[None], axis=1)
    alpha = jnp.where(first_t[:, None], scores.start + e_t,
                      jnp.where(real_t[:, None], moved + e_t, alpha))
    total = total + jnp.where(last_t, jax.nn.logsumexp(alpha + scores.end, -1), 0.0)
    return (alpha, total), None

  batch, _, c = scores.emissions.shape
  dtype = scores.emissions.dtype
  init = (jnp.zeros((batch, c), dtype), jnp.zeros((batch,), dtype))
  (_, total), _ = jax.lax.scan(step, init, (jnp.swapaxes(scores.emissions, 0, 1), real.T,
                                            first.T, last.T))
  return total


def nll(scores, labels_bt, lengths_b, segments_bt=None):
  """-log p(labels) [batch]: log Z - s(labels), summed over a row's sequences."""
  return (log_partition(scores, lengths_b, segments_bt)
          - sequence_score(scores, labels_bt, lengths_b, segments_bt))


def viterbi(scores, lengths_b, segments_bt=None):
  """The best label sequence of each sequence, int32 [batch, time] (0 in padding)."""
  real, first, _ = boundaries(lengths_b, scores.emissions.shape[1], segments_bt)
  batch, _, c = scores.emissions.shape
  keep = jnp.broadcast_to(jnp.arange(c), (batch, c))  # a padded step points to itself

  def forward(delta, inputs):
    e_t, real_t, first_t = inputs
    candidates = delta[:, :, None] + scores.transitions[None]  # [batch, from, to]
    # A sequence's first step points back to the best last label of the one before it
    # in the row (decoded on its own), whatever label it takes.
    ended = jnp.argmax(delta + scores.end, -1)[:, None]
    pointer = jnp.where(first_t[:, None], ended,
                        jnp.where(real_t[:, None], jnp.argmax(candidates, 1), keep))
    delta = jnp.where(first_t[:, None], scores.start + e_t,
                      jnp.where(real_t[:, None], candidates.max(1) + e_t, delta))
    return delta, pointer

  delta, pointers = jax.lax.scan(forward, jnp.zeros((batch, c), scores.emissions.dtype),
                                 (jnp.swapaxes(scores.emissions, 0, 1), real.T, first.T))
  last = jnp.argmax(delta + scores.end, -1)

  def backward(label, pointer):
    return jnp.take_along_axis(pointer, label[:, None], 1)[:, 0], label

  _, path = jax.lax.scan(backward, last, pointers, reverse=True)
  return jnp.where(real, path.T, 0).astype(jnp.int32)
