"""The UCR/UEA archives' files as published (.tsv, .ts, .arff), hand-written here: true
lengths under NaN padding, labels as text, missing values refused or imputed, and the
1-NN DTW reference on a local folder."""

import numpy as np
import pytest

from seqrnn.config import default_config, validate_config
from seqrnn.data import archive, timeseries
from seqrnn.data.files import DataFileError

# The 2018 UCR layout: label first, tabs, shorter series padded with NaN at the end; the
# labels written as numbers both ways ('1' and '1.0' are one class; 10 sorts after 2).
TSV_TRAIN = ('1\t0.0\t1.0\t2.0\t3.0\n'
             '2\t5.0\t4.0\tNaN\tNaN\n'
             '1.0\t0.5\t1.5\t2.5\tNaN\n'
             '10\t9.0\t9.0\t9.0\t9.0\n')
TSV_TEST = '2\t4.0\t4.0\t3.0\tNaN\n10\t8.0\t9.0\t9.0\t8.0\n'


def _write(tmp_path, name, files):
  (tmp_path / name).mkdir()
  for file_name, text in files.items():
    (tmp_path / name / file_name).write_text(text)
  config = default_config().data
  config.name, config.uea.series, config.path, config.uea.eval_fraction = (
      'uea', name, str(tmp_path), 0.0)
  return config


def test_tsv_series_keep_their_true_lengths_and_labels_as_text(tmp_path):
  _write(tmp_path, 'Toy', {'Toy_TRAIN.tsv': TSV_TRAIN, 'Toy_TEST.tsv': TSV_TEST})
  series, labels = archive.read(tmp_path / 'Toy' / 'Toy_TRAIN.tsv')
  assert [s.shape for s in series] == [(4, 1), (2, 1), (3, 1), (4, 1)]
  assert labels == ['1', '2', '1', '10']
  np.testing.assert_array_equal(series[2][:, 0], [0.5, 1.5, 2.5])
  data = timeseries.load(_write(tmp_path, 'Toy2', {'Toy2_TRAIN.tsv': TSV_TRAIN,
                                                   'Toy2_TEST.tsv': TSV_TEST}))
  assert data.class_names == ('1', '2', '10') and data.num_features == 1
  assert list(data.splits['train']['labels']) == [0, 1, 0, 2]
  assert list(data.splits['test']['lengths']) == [3, 4]


def test_arff_files_univariate_and_relational_read_as_the_tsv_and_ts_do(tmp_path):
  arff = ('@relation Toy\n@attribute t0 numeric\n@attribute t1 numeric\n@attribute t2 numeric\n'
          '@attribute t3 numeric\n@attribute target {1,2,10}\n@data\n'
          + ''.join(','.join(line.split('\t')[1:]).replace('NaN', '?') + ',' + line.split('\t')[0]
                    + '\n' for line in TSV_TRAIN.splitlines()))
  (tmp_path / 'u.arff').write_text(arff)
  (tmp_path / 'u.tsv').write_text(TSV_TRAIN)
  (arff_series, arff_labels), (tsv_series, tsv_labels) = (archive.read(tmp_path / f)
                                                          for f in ('u.arff', 'u.tsv'))
  assert arff_labels == tsv_labels
  for a, b in zip(arff_series, tsv_series, strict=True):
    np.testing.assert_array_equal(a, b)
  # The UEA multivariate layout: one relational attribute, channels split by \n.
  relational = ("@relation Toy\n@attribute series relational\n  @attribute t0 numeric\n"
                "  @attribute t1 numeric\n  @attribute t2 numeric\n@end series\n"
                "@attribute class {a,b}\n@data\n"
                "'1.0,2.0,3.0\\n4.0,5.0,6.0',a\n'3.0,2.0,?\\n7.0,4.0,?',b\n")
  (tmp_path / 'm.arff').write_text(relational)
  ts = ('@problemName Toy\n@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n'
        '1.0,2.0,3.0:4.0,5.0,6.0:a\n3.0,2.0:7.0,4.0:b\n')
  (tmp_path / 'm.ts').write_text(ts)
  (arff_series, arff_labels), (ts_series, ts_labels) = (archive.read(tmp_path / f)
                                                        for f in ('m.arff', 'm.ts'))
  assert arff_labels == ts_labels == ['a', 'b']
  for a, b in zip(arff_series, ts_series):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(ts_series[1], [[3.0, 7.0], [2.0, 4.0]])


MISSING = '1\t1.0\tNaN\t3.0\t5.0\n2\t2.0\t2.0\t2.0\tNaN\n1\t0.0\t1.0\tNaN\tNaN\n'


