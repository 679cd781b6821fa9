"""The 1-NN DTW reference of UEA/UCR sets: the baseline their archives publish.

  pip install -e '.[timeseries]'
  python -m experiments.dtw_reference --series=ArrowHead,GunPoint
  python -m experiments.dtw_reference --series=Coffee,Wine --path=DIR   # the archive's files

Classifies each test series by its nearest training series under dynamic time
warping with no window (aeon's `KNeighborsTimeSeriesClassifier(distance='dtw')`;
multivariate sets use the dependent DTW, DTW_D), on the archive's own
train/test split and the raw values, and prints its test accuracy per set. With
`--path` the sets are read from the archives' .tsv/.ts/.arff files there, as the
configs' `data.path` reads them (`seqrnn.data.archive`); else aeon's shipped copies.
"""

import time

import numpy as np
from absl import app, flags

from seqrnn.data import archive

# The classification sets aeon's wheel ships.
SHIPPED = ('ArrowHead', 'GunPoint', 'ItalyPowerDemand', 'OSULeaf', 'ACSF1', 'BasicMotions',
           'JapaneseVowels', 'PickupGestureWiimoteZ')

_SERIES = flags.DEFINE_list('series', list(SHIPPED), 'UEA/UCR sets to measure')
_PATH = flags.DEFINE_string('path', '', 'Directory of the archives\' files (DIR/NAME/NAME_TRAIN.tsv, '
                            '.ts or .arff), as config.data.path; empty: aeon\'s shipped sets')
_IMPUTE = flags.DEFINE_enum('impute', 'none', list(archive.IMPUTE),
                            'Missing values inside a series, as config.data.uea.impute (zero: 0)')


def _read(name, split, path, impute):
  """(x: [cases, channels, length] or a list of [channels, length_i], labels) of a split."""
  if not path:
    from aeon.datasets import load_classification
    return load_classification(name, split=split)
  file = archive.find(path, name, split)
  series, labels = archive.read(file)
  series = [np.nan_to_num(s) for s in archive.fill_missing(series, impute, f'set {name!r}, {file}')]
  if len({len(s) for s in series}) == 1:
    return np.stack([s.T for s in series]), np.asarray(labels)
  return [s.T for s in series], np.asarray(labels)


def dtw_accuracy(name, path='', impute='none'):
  """(test accuracy of 1-NN DTW, seconds) on set `name`'s archive split."""
  from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
  x_train, y_train = _read(name, 'train', path, impute)
  x_test, y_test = _read(name, 'test', path, impute)
  start = time.perf_counter()
  knn = KNeighborsTimeSeriesClassifier(distance='dtw', n_neighbors=1).fit(x_train, y_train)
  accuracy = float(np.mean(knn.predict(x_test) == np.asarray(y_test)))
  return accuracy, time.perf_counter() - start


def main(argv):
  del argv
  for name in _SERIES.value:
    accuracy, seconds = dtw_accuracy(name, _PATH.value, _IMPUTE.value)
    print(f'{name}: 1-NN DTW test accuracy {accuracy:.4f} ({seconds:.1f} s)', flush=True)


if __name__ == '__main__':
  app.run(main)
