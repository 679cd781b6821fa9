"""The 1-NN DTW reference of UEA/UCR sets: the baseline their archives publish.

  pip install -e '.[timeseries]'
  python -m experiments.dtw_reference --series=ArrowHead,GunPoint

Classifies each test series by its nearest training series under dynamic time
warping with no window (aeon's `KNeighborsTimeSeriesClassifier(distance='dtw')`;
multivariate sets use the dependent DTW, DTW_D), on the archive's own
train/test split and the raw values, and prints its test accuracy per set.
"""

import time

import numpy as np
from absl import app, flags

# The classification sets aeon's wheel ships.
SHIPPED = ('ArrowHead', 'GunPoint', 'ItalyPowerDemand', 'OSULeaf', 'ACSF1', 'BasicMotions',
           'JapaneseVowels', 'PickupGestureWiimoteZ')

_SERIES = flags.DEFINE_list('series', list(SHIPPED), 'UEA/UCR sets to measure')


def dtw_accuracy(name):
  """(test accuracy of 1-NN DTW, seconds) on set `name`'s archive split."""
  from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
  from aeon.datasets import load_classification
  x_train, y_train = load_classification(name, split='train')
  x_test, y_test = load_classification(name, split='test')
  start = time.perf_counter()
  knn = KNeighborsTimeSeriesClassifier(distance='dtw', n_neighbors=1).fit(x_train, y_train)
  accuracy = float(np.mean(knn.predict(x_test) == np.asarray(y_test)))
  return accuracy, time.perf_counter() - start


def main(argv):
  del argv
  for name in _SERIES.value:
    accuracy, seconds = dtw_accuracy(name)
    print(f'{name}: 1-NN DTW test accuracy {accuracy:.4f} ({seconds:.1f} s)', flush=True)


if __name__ == '__main__':
  app.run(main)