def test_missing_values_inside_a_series_are_refused_naming_the_set_or_imputed(tmp_path):
  config = _write(tmp_path, 'Gappy', {'Gappy_TRAIN.tsv': MISSING, 'Gappy_TEST.tsv': MISSING})
  with pytest.raises(DataFileError, match=r"set 'Gappy', .*Gappy_TRAIN.tsv: series 0 misses its "
                                          r"value at step 1, channel 0 .*config.data.uea.impute="):
    timeseries.load(config)
  config.uea.impute = 'linear'  # between 1.0 and 3.0
  linear = timeseries.load(config).splits['train']
  real = np.array([1.0, 2.0, 3.0, 5.0, 2.0, 2.0, 2.0, 0.0, 1.0])  # every real step, imputed
  mean, std = real.mean(), real.std() + 1e-6
  np.testing.assert_allclose(linear['inputs'][0, :4, 0], (np.array([1, 2, 3, 5]) - mean) / std,
                             rtol=1e-5)
  assert list(linear['lengths']) == [4, 3, 2]  # trailing NaN stays padding, not imputed
  config.uea.impute = 'zero'  # the channel's training mean of the real values: 0 standardised
  zero = timeseries.load(config).splits['train']
  known = np.array([1.0, 3.0, 5.0, 2.0, 2.0, 2.0, 0.0, 1.0])
  assert zero['inputs'][0, 1, 0] == 0.0
  np.testing.assert_allclose(zero['inputs'][0, 0, 0], (1.0 - known.mean()) / (known.std() + 1e-6),
                             rtol=1e-5)


def test_deviations_from_the_training_mean_series_are_read_as_more_channels(tmp_path):
  train = {'inputs': np.array([[[1.], [2.], [3.]], [[3.], [6.], [0.]]], np.float32),
           'lengths': np.array([3, 2])}  # the mean series: 2, 4, 3 (step 2: series 0 alone)
  test = {'inputs': np.array([[[0.], [0.], [0.], [7.]]], np.float32), 'lengths': np.array([4])}
  got = timeseries.with_deviation({'train': train, 'test': test}, train)
  np.testing.assert_array_equal(got['train']['inputs'][..., 1], [[-1, -2, 0], [1, 2, 0]])
  np.testing.assert_array_equal(got['train']['inputs'][..., 0], train['inputs'][..., 0])
  np.testing.assert_array_equal(got['test']['inputs'][0, :, 1], [-2, -4, -3, 7])  # 7: no mean
  config = _write(tmp_path, 'Toy', {'Toy_TRAIN.tsv': TSV_TRAIN, 'Toy_TEST.tsv': TSV_TEST})
  config.uea.deviation = True
  data = timeseries.load(config)
  assert data.num_features == 2
  values = np.array([[0, 1, 2, 3], [5, 4, 0, 0], [0.5, 1.5, 2.5, 0], [9, 9, 9, 9]])
  real = np.arange(4)[None, :] < np.array([4, 2, 3, 4])[:, None]
  standard = (values - values[real].mean()) / (values[real].std() + 1e-6)
  mean_series = [standard[real[:, t], t].mean() for t in range(4)]
  np.testing.assert_allclose(data.splits['train']['inputs'][..., 1],
                             np.where(real, standard - mean_series, 0), atol=1e-6)


def test_deviations_asked_of_a_data_set_that_would_ignore_them_are_refused():
  config = default_config()  # digits
  config.data.uea.deviation = True
  with pytest.raises(ValueError, match=r"deviation=True is read by data set 'uea' alone; "
                                       r"data.name='digits' would ignore it"):
    validate_config(config)


def _dtw(a, b):
  """Dynamic time warping distance (squared point distances, no window), plainly."""
  cost = np.full((len(a) + 1, len(b) + 1), np.inf)
  cost[0, 0] = 0.0
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      d = float(np.sum((a[i - 1] - b[j - 1]) ** 2))
      cost[i, j] = d + min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
  return cost[-1, -1]


def test_the_dtw_reference_reads_a_local_folder_and_agrees_with_a_plain_1nn_dtw(tmp_path):
  pytest.importorskip('aeon')
  from experiments.dtw_reference import dtw_accuracy
  rng = np.random.default_rng(0)

  def lines(n):  # class 1: a bump early, class 2: a bump late, shifted at random
    out = []
    for i in range(n):
      label = 1 + i % 2
      x = rng.normal(0, 0.3, 24)
      start = rng.integers(2, 8) + (12 if label == 2 else 0)
      x[start:start + 4] += 3.0
      out.append(f'{label}\t' + '\t'.join(f'{v:.4f}' for v in x))
    return '\n'.join(out) + '\n'
  train, test = lines(10), lines(12)
  _write(tmp_path, 'Bumps', {'Bumps_TRAIN.tsv': train, 'Bumps_TEST.tsv': test})
  accuracy, _ = dtw_accuracy('Bumps', str(tmp_path))
  parse = lambda text: [(int(l.split('\t')[0]), np.array(l.split('\t')[1:], float)[:, None])
                        for l in text.splitlines()]
  reference = [min(parse(train), key=lambda t: _dtw(x, t[1]))[0] == y for y, x in parse(test)]
  assert accuracy == pytest.approx(np.mean(reference))
