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
