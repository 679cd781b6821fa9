"""The Stanford OCR handwritten words (Kassel, Taskar): one letter per step, 16x8 pixels
(`load`), or each word one image, its letters' images side by side, read a pixel column
a step with the word's letters as an unaligned target (`load_unsegmented`, for CTC).

File format (`letter.data`, optionally gzipped), one letter a line, tab-separated:
  id  letter  next_id  word_id  position  fold  p_0 ... p_127
A word is the chain of letters from its first one through `next_id` (-1 ends it).
"""

import pathlib
import string

import numpy as np

from seqrnn.data.dataset import Dataset, pad_sequences, split_indices, take
from seqrnn.data.files import DataFileError, read_lines

_SOURCE = 'the file letter.data[.gz] of the Stanford OCR data set (ai.stanford.edu/~btaskar/ocr)'

NUM_FOLDS = 10


def read_letters(path):
  """(words, folds): words as (pixels [len, 128] float32, letters [len] int32).

  Every letter must belong to exactly one word, at the position it states: a
  chain that loops, points to a missing id, shares a letter with another chain
  or runs into another word is refused, naming the ids.
  """
  rows, line_of, pointed_to = {}, {}, {}
  for line_no, line in read_lines(path):
    fields = line.split()
    if not fields:
      continue
    where = f'{path}:{line_no}'
    if len(fields) != 6 + 128:
      raise DataFileError(f'{where}: expected 134 fields, got {len(fields)}')
    try:
      letter_id, next_id, word_id, position, fold = (int(fields[i]) for i in (0, 2, 3, 4, 5))
      pixels = np.array(fields[6:], np.float32)
    except ValueError as e:
      raise DataFileError(f'{where}: {e} (ids, fold and pixels are numbers)') from None
    if fields[1] not in string.ascii_lowercase or len(fields[1]) != 1:
      raise DataFileError(f'{where}: letter {fields[1]!r} is not one of a-z')
    if letter_id in rows:
      raise DataFileError(f'{where}: letter id {letter_id} again (first on line '
                          f'{line_of[letter_id]})')
    if next_id in pointed_to:
      raise DataFileError(f'{where}: next_id {next_id} is also the next letter of id '
                          f'{pointed_to[next_id]}')
    rows[letter_id] = (fields[1], next_id, (word_id, position), fold, pixels)
    line_of[letter_id] = line_no
    if next_id != -1:
      pointed_to[next_id] = letter_id
  words, folds, used = [], [], set()
  for start in sorted(set(rows) - set(pointed_to)):  # first letters: nothing points to them
    pixels, letters, i, prev = [], [], start, None
    word_id, first = rows[start][2]  # positions count on from the first letter's
    while i != -1:
      if i not in rows:
        raise DataFileError(f'{path}: letter id {i}, the next letter after id {prev}, is not '
                            f'in the file (cut inside a word?)')
      letter, i_next, place, _, p = rows[i]
      if place != (word_id, first + len(letters)):
        raise DataFileError(f'{path}:{line_of[i]}: letter id {i} says word {place[0]} position '
                            f'{place[1]}, but its chain makes it word {word_id} position '
                            f'{first + len(letters)}')
      used.add(i)
      pixels.append(p)
      letters.append(string.ascii_lowercase.index(letter))
      prev, i = i, i_next
    words.append((np.stack(pixels), np.array(letters, np.int32)))
    folds.append(rows[start][3])
  if len(used) != len(rows):
    loose = sorted(set(rows) - used)
    raise DataFileError(f'{path}: {len(loose)} letter(s) belong to no word (their next_id '
                        f'chains form a loop), ids {loose[:10]}, first on line '
                        f'{line_of[loose[0]]}')
  return words, np.array(folds)


def _split(words):
  inputs, lengths = pad_sequences([w for w, _ in words], np.float32)
  labels, _ = pad_sequences([l for _, l in words], np.int32)
  return {'inputs': inputs, 'lengths': lengths, 'labels': labels}


def _unsegmented_split(words):
  """Each word as pixel columns [8 * letters, 16] (a letter is 16 rows of 8 pixels, row
  by row in the file), its letters 1..26 (0 is CTC's blank) as the target."""
  columns = [w.reshape(len(w), 16, 8).transpose(0, 2, 1).reshape(-1, 16) for w, _ in words]
  inputs, lengths = pad_sequences(columns, np.float32)
  labels, label_lengths = pad_sequences([l + 1 for _, l in words], np.int32)
  return {'inputs': inputs, 'lengths': lengths, 'labels': labels, 'label_lengths': label_lengths}


def load(data_config):
  """Labelling data from `config.data.path`. Fold `config.data.ocr.fold` is the test set and
  the other nine train, or (`config.data.ocr.train_on_one_fold`) the reverse; a tenth of the
  training words is held out for evaluation."""
  whole, train_mask = _words_and_folds(data_config, _split)
  return _splits(whole, train_mask, num_classes=26, num_features=128,
                 class_names=tuple(string.ascii_lowercase))


def load_unsegmented(data_config):
  """CTC data (`task='ctc'`) from the same file and folds as `load`: each word one image,
  read a pixel column (16 pixels) a step, 8 steps a letter, its letters the target with no
  alignment to the columns (27 classes: the blank, a-z)."""
  whole, train_mask = _words_and_folds(data_config, _unsegmented_split)
  return _splits(whole, train_mask, num_classes=27, num_features=16,
                 class_names=('<blank>',) + tuple(string.ascii_lowercase))


def _splits(whole, train_mask, **info):
  train = take(whole, np.flatnonzero(train_mask))
  eval_idx, train_idx = split_indices(len(train['lengths']), (0.1, 0.9), seed=0)
  return Dataset(splits={'train': take(train, train_idx), 'eval': take(train, eval_idx),
                         'test': take(whole, np.flatnonzero(~train_mask))}, **info)


def _words_and_folds(data_config, make_split):
  """(every word as `make_split` lays them out, the training words' mask)."""
  if not data_config.path:
    raise FileNotFoundError(f'data set ocr needs config.data.path: {_SOURCE}')
  if not pathlib.Path(data_config.path).is_file():
    raise FileNotFoundError(f'config.data.path={data_config.path!r} is not a file; data set ocr '
                            f'reads {_SOURCE}')
  words, folds = read_letters(data_config.path)
  if not 0 <= data_config.ocr.fold < NUM_FOLDS:
    raise ValueError(f'config.data.ocr.fold={data_config.ocr.fold} must be in [0, {NUM_FOLDS})')
  in_fold = folds == data_config.ocr.fold
  return make_split(words), in_fold if data_config.ocr.train_on_one_fold else ~in_fold
