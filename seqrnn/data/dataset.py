"""The container every loader returns."""

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass
class Dataset:
  """Splits 'train', 'eval', 'test', each a batch dict (see `seqrnn.batch`)
  holding the whole split, padded to its longest sequence."""
  splits: dict
  num_classes: int
  num_features: Optional[int] = None   # float inputs [N, time, num_features]
  vocab_size: Optional[int] = None     # token inputs [N, time]
  num_chars: Optional[int] = None      # character ids 'chars' [N, time, max_chars] of each token
  class_names: tuple = ()


def pad_sequences(seqs, dtype, fill=0):
  """A list of arrays [len_i, ...] -> (padded [N, max_len, ...], lengths [N])."""
  if not len(seqs):
    raise ValueError('a data set split holds no sequence')
  lengths = np.array([len(s) for s in seqs], np.int32)
  out = np.full((len(seqs), lengths.max()) + np.shape(seqs[0])[1:], fill, dtype)
  for i, s in enumerate(seqs):
    out[i, :len(s)] = s
  return out, lengths


def split_indices(n, fractions, seed):
  """A fixed random partition of range(n) into len(fractions) index arrays."""
  perm = np.random.default_rng(seed).permutation(n)
  bounds = np.cumsum(np.round(np.asarray(fractions[:-1]) * n).astype(int))
  return np.split(perm, bounds)


def take(split, idx):
  """Rows `idx` of every array of a split."""
  return {k: v[idx] for k, v in split.items()}


def frames(split, size, stride):
  """Each float sequence read `size` steps at a time, frames starting `stride`
  steps apart: inputs [N, T, F] -> [N, T', size * F], a sequence of length L
  becoming ceil(max(L - size, 0) / stride) + 1 frames (1,460 steps in frames of
  8 are 183 steps), its last frame zero-filled past L. Every frame starts at a
  real step, and no step is skipped: a stride longer than the frame is refused."""
  if not 1 <= stride <= size:
    raise ValueError(f'frames of {size} steps every {stride} steps: the stride must be in '
                     f'[1, {size}] (a longer one would skip the steps between frames, and '
                     f'could make a last frame of padding alone)')
  x, lengths = split['inputs'], split['lengths']
  n, t, f = x.shape
  new_lengths = ((np.maximum(lengths - size, 0) + stride - 1) // stride + 1).astype(np.int32)
  num_frames = int(new_lengths.max())
  x = np.pad(x, ((0, 0), (0, max((num_frames - 1) * stride + size - t, 0)), (0, 0)))
  x = np.where((np.arange(x.shape[1])[None, :] < lengths[:, None])[..., None], x, 0)
  steps = np.arange(num_frames)[:, None] * stride + np.arange(size)[None, :]  # [T', size]
  return dict(split, inputs=x[:, steps].reshape(n, num_frames, size * f).astype(x.dtype),
              lengths=new_lengths)
