"""Batches from a split: a deterministic function of (seed, step), padded to buckets.

Because the batch of step s depends only on (seed, s), the position in the data
stream is the step itself: a run resumed from a checkpoint at step s sees the
batches the uninterrupted run would have seen.
"""

import collections
import concurrent.futures
import functools

import numpy as np

def _least_padded_sizes(lengths, max_buckets):
  """For k = 1..max_buckets, the least padded size of `lengths` with k buckets and
  the buckets that reach it: ([max_buckets] sizes, [max_buckets] tuples).

  Each sequence goes to the smallest bucket that holds it; the last bucket is
  max(lengths). Exact, by dynamic programming over the lengths that occur (a
  long tail gets buckets of its own).
  """
  lengths = np.asarray(lengths)
  cands = np.unique(lengths).astype(np.float64)
  held = np.searchsorted(np.sort(lengths), cands, side='right')  # sequences <= each candidate
  n = len(cands)
  # cost[k, j]: least padded size of the sequences <= cands[j] with k + 1 buckets, the
  # largest being cands[j]; back[k, j]: the bucket below it.
  cost = np.full((max_buckets, n), np.inf)
  back = np.full((max_buckets, n), -1)
  cost[0] = held * cands
  for k in range(1, max_buckets):  # O(n) memory: a data set may have thousands of lengths
    for j in range(1, n):
      options = cost[k - 1, :j] + (held[j] - held[:j]) * cands[j]
      back[k, j] = int(np.argmin(options))
      cost[k, j] = options[back[k, j]]
  sizes, choices = [], []
  for k in range(max_buckets):
    best = int(np.argmin(cost[:k + 1, -1]))  # k + 1 buckets at most
    buckets, j, kk = [], n - 1, best
    while j >= 0 and kk >= 0:
      buckets.append(int(cands[j]))
      j, kk = back[kk, j], kk - 1
    sizes.append(cost[best, -1])
    choices.append(tuple(sorted(buckets)))
  return np.array(sizes), choices


def bucket_lengths(lengths, num_buckets):
  """At most `num_buckets` padded lengths that minimise the padded size of `lengths`."""
  return _least_padded_sizes(lengths, num_buckets)[1][-1]


# Compiling the train and eval steps for one more padded length costs about as
# much time as training this many (sequence, step) slots: `python -m
# experiments.e2e_benchmark` measures the train step's share, about 70,000 for the
# Turkish tagger on a 2-core CPU; evaluation compiles too. An estimate: it decides
# how many buckets pay for their compilation, never a result (padding changes none).
COMPILE_COST_SLOTS = 100_000
AUTO_MAX_BUCKETS = 16


def auto_bucket_lengths(lengths, *, trained_sequences, compile_cost_slots=COMPILE_COST_SLOTS):
  """The buckets that minimise the estimated cost of a run that trains on
  `trained_sequences` sequences drawn like `lengths`: one compilation per bucket
  against the padded (sequence, step) slots it trains.

  The padded work of training is estimated from the padded size of `lengths`
  (all splits) scaled to `trained_sequences`: batches are cut from sequences
  sorted by length, so a batch pads little beyond its bucket.
  """
  sizes, choices = _least_padded_sizes(lengths, AUTO_MAX_BUCKETS)
  trained_slots = sizes * trained_sequences / len(lengths)
  counts = np.array([len(c) for c in choices])
  return choices[int(np.argmin(counts * compile_cost_slots + trained_slots))]


