"""Data sets: each loader returns a `Dataset` of padded numpy splits.

Add a data set by writing a loader `fn(data_config) -> Dataset` and naming it
in DATASETS.
"""

import dataclasses

from seqrnn.data.dataset import Dataset, frames
from seqrnn.data import conllu, digits, idx, ocr, timeseries

DATASETS = {
    'digits': digits.load,
    'turkish_pos': conllu.load_turkish,
    'conllu': conllu.load_directory,
    'mnist': idx.load_mnist,
    'fashion_mnist': idx.load_fashion_mnist,
    'ocr': ocr.load,
    'ocr_unsegmented': ocr.load_unsegmented,
    'uea': timeseries.load,
}


def load(data_config):
  """The `Dataset` named by `data_config.name`, in frames of `data_config.frames.size`
  steps where that is more than 1 (0: chosen from the lengths, `auto_frame_size`)."""
  if data_config.name not in DATASETS:
    raise ValueError(f'config.data.name={data_config.name!r} is not a data set; '
                     f'expected one of {sorted(DATASETS)}')
  dataset = DATASETS[data_config.name](data_config)
  size = data_config.frames.size
  if not size:
    size = auto_frame_size(dataset.splits['train']['lengths']) if _framable(dataset) else 1
  if size > 1:
    dataset = in_frames(dataset, size, data_config.frames.stride or size)
  return dataset


AUTO_MAX_FRAMES = 64


def auto_frame_size(lengths):
  """`data.frames.size=0`: the smallest frame size that reads the longest training
  sequence in at most AUTO_MAX_FRAMES steps (1 for sequences that short already)."""
  return max(1, -(-int(max(lengths)) // AUTO_MAX_FRAMES))


def _framable(dataset):
  """Float inputs whose labels are not on the time axis: one a sequence, or CTC's."""
  train = dataset.splits['train']
  return dataset.num_features is not None and (train['labels'].ndim == 1
                                               or 'label_lengths' in train)


def in_frames(dataset, size, stride):
  """`dataset` with every split read in frames (see `frames`)."""
  if not _framable(dataset):
    raise ValueError(f'config.data.frames.size={size}: frames are for float series with one '
                     f'label per sequence; this data set has '
                     f'{"token inputs" if dataset.num_features is None else "a label per step"}')
  splits = {name: frames(split, size, stride) for name, split in dataset.splits.items()}
  if dataset.splits['eval'] is dataset.splits['train']:
    splits['eval'] = splits['train']  # still the same split (see data.uea.eval_fraction)
  return dataclasses.replace(dataset, splits=splits, num_features=dataset.num_features * size)
