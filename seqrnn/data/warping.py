"""Does aligning series in time help tell their classes apart? Measured on a training split.

`warping_gain` is the leave-one-out accuracy of the 1-nearest-neighbour classifier under
dynamic time warping (DTW) minus its accuracy under the Euclidean distance, both on the
training split alone. Where a class is a shape at a varying place, DTW finds it and the gain
is positive; where the place itself matters (spectra, outlines), warping confuses classes
and the gain is zero or negative. `experiments/configs/uea.py` trains on random crops where
it is positive (docs/results.md: measured on 35 UCR sets).
"""

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from seqrnn.data import auto_frame_size
from seqrnn.data.dataset import frames

MAX_SERIES = 256  # a random subset of larger splits (the cost grows with its square)
_GAINS = {}       # a split's digest -> its gain: the runs of a vectorised group share one split


def dtw(a, a_length, b, b_length):
  """DTW distances of the series pairs `a` [pairs, T, C] and `b` [pairs, T, C], each
  `*_length` [pairs] steps long (zeros after): the least sum of squared Euclidean distances
  between steps along a monotone path from (0, 0) to (a_length - 1, b_length - 1), no window
  (the UCR archive's "DTW (w=100)"). Returns [pairs]."""
  steps = a.shape[1]
  cost = jnp.sum((a[:, :, None, :] - b[:, None, :, :]) ** 2, -1)  # [pairs, i, j]
  inside = ((jnp.arange(steps)[None, :, None] < a_length[:, None, None])
            & (jnp.arange(steps)[None, None, :] < b_length[:, None, None]))
  cost = jnp.where(inside, cost, jnp.inf)  # no path leaves a pair's own steps
  # Anti-diagonal k holds the cells (i, k - i): each needs only the two diagonals before it.
  i = jnp.arange(steps)
  rows = jnp.arange(2 * steps - 1)[:, None] - i[None, :]  # j of cell (i, k - i): [k, i]
  diagonals = jnp.where((rows >= 0) & (rows < steps),
                        cost[:, i[None, :], jnp.clip(rows, 0, steps - 1)], jnp.inf)
  diagonals = jnp.moveaxis(diagonals, 1, 0)  # [k, pairs, i]
  shift = lambda d: jnp.concatenate([jnp.full_like(d[:, :1], jnp.inf), d[:, :-1]], 1)  # i - 1

  end = a_length + b_length - 2  # the diagonal of a pair's last cell

  def step(carry, k_diagonal):
    k, diagonal = k_diagonal
    before, two_before, found = carry  # diagonals k - 1 and k - 2
    here = diagonal + jnp.minimum(jnp.minimum(shift(before), before), shift(two_before))
    found = jnp.where(k == end, here[jnp.arange(here.shape[0]), a_length - 1], found)
    return (here, before, found), None

  first = diagonals[0]  # the cell (0, 0) alone: every path starts there
  start = jnp.where(end == 0, first[:, 0], jnp.inf)
  carry = (first, jnp.full_like(first, jnp.inf), start)
  (_, _, found), _ = jax.lax.scan(step, carry, (jnp.arange(1, 2 * steps - 1), diagonals[1:]))
  return found


@functools.partial(jax.jit, static_argnames='kind')
def _distances(queries, query_lengths, series, lengths, kind):
  """[queries, series] distances of every query to every series."""
  q, n = queries.shape[0], series.shape[0]
  a = jnp.repeat(queries, n, 0)
  a_length = jnp.repeat(query_lengths, n)
  b = jnp.tile(series, (q, 1, 1))
  b_length = jnp.tile(lengths, q)
  if kind == 'dtw':
    return dtw(a, a_length, b, b_length).reshape(q, n)
  # Euclidean: step by step over the shorter of the two (the archives' equal lengths: all)
  steps = jnp.arange(a.shape[1])[None, :] < jnp.minimum(a_length, b_length)[:, None]
  return jnp.sum(jnp.where(steps[..., None], (a - b) ** 2, 0), (1, 2)).reshape(q, n)


def _in_frames(inputs, lengths):
  """Series averaged in frames of `auto_frame_size` steps (at most 64 frames, as the front end
  reads them): `frames`' windows, each the mean of its real steps."""
  size = auto_frame_size([inputs.shape[1]])
  framed = frames({'inputs': inputs, 'lengths': lengths}, size, size)
  n, num_frames = framed['inputs'].shape[:2]
  windows = framed['inputs'].reshape(n, num_frames, size, inputs.shape[2])  # zeros past a length
  real = np.clip(lengths[:, None] - size * np.arange(num_frames)[None, :], 1, size)
  return windows.sum(2) / real[..., None].astype(np.float32), framed['lengths']


def nearest_neighbour_accuracy(inputs, lengths, labels, kind, block=32):
  """Leave-one-out accuracy of the 1-nearest-neighbour classifier (`kind` 'dtw' or
  'euclidean') on `inputs` [N, T, C] of `lengths` [N] and `labels` [N]; ties go to the
  first series."""
  n = len(labels)
  found = []
  for start in range(0, n, block):  # all pairs' cost matrices at once would not fit
    rows = np.arange(start, start + block) % n  # one program: the last block is padded
    d = np.array(_distances(inputs[rows], lengths[rows], inputs, lengths, kind))
    d[np.arange(block), rows] = np.inf  # leave the query itself out
    found.append(labels[d.argmin(1)][:min(block, n - start)])
  return float(np.mean(np.concatenate(found) == labels))


def warping_gain(split, seed=0):
  """How much more often a training series' nearest other series is of its class under DTW
  than under the Euclidean distance (leave-one-out, in [-1, 1]), on the training split
  `split` ({'inputs' [N, T, C], 'lengths' [N], 'labels' [N]}): at most MAX_SERIES series
  (a random subset drawn with `seed`), averaged to at most 64 steps (`_in_frames`)."""
  inputs, lengths, labels = (np.asarray(split[k]) for k in ('inputs', 'lengths', 'labels'))
  digest = hashlib.sha256(str(seed).encode())
  for array in (inputs, lengths, labels):
    digest.update(str((array.shape, array.dtype)).encode() + np.ascontiguousarray(array).tobytes())
  key = digest.hexdigest()
  if key not in _GAINS:
    if len(_GAINS) > 16:
      _GAINS.clear()
    _GAINS[key] = _gain(inputs, lengths, labels, seed)
  return _GAINS[key]


def _gain(inputs, lengths, labels, seed):
  """`warping_gain`, measured."""
  if len(labels) > MAX_SERIES:
    keep = np.sort(np.random.default_rng(seed).choice(len(labels), MAX_SERIES, replace=False))
    inputs, lengths, labels = inputs[keep], lengths[keep], labels[keep]
  inputs, lengths = _in_frames(inputs.astype(np.float32), lengths)
  return (nearest_neighbour_accuracy(inputs, lengths, labels, 'dtw')
          - nearest_neighbour_accuracy(inputs, lengths, labels, 'euclidean'))
