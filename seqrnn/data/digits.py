"""scikit-learn's handwritten digits: 8x8 images read as 8 steps of 8 pixels."""

import numpy as np

from seqrnn.data.dataset import Dataset, split_indices, take

# A fixed split (independent of config.seed, so results compare across seeds).
_SPLIT_SEED = 0
_FRACTIONS = (0.7, 0.15, 0.15)  # train, eval, test


def load(data_config):
  del data_config
  from sklearn.datasets import load_digits  # the data ship inside scikit-learn
  digits = load_digits()
  images = (digits.images / 16.0).astype(np.float32)  # [N, 8 rows, 8 pixels]
  whole = {'inputs': images,
           'lengths': np.full(len(images), images.shape[1], np.int32),
           'labels': digits.target.astype(np.int32)}
  train, eval_, test = split_indices(len(images), _FRACTIONS, _SPLIT_SEED)
  return Dataset(splits={'train': take(whole, train), 'eval': take(whole, eval_),
                         'test': take(whole, test)},
                 num_classes=10, num_features=images.shape[2],
                 class_names=tuple(str(d) for d in range(10)))
