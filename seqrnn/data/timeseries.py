"""UEA/UCR time-series classification: the archives' files from `config.data.path`
(`seqrnn.data.archive`: .tsv, .ts, .arff), or the sets aeon's wheel ships (JapaneseVowels
among them; `pip install 'seqrnn[timeseries]'`) when no path is given.
"""

import numpy as np

from seqrnn.data import archive
from seqrnn.data.dataset import Dataset, pad_sequences, split_indices, take
from seqrnn.data.files import DataFileError


def read_split(data_config, split):
  """(series [length_i, channels] list, labels list of str, where) of `split`."""
  name = data_config.uea.series
  if data_config.path:
    path = archive.find(data_config.path, name, split)
    return (*archive.read(path), str(path))
  try:
    from aeon.datasets import load_classification
  except ImportError as e:
    raise ImportError("data set uea needs aeon for the sets it ships, or config.data.path "
                      "naming the archive's files: pip install 'seqrnn[timeseries]'") from e
  try:
    series, labels = load_classification(name, split=split)
  except Exception as e:  # aeon tries a download for sets it does not ship
    raise FileNotFoundError(
        f'UEA/UCR set config.data.uea.series={name!r} is not one aeon ships ({type(e).__name__}: '
        f'{e}): give config.data.path, the directory of its {name}_TRAIN/_TEST .tsv, .ts or '
        f'.arff files (from timeseriesclassification.com)') from e
  # aeon gives [cases, channels, length] or a list of [channels, length_i].
  return ([np.asarray(x, np.float32).T for x in series], [archive.label(l) for l in labels],
          f"aeon's copy of {name}_{split.upper()}")


def load(data_config):
  """`config.data.uea.series` (e.g. 'JapaneseVowels'): channels per step, true lengths kept,
  each channel standardised with the mean and std of the training split's real steps;
  missing values inside a series refused or imputed (`data.uea.impute`); with
  `data.uea.deviation`, each value's deviation from the training mean series too
  (`with_deviation`: twice the channels).

  The archives have no validation split: `data.uea.eval_fraction` of the training
  series are held out as 'eval', or with 0 the 'eval' split *is* the training
  split (the published protocol: train on all of it for a fixed number of steps).
  """
  raw = {s: read_split(data_config, s) for s in ('train', 'test')}
  classes = sorted(set(raw['train'][1]), key=_class_order)
  splits = {}
  for name, (series, labels, where) in raw.items():
    unknown = sorted(set(labels) - set(classes))
    if unknown:
      raise DataFileError(f'{where}: class(es) {unknown} are not in the training file, which '
                          f'has {classes}: a model cannot learn them')
    series = archive.fill_missing(series, data_config.uea.impute,
                                  f'set {data_config.uea.series!r}, {where}')
    if len({s.shape[1] for s in series}) > 1:
      raise DataFileError(f'{where}: series of {sorted({s.shape[1] for s in series})} channels')
    inputs, lengths = pad_sequences(series, np.float32)
    splits[name] = {'inputs': inputs, 'lengths': lengths,
                    'labels': np.array([classes.index(c) for c in labels], np.int32)}
  train = splits['train']
  real = np.arange(train['inputs'].shape[1])[None, :] < train['lengths'][:, None]
  mean = np.nanmean(train['inputs'][real], 0)  # NaN: missing values left for 'zero'
  std = np.nanstd(train['inputs'][real], 0) + 1e-6
  for split in splits.values():
    real = np.arange(split['inputs'].shape[1])[None, :] < split['lengths'][:, None]
    standard = np.nan_to_num((split['inputs'] - mean) / std, nan=0.0)  # 'zero': the mean
    split['inputs'] = np.where(real[..., None], standard, 0).astype(np.float32)
  if data_config.uea.deviation:
    splits = with_deviation(splits, splits['train'])  # all of it, as the standardisation
  held_out = data_config.uea.eval_fraction
  if held_out > 0:
    eval_idx, train_idx = split_indices(len(train['labels']), (held_out, 1 - held_out), seed=0)
    splits['eval'] = take(splits['train'], eval_idx)
    splits['train'] = take(splits['train'], train_idx)
  else:  # the archives' protocol: train on all of it, no model selection on held-out data
    splits['eval'] = splits['train']
  return Dataset(splits=splits, num_classes=len(classes),
                 num_features=splits['train']['inputs'].shape[2],
                 class_names=tuple(str(c) for c in classes))


def with_deviation(splits, train):
  """`splits` ({name: {'inputs' [N, T, C], 'lengths' [N], ...}}) with C more channels: each
  real value minus the mean series of `train` at its step (the mean over the training series
  that reach it; a step no training series reaches keeps its value), zeros past a length.

  Where a value's place carries the class (spectra: OliveOil, Wine), the shape every series
  shares hides the small differences between classes, and the convolutional front end, the
  same at every step, cannot subtract a shape that changes along the series.
  """
  reached = np.arange(train['inputs'].shape[1])[None, :] < train['lengths'][:, None]
  mean_tc = np.nanmean(np.where(reached[..., None], train['inputs'], np.nan), 0)  # [T, C]
  out = {}
  for name, split in splits.items():
    inputs = split['inputs']
    steps = inputs.shape[1]
    mean = np.zeros((steps, inputs.shape[2]), np.float32)
    mean[:min(steps, len(mean_tc))] = mean_tc[:steps]
    real = np.arange(steps)[None, :] < split['lengths'][:, None]
    deviation = np.where(real[..., None], inputs - mean, 0).astype(np.float32)
    out[name] = {**split, 'inputs': np.concatenate([inputs, deviation], -1)}
  return out


def _class_order(label):
  """Numbers in numeric order (2 before 10), then other labels alphabetically."""
  try:
    return (0, float(label), '')
  except ValueError:
    return (1, 0.0, label)
