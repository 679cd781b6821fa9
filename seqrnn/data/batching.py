"""Batches from a split: a deterministic function of (seed, step), padded to buckets.

Because the batch of step s depends only on (seed, s), the position in the data
stream is the step itself: a run resumed from a checkpoint at step s sees the
batches the uninterrupted run would have seen.

With `pack`, a training row holds several sequences end to end (`segments`
numbers them, see `seqrnn.batch`): a row as long as its bucket takes shorter
sequences into what would have been padding, and `batch_size` counts rows.
With `balance` (classification), an epoch holds every class as often as the
largest one, so a class of 3 series among classes of 30 is not seen a tenth as often.
"""

import bisect
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
# experiments.bench.e2e_benchmark` measures the train step's share, about 70,000 for the
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
  """Crops or zero-pads the time axis (axis 1 of every array of rank >= 2, but labels
  with lengths of their own, CTC's, which are not on it)."""
  out = dict(batch)
  for key, x in batch.items():
    if x.ndim >= 2 and not (key == 'labels' and 'label_lengths' in batch):
      if x.shape[1] >= num_steps:
        out[key] = x[:, :num_steps]
      else:
        width = [(0, 0), (0, num_steps - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
        out[key] = np.pad(x, width)
  return out


def _bucket_for(max_len, buckets):
  return next(b for b in buckets if b >= max_len)


def _balanced(labels, rng):
  """The sequences of a class-balanced epoch: each class's sequences in fresh random
  orders one after another, cut at the largest class's count (with repeats where
  a class is smaller), the classes concatenated."""
  classes, counts = np.unique(labels, return_counts=True)
  picks = []
  for c in classes:
    members = np.flatnonzero(labels == c)
    rounds = -(-counts.max() // len(members))
    picks.append(np.concatenate([rng.permutation(members) for _ in range(rounds)])[:counts.max()])
  return np.concatenate(picks)


def _epoch_size(lengths, labels):
  """Sequences an epoch draws: all of them, or with class balance (`labels` given)
  the largest class's count for every class."""
  if labels is None:
    return len(lengths)
  counts = np.unique(labels, return_counts=True)[1]
  return len(counts) * int(counts.max())


@functools.lru_cache(maxsize=4)
def _epoch_plan(lengths_bytes, batch_size, seed, epoch, labels_bytes=None):
  lengths = np.frombuffer(lengths_bytes, np.int32)
  rng = np.random.default_rng([seed, epoch])
  if labels_bytes is None:
    order = rng.permutation(len(lengths))
  else:
    members = _balanced(np.frombuffer(labels_bytes, np.int32), rng)
    order = members[rng.permutation(len(members))]
  steps = len(order) // batch_size
  order = order[:steps * batch_size]
  # The epoch sorted by length (ties in their random order) and cut into batches:
  # a batch holds sequences of nearly one length, so it pads little.
  batches = order[np.argsort(lengths[order], kind='stable')].reshape(steps, batch_size)
  return batches[rng.permutation(steps)]


@functools.lru_cache(maxsize=4)
def _row_layout(lengths_bytes, buckets):
  """Packed rows of sequences of these lengths taken longest first (best-fit
  decreasing): each sequence joins the row with the least room that holds it, or
  starts a row as long as its bucket. A list of rows, each the positions (in
  that longest-first order) of its sequences. It depends on the lengths alone,
  so every epoch has the same number of rows."""
  lengths = -np.sort(-np.frombuffer(lengths_bytes, np.int32), kind='stable')
  rows, room_of = [], collections.defaultdict(list)  # room -> rows with that much room
  rooms = []  # the distinct rooms of open rows, sorted
  for pos, length in enumerate(lengths.tolist()):
    j = bisect.bisect_left(rooms, length)
    if j < len(rooms):
      room = rooms[j]
      r = room_of[room].pop()
      if not room_of[room]:
        del rooms[j]
    else:
      r, room = len(rows), _bucket_for(length, buckets)
      rows.append([])
    rows[r].append(pos)
    room -= length
    if room:
      if not room_of[room]:
        bisect.insort(rooms, room)
      room_of[room].append(r)
  return rows


@functools.lru_cache(maxsize=4)
def _packed_plan(lengths_bytes, batch_size, buckets, seed, epoch):
  """Epoch `epoch`'s batches of packed rows: [steps] lists of `batch_size` rows,
  each an array of sequence indices. The epoch's permutation breaks the ties of
  the longest-first order, so which sequences share a row changes every epoch."""
  lengths = np.frombuffer(lengths_bytes, np.int32)
  rng = np.random.default_rng([seed, epoch])
  order = rng.permutation(len(lengths))
  order = order[np.argsort(-lengths[order], kind='stable')]
  rows = [order[pos] for pos in _row_layout(lengths_bytes, buckets)]
  steps = len(rows) // batch_size
  rows = [rows[r] for r in rng.permutation(len(rows))[:steps * batch_size]]
  # Cut from rows sorted by length: a batch's rows have nearly one length.
  rows = [rows[r] for r in np.argsort([lengths[row].sum() for row in rows], kind='stable')]
  batches = [rows[s * batch_size:(s + 1) * batch_size] for s in range(steps)]
  return [batches[s] for s in rng.permutation(steps)]


def _plan(lengths, batch_size, buckets, seed, epoch, pack, labels=None):
  """Epoch `epoch`'s batches: each a list of rows, a row an array of sequence indices
  (class-balanced when `labels` are given)."""
  if pack:
    return _packed_plan(lengths.tobytes(), batch_size, tuple(buckets), seed, epoch)
  labels_bytes = None if labels is None else np.ascontiguousarray(labels, np.int32).tobytes()
  return _epoch_plan(lengths.tobytes(), batch_size, seed, epoch, labels_bytes)[..., None]


def _balance_labels(split, balance, pack):
  """The per-sequence labels a class-balanced epoch draws by, or None without `balance`."""
  if not balance:
    return None
  if pack or split['labels'].ndim != 1:
    raise ValueError('class-balanced batches (config.data.balance_classes) need one label a '
                     'sequence (task=classification) and no packing')
  return split['labels']


def pack_rows(split, rows, num_steps):
  """The batch whose row r holds the sequences `rows[r]` (indices into `split`) end
  to end, padded to `num_steps`, with their `segments` (1, 2, ... at each
  sequence's steps, 0 at padding) and `lengths` (real steps per row)."""
  lengths = split['lengths']
  out = {}
  for key, x in split.items():
    if key == 'lengths':
      continue
    if x.ndim < 2:
      raise ValueError(f'packed rows join sequences end to end: the per-sequence array '
                       f'{key!r} {x.shape} cannot be packed')
    out[key] = np.zeros((len(rows), num_steps) + x.shape[2:], x.dtype)
  segments = np.zeros((len(rows), num_steps), np.int32)
  for r, row in enumerate(rows):
    t = 0
    for s, i in enumerate(row, 1):
      n = int(lengths[i])
      for key, y in out.items():
        y[r, t:t + n] = split[key][i, :n]
      segments[r, t:t + n] = s
      t += n
  out['segments'] = segments
  out['lengths'] = (segments > 0).sum(1).astype(np.int32)
  return out


def steps_per_epoch(split, batch_size, buckets=None, pack=False, balance=False):
  """Training steps in an epoch of `split` (with `pack`, the same in every epoch; with
  `balance`, an epoch of every class as often as the largest)."""
  lengths = np.ascontiguousarray(split['lengths'], np.int32)
  if pack:
    return len(_row_layout(lengths.tobytes(), tuple(buckets))) // batch_size
  return _epoch_size(lengths, _balance_labels(split, balance, pack)) // batch_size


def train_batch(split, step, *, batch_size, buckets, seed, pack=False, balance=False,
                process_index=0, process_count=1):
  """The batch of training step `step`, this process's share of it.

  Epoch e is a permutation of the split drawn from (seed, e); the last partial
  batch of an epoch is dropped so every step has `batch_size` sequences (with
  `pack`, rows; with `balance`, an epoch draws every class as often as the largest,
  see `_balanced`). With several processes, each returns its contiguous
  `batch_size / process_count` rows.
  """
  lengths = np.ascontiguousarray(split['lengths'], np.int32)
  n = steps_per_epoch(split, batch_size, buckets, pack, balance)
  if n == 0:
    raise ValueError(f'the training split has {len(lengths)} sequences, fewer than '
                     f'config.data.batch_size={batch_size}{" packed rows" if pack else ""}')
  epoch, i = divmod(step, n)
  rows = _plan(lengths, batch_size, buckets, seed, epoch, pack,
               _balance_labels(split, balance, pack))[i]
  num_steps = _bucket_for(max(int(lengths[row].sum()) for row in rows), buckets)
  rows = [rows[r] for r in np.array_split(np.arange(len(rows)), process_count)[process_index]]
  if pack:
    return pack_rows(split, rows, num_steps)
  idx = np.concatenate(rows)
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


def epoch_padding_fraction(split, *, batch_size, buckets, seed, pack=False, balance=False,
                           epoch=0):
  """The fraction of padded (row, step) slots in training epoch `epoch`, from the
  lengths alone (no batch is built)."""
  lengths = np.ascontiguousarray(split['lengths'], np.int32)
  real = padded = 0
  for rows in _plan(lengths, batch_size, buckets, seed, epoch, pack,
                    _balance_labels(split, balance, pack)):
    row_lengths = [int(lengths[row].sum()) for row in rows]
    real += sum(row_lengths)
    padded += _bucket_for(max(row_lengths), buckets) * len(rows)
  return 1.0 - real / padded


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
