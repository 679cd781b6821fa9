"""The UCR/UEA time-series archives' files, read as they are published.

  NAME_TRAIN.tsv, NAME_TEST.tsv    the 2018 UCR univariate archive: a series a line, its
                                   label first, then its values, tab-separated; a series
                                   shorter than the longest is padded with NaN at its end
  NAME_TRAIN.ts, NAME_TEST.ts      the UEA multivariate archive (sktime's format): a
                                   header of @-lines, then a series a line, its channels
                                   separated by ':', values by ',', the label last; '?' or
                                   NaN is a missing value
  NAME_TRAIN.arff, NAME_TEST.arff  Weka's, in both archives: univariate (a value an
                                   attribute, the class last) or multivariate (one
                                   relational attribute: '<channel>\\n<channel>...',class)

in DIR/NAME/ or DIR/ itself. `read` gives each series as a [length, channels] float32
array: NaN at the end of a series (in every channel) is its padding, and is cut off; a
NaN before its last real step is a missing value, which `fill_missing` refuses (naming
where) unless told how to impute it.
"""

import pathlib
import re

import numpy as np

from seqrnn.data.files import DataFileError

EXTENSIONS = ('tsv', 'ts', 'arff')
IMPUTE = ('none', 'linear', 'zero')


def find(directory, name, split):
  """The file of `split` ('train' or 'test') of set `name` under `directory`."""
  tried = []
  for folder in (pathlib.Path(directory) / name, pathlib.Path(directory)):
    for extension in EXTENSIONS:
      path = folder / f'{name}_{split.upper()}.{extension}'
      if path.is_file():
        return path
      tried.append(str(path))
  raise FileNotFoundError(f'set {name!r}: no {split} file in {directory} (looked for '
                          f'{", ".join(tried[:3])}, and .ts/.arff beside them); the archives are '
                          f'at timeseriesclassification.com and cs.ucr.edu/~eamonn/time_series_data_2018')


def read(path):
  """(series: list of [length_i, channels] float32 arrays, labels: list of str) of an
  archive file, trailing NaN padding cut off."""
  path = pathlib.Path(path)
  reader = {'.tsv': _read_tsv, '.ts': _read_ts, '.arff': _read_arff}.get(path.suffix)
  if reader is None:
    raise DataFileError(f'{path}: not a .tsv, .ts or .arff file')
  try:
    rows = reader(path.read_text(errors='replace').splitlines())
  except ValueError as e:
    raise DataFileError(f'{path}: {e}') from None
  if not rows:
    raise DataFileError(f'{path} holds no series')
  series, labels = [], []
  for i, (channels, tag) in enumerate(rows):
    width = max(len(c) for c in channels)
    array = np.full((width, len(channels)), np.nan, np.float32)
    for c, values in enumerate(channels):
      array[:len(values), c] = values
    real = np.flatnonzero(np.isfinite(array).any(1))
    if not len(real):
      raise DataFileError(f'{path}: series {i} (of class {tag!r}) has no value')
    series.append(array[:real[-1] + 1])
    labels.append(tag)
  return series, labels


def fill_missing(series, impute, where):
  """`series` with the missing values inside them imputed: 'linear' interpolates each
  channel between its real neighbours (the nearest value before the first or after the
  last), 'zero' leaves NaN for the caller to set to 0 once standardised (the channel's
  training mean); 'none' refuses them, naming the first one."""
  if impute not in IMPUTE:
    raise ValueError(f'impute={impute!r} is not one of {IMPUTE}')
  missing = [(i, np.argwhere(~np.isfinite(s))) for i, s in enumerate(series)]
  missing = [(i, m) for i, m in missing if len(m)]
  if not missing:
    return series
  if impute == 'none':
    i, m = missing[0]
    total = sum(len(m) for _, m in missing)
    raise DataFileError(
        f'{where}: series {i} misses its value at step {m[0][0]}, channel {m[0][1]} (counting '
        f'from 0; {total} missing values in {len(missing)} series): impute them with '
        f"config.data.uea.impute='linear' (between the real neighbours) or 'zero' (the "
        f"channel's training mean)")
  if impute == 'zero':
    return series
  out = list(series)
  for i, _ in missing:
    s = series[i].copy()
    steps = np.arange(len(s))
    for c in range(s.shape[1]):
      real = np.isfinite(s[:, c])
      if not real.any():
        raise DataFileError(f'{where}: series {i} has no value in channel {c} to interpolate from')
      s[:, c] = np.interp(steps, steps[real], s[real, c])
    out[i] = s
  return out


def _number(text):
  text = text.strip()
  return np.nan if text in ('?', '', 'NaN', 'nan') else float(text)


def _read_tsv(lines):
  rows = []
  for line in lines:
    if line.strip():
      tag, *values = re.split(r'[\t,]', line.strip())
      rows.append(([[_number(v) for v in values]], label(tag)))
  return rows


def _read_ts(lines):
  rows, data = [], False
  for line in lines:
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    if not data:
      lower = line.lower()
      if lower.startswith('@timestamps') and lower.split()[-1] == 'true':
        raise ValueError('series with time stamps are not read; give them without')
      if lower.startswith('@classlabel') and lower.split()[1] == 'false':
        raise ValueError('the file has no class labels (a regression set?)')
      data = lower == '@data'
      continue
    *channels, tag = line.split(':')
    rows.append(([[_number(v) for v in c.split(',')] for c in channels], label(tag)))
  if not data:
    raise ValueError('no @data line')
  return rows


def _read_arff(lines):
  rows, data, relational = [], False, False
  for line in lines:
    line = line.strip()
    if not line or line.startswith('%'):
      continue
    if not data:
      lower = line.lower()
      relational |= lower.startswith('@attribute') and 'relational' in lower
      data = lower == '@data'
      continue
    if relational:  # 'v,v,...\nv,v,...',label: a channel a line of the quoted value
      quoted, _, tag = line.rpartition(',')
      channels = quoted.strip().strip('"\'').split('\\n')
      rows.append(([[_number(v) for v in c.split(',')] for c in channels], label(tag)))
    else:
      *values, tag = line.split(',')
      rows.append(([[_number(v) for v in values]], label(tag)))
  if not data:
    raise ValueError('no @data line')
  return rows


def label(text):
  """A class label as text: '1.0' and '1' are one class (files write numbers both ways)."""
  text = text.strip().strip('"\'')
  try:
    number = float(text)
  except ValueError:
    return text
  return str(int(number)) if number.is_integer() else text
