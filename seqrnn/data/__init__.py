"""Data sets: each loader returns a `Dataset` of padded numpy splits.

Add a data set by writing a loader `fn(data_config) -> Dataset` and naming it
in DATASETS.
"""

from seqrnn.data.dataset import Dataset
from seqrnn.data import conllu, digits, idx, ocr, timeseries

DATASETS = {
    'digits': digits.load,
    'turkish_pos': conllu.load_turkish,
    'conllu': conllu.load_directory,
    'mnist': idx.load_mnist,
    'fashion_mnist': idx.load_fashion_mnist,
    'ocr': ocr.load,
    'uea': timeseries.load,
}


def load(data_config):
  """The `Dataset` named by `data_config.name`."""
  if data_config.name not in DATASETS:
    raise ValueError(f'config.data.name={data_config.name!r} is not a data set; '
                     f'expected one of {sorted(DATASETS)}')
  return DATASETS[data_config.name](data_config)