def pad_to(batch, num_steps):
  """Crops or zero-pads the time axis (axis 1 of every array of rank >= 2)."""
  out = dict(batch)
  for key, x in batch.items():
    if x.ndim >= 2:
      if x.shape[1] >= num_steps:
        out[key] = x[:, :num_steps]
      else:
        width = [(0, 0), (0, num_steps - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
        out[key] = np.pad(x, width)
  return out


def _bucket_for(max_len, buckets):
  return next(b for b in buckets if b >= max_len)


@functools.lru_cache(maxsize=4)
def _epoch_plan(lengths_bytes, batch_size, seed, epoch):
  lengths = np.frombuffer(lengths_bytes, np.int32)
  rng = np.random.default_rng([seed, epoch])
  order = rng.permutation(len(lengths))
  steps = len(lengths) // batch_size
  order = order[:steps * batch_size]
  # The epoch sorted by length (ties in their random order) and cut into batches:
  # a batch holds sequences of nearly one length, so it pads little.
  batches = order[np.argsort(lengths[order], kind='stable')].reshape(steps, batch_size)
  return batches[rng.permutation(steps)]


def steps_per_epoch(split, batch_size):
  return len(split['lengths']) // batch_size


def train_batch(split, step, *, batch_size, buckets, seed, process_index=0, process_count=1):
  """The batch of training step `step`, this process's share of it.

  Epoch e is a permutation of the split drawn from (seed, e); the last partial
  batch of an epoch is dropped so every step has `batch_size` sequences. With
  several processes, each returns its contiguous `batch_size / process_count` rows.
  """
  n = steps_per_epoch(split, batch_size)
  if n == 0:
    raise ValueError(f'the training split has {len(split["lengths"])} sequences, fewer than '
                     f'config.data.batch_size={batch_size}')
  epoch, i = divmod(step, n)
  lengths = np.ascontiguousarray(split['lengths'], np.int32)
  idx = _epoch_plan(lengths.tobytes(), batch_size, seed, epoch)[i]
  num_steps = _bucket_for(int(lengths[idx].max()), buckets)
  idx = np.array_split(idx, process_count)[process_index]
  return pad_to({k: v[idx] for k, v in split.items()}, num_steps)


def _eval_order(lengths):
  """Evaluation reads a split sorted by length (stable), so each batch pads little."""
  return np.argsort(lengths, kind='stable')


def eval_batches(split, *, batch_size, buckets, process_index=0, process_count=1):
  """The whole split sorted by length, in global batches of `batch_size`, this
  process's contiguous `batch_size / process_count` rows of each. The last batch
  is filled up with copies of its first row whose `weights` are 0, so that every
  example counts exactly once over all processes."""
  order = _eval_order(split['lengths'])
  n = len(order)
  rows = np.array_split(np.arange(batch_size), process_count)[process_index]
  for start in range(0, n, batch_size):
    idx = order[start:start + batch_size]
    weights = np.ones(batch_size, np.float32)
    weights[len(idx):] = 0
    idx = np.concatenate([idx, np.full(batch_size - len(idx), idx[0])])
    num_steps = _bucket_for(int(split['lengths'][idx].max()), buckets)  # the same on every process
    batch = {k: v[idx[rows]] for k, v in split.items()}
    batch['weights'] = weights[rows]
    yield pad_to(batch, num_steps)


def eval_padding_fraction(split, *, batch_size, buckets):
  """The fraction of padded (sequence, step) slots over the evaluation batches of
  `split`, the fill-up rows of the last batch included, from the lengths alone."""
  lengths = np.asarray(split['lengths'])[_eval_order(split['lengths'])]
  slots = sum(_bucket_for(int(lengths[s:s + batch_size].max()), buckets) * batch_size
              for s in range(0, len(lengths), batch_size))
  return 1.0 - lengths.sum() / slots


def epoch_padding_fraction(split, *, batch_size, buckets, seed, epoch=0):
  """The fraction of padded (sequence, step) slots in training epoch `epoch`,
  from the lengths alone (no batch is built)."""
  lengths = np.ascontiguousarray(split['lengths'], np.int32)
  batch_lengths = lengths[_epoch_plan(lengths.tobytes(), batch_size, seed, epoch)]
  padded = [_bucket_for(int(b.max()), buckets) * len(b) for b in batch_lengths]
  return 1.0 - batch_lengths.sum() / sum(padded)


def prefetch(make, keys, depth=2):
  """Yields `make(k)` for k in `keys`, computing up to `depth` ahead in a thread."""
  keys = iter(keys)
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    pending = collections.deque(pool.submit(make, k) for _, k in zip(range(depth), keys))
    while pending:
      result = pending.popleft().result()
      for k in keys:
        pending.append(pool.submit(make, k))
        break
      yield result
