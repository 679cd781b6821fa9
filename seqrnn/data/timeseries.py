"""UEA/UCR time-series classification through `aeon` (`pip install 'seqrnn[timeseries]'`).

aeon's wheel ships several sets (JapaneseVowels among them); others it looks
for in `config.data.path` when set.
"""

import numpy as np

from seqrnn.data.dataset import Dataset, pad_sequences, split_indices, take
from seqrnn.data.files import DataFileError


def load(data_config):
  """`config.data.uea.series` (e.g. 'JapaneseVowels'): channels per step, true lengths kept,
  each channel standardised with the mean and std of the training split's real steps.

  The archives have no validation split: `data.uea.eval_fraction` of the training
  series are held out as 'eval', or with 0 the 'eval' split *is* the training
  split (the published protocol: train on all of it for a fixed number of steps).
  """
  try:
    from aeon.datasets import load_classification
  except ImportError as e:
    raise ImportError("data set uea needs aeon: pip install 'seqrnn[timeseries]'") from e
  kw = {'extract_path': data_config.path} if data_config.path else {}
  try:
    raw = {s: load_classification(data_config.uea.series, split=s, **kw) for s in ('train', 'test')}
  except Exception as e:  # aeon tries a download for sets it does not ship
    raise FileNotFoundError(
        f'UEA/UCR set config.data.uea.series={data_config.uea.series!r} could not be loaded: '
        f'{type(e).__name__}: {e}. A set aeon does not ship is read from '
        f'config.data.path={data_config.path!r} (expected <path>/{data_config.uea.series}/'
        f'{data_config.uea.series}_TRAIN.ts and _TEST.ts, from timeseriesclassification.com)') from e
  classes = sorted(set(raw['train'][1]))
  splits = {}
  for name, (series, labels) in raw.items():
    where = _file(data_config, name)
    if not len(series):
      raise DataFileError(f'{where} holds no series (is its @data line missing?)')
    unknown = sorted(set(labels) - set(classes))
    if unknown:
      raise DataFileError(f'{where}: class(es) {[str(c) for c in unknown]} are not in the '
                          f'training file, which has {[str(c) for c in classes]}: a model '
                          f'cannot learn them')
    # aeon gives [cases, channels, length] or a list of [channels, length_i].
    inputs, lengths = pad_sequences([np.asarray(x, np.float32).T for x in series], np.float32)
    real = np.arange(inputs.shape[1])[None, :] < lengths[:, None]
    bad = np.argwhere(real[..., None] & ~np.isfinite(inputs))
    if len(bad):  # before standardising, which would spread it over every value
      i, t, c = bad[0]
      raise DataFileError(f'{where}: series {i} holds {inputs[i, t, c]} at step {t}, '
                          f'channel {c} (counting from 0; {len(bad)} such values in all): '
                          f'fill or drop missing values first')
    splits[name] = {'inputs': inputs, 'lengths': lengths,
                    'labels': np.array([classes.index(c) for c in labels], np.int32)}
  train = splits['train']
  real = np.arange(train['inputs'].shape[1])[None, :] < train['lengths'][:, None]
  mean = train['inputs'][real].mean(0)
  std = train['inputs'][real].std(0) + 1e-6
  for split in splits.values():
    real = np.arange(split['inputs'].shape[1])[None, :] < split['lengths'][:, None]
    split['inputs'] = np.where(real[..., None], (split['inputs'] - mean) / std, 0).astype(np.float32)
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


def _file(data_config, split):
  """Where aeon read `split` of the set from, for messages."""
  name = f'{data_config.uea.series}_{split.upper()}.ts'
  if data_config.path:
    return f'{data_config.path}/{data_config.uea.series}/{name}'
  return f"aeon's copy of {name}"
