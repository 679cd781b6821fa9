"""The Stanford OCR handwritten words (Kassel, Taskar): one letter per step, 16x8 pixels.

File format (`letter.data`, optionally gzipped), one letter a line, tab-separated:
  id  letter  next_id  word_id  position  fold  p_0 ... p_127
A word is the chain of letters from its first one through `next_id` (-1 ends it).
"""

import gzip
import string

import numpy as np

from seqrnn.data.dataset import Dataset, pad_sequences, split_indices, take

NUM_FOLDS = 10


def read_letters(path):
  """(words, folds): words as (pixels [len, 128] float32, letters [len] int32)."""
  opener = gzip.open if str(path).endswith('.gz') else open
  rows = {}
  pointed_to = set()
  with opener(path, 'rt') as f:
    for line_no, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 6 + 128:
        raise ValueError(f'{path}:{line_no}: expected 134 fields, got {len(fields)}')
      letter_id, next_id = int(fields[0]), int(fields[2])
      rows[letter_id] = (fields[1], next_id, int(fields[5]),
                         np.array(fields[6:], np.float32))
      if next_id != -1:
        pointed_to.add(next_id)
  words, folds = [], []
  for start in sorted(set(rows) - pointed_to):  # first letters: nothing points to them
    pixels, letters, i = [], [], start
    while i != -1:
      letter, i_next, fold, p = rows[i]
      pixels.append(p)
      letters.append(string.ascii_lowercase.index(letter))
      i = i_next
    words.append((np.stack(pixels), np.array(letters, np.int32)))
    folds.append(rows[start][2])
  return words, np.array(folds)


def _split(words):
  inputs, lengths = pad_sequences([w for w, _ in words], np.float32)
  labels, _ = pad_sequences([l for _, l in words], np.int32)
  return {'inputs': inputs, 'lengths': lengths, 'labels': labels}


def load(data_config):
  """Labelling data from `config.data.path`. Fold `config.data.fold` is the test set and
  the other nine train, or (`config.data.train_on_one_fold`) the reverse; a tenth of the
  training words is held out for evaluation."""
  if not data_config.path:
    raise FileNotFoundError('data set ocr needs config.data.path: the file letter.data[.gz] of '
                            'the Stanford OCR data set (ai.stanford.edu/~btaskar/ocr)')
  words, folds = read_letters(data_config.path)
  if not 0 <= data_config.fold < NUM_FOLDS:
    raise ValueError(f'config.data.fold={data_config.fold} must be in [0, {NUM_FOLDS})')
  in_fold = folds == data_config.fold
  train_mask = in_fold if data_config.train_on_one_fold else ~in_fold
  whole = _split(words)
  train = take(whole, np.flatnonzero(train_mask))
  eval_idx, train_idx = split_indices(len(train['lengths']), (0.1, 0.9), seed=0)
  return Dataset(splits={'train': take(train, train_idx), 'eval': take(train, eval_idx),
                         'test': take(whole, np.flatnonzero(~train_mask))},
                 num_classes=26, num_features=128, class_names=tuple(string.ascii_lowercase))
