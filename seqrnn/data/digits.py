"""scikit-learn's handwritten digits: 8x8 images read as 8 steps of 8 pixels."""

import importlib.util
import pathlib

import numpy as np

from seqrnn.data.dataset import Dataset, split_indices, take

# A fixed split (independent of config.seed, so results compare across seeds).
_SPLIT_SEED = 0
_FRACTIONS = (0.7, 0.15, 0.15)  # train, eval, test


def load(data_config):
  del data_config
  pixels, labels = _read()
  images = (pixels.reshape(-1, 8, 8) / 16.0).astype(np.float32)  # [N, 8 rows, 8 pixels]
  whole = {'inputs': images,
           'lengths': np.full(len(images), images.shape[1], np.int32),
           'labels': labels.astype(np.int32)}
  train, eval_, test = split_indices(len(images), _FRACTIONS, _SPLIT_SEED)
  return Dataset(splits={'train': take(whole, train), 'eval': take(whole, eval_),
                         'test': take(whole, test)},
                 num_classes=10, num_features=images.shape[2],
                 class_names=tuple(str(d) for d in range(10)))


def _read():
  """(pixels [N, 64], labels [N]) from the file scikit-learn ships. Read directly where it
  is found: importing scikit-learn takes 2 s, a third of a small run's start."""
  spec = importlib.util.find_spec('sklearn')  # finds the package without importing it
  path = (pathlib.Path(spec.submodule_search_locations[0], 'datasets', 'data', 'digits.csv.gz')
          if spec else None)
  if path is None or not path.exists():
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
    digits = load_digits()
    return digits.data, digits.target
  data = np.loadtxt(path, delimiter=',')
  return data[:, :-1], data[:, -1]
