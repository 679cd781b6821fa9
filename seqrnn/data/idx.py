"""MNIST and Fashion-MNIST from the four standard IDX files, images read row by row."""

import pathlib

import numpy as np

from seqrnn.data.dataset import Dataset, split_indices, take
from seqrnn.data.files import DataFileError, read_bytes

FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'  # Debian's dataset-fashion-mnist
_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
          'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
_EVAL_SIZE = 5000  # held out from the 60,000 training images, a fixed split
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}


def read_idx(path):
  """The array stored in an IDX file (optionally gzipped)."""
  raw = read_bytes(path)
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
    raise DataFileError(f'{path} is not an IDX file (magic bytes {raw[:4]!r})')
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise DataFileError(f'{path}: truncated header ({len(raw)} bytes; a {ndim}-dimensional IDX '
                        f'header has {4 + 4 * ndim})')
  shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim))
  data = np.frombuffer(raw, _DTYPES[raw[2]], offset=4 + 4 * ndim)
  if data.size != np.prod(shape):
    raise DataFileError(f'{path}: header says shape {shape}, file holds {data.size} values '
                        f'(truncated?)')
  return data.reshape(shape)


def _find(root, stem, field):
  for name in (stem, stem + '.gz'):
    if (root / name).exists():
      return root / name
  raise FileNotFoundError(
      f'{root / stem}[.gz] not found: config.{field} must name a directory holding the four '
      f'IDX files {[n for pair in _FILES.values() for n in pair]} (MNIST: '
      f'yann.lecun.com/exdb/mnist; Fashion-MNIST: `apt-get install dataset-fashion-mnist` '
      f'puts them in {FASHION_MNIST_DIR})')


def load_directory(directory, field='data.path'):
  """Rows-as-timesteps classification data from the IDX files in `directory`."""
  root = pathlib.Path(directory)
  splits = {}
  for split, (images, labels) in _FILES.items():
    x = read_idx(_find(root, images, field)).astype(np.float32) / 255.0  # [N, 28 rows, 28 px]
    y = read_idx(_find(root, labels, field)).astype(np.int32)
    if len(x) != len(y):
      raise DataFileError(f'{root}: {len(x)} {split} images but {len(y)} labels')
    splits[split] = {'inputs': x, 'lengths': np.full(len(x), x.shape[1], np.int32), 'labels': y}
  n = len(splits['train']['labels'])
  if n <= _EVAL_SIZE:
    raise DataFileError(f'{_find(root, _FILES["train"][0], field)} holds {n} training images; '
                        f'{_EVAL_SIZE} of them are held out for evaluation, so at least '
                        f'{_EVAL_SIZE + 1} are needed')
  eval_idx, train_idx = split_indices(n, (_EVAL_SIZE / n, 1 - _EVAL_SIZE / n), seed=0)
  splits['eval'] = take(splits['train'], eval_idx)
  splits['train'] = take(splits['train'], train_idx)
  return Dataset(splits=splits, num_classes=10, num_features=splits['test']['inputs'].shape[2])


def load_mnist(data_config):
  if not data_config.path:
    raise FileNotFoundError('data set mnist needs config.data.path: a directory with the four '
                            'MNIST IDX files (yann.lecun.com/exdb/mnist)')
  return load_directory(data_config.path)


def load_fashion_mnist(data_config):
  return load_directory(data_config.path or FASHION_MNIST_DIR)
