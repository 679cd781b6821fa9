"""Readers and batching: real files where present, small hand-written files always."""

import gzip
import itertools
import pathlib

import numpy as np
import pytest

from seqrnn.config import default_config
from helpers import SHARED_DATA

from seqrnn.data import batching, conllu, digits, idx, ocr, timeseries
from seqrnn.data.files import DataFileError

CONLLU = """# sent_id = 1
# text = Ali'nin evi var.
1-2\tAli'nin\t_\t_\t_\t_\t_\t_\t_\t_
1\tAli\tAli\tPROPN\tNP\t_\t3\tposs\t_\t_
2\t'nin\t_\tADP\tPOSTP\t_\t1\tcase\t_\t_
3\tevi\tev\tNOUN\tNN\t_\t4\tnsubj\t_\t_
3.1\tgizli\t_\tADJ\tJJ\t_\t_\t_\t_\t_
4\tvar\tvar\tVERB\tVB\t_\t0\troot\t_\t_
5\t.\t.\tPUNCT\t.\t_\t4\tp\t_\t_

# sent_id = 2
1\tEv\tev\tNOUN\tNN\t_\t0\troot\t_\t_
"""


def test_conllu_reader_skips_multiword_ranges_and_empty_nodes(tmp_path):
  path = tmp_path / 'x.conllu'
  path.write_text(CONLLU)
  assert conllu.read_conllu(path) == [
      (['Ali', "'nin", 'evi', 'var', '.'], ['PROPN', 'ADP', 'NOUN', 'VERB', 'PUNCT']),
      (['Ev'], ['NOUN'])]
  assert conllu.read_conllu(path, 'xpos')[0][1] == ['NP', 'POSTP', 'NN', 'VB', '.']


def test_vocabulary_maps_rare_and_unseen_words_to_the_oov_id(tmp_path):
  path = tmp_path / 'x.conllu'
  path.write_text(CONLLU)
  sentences = conllu.read_conllu(path)
  vocab = conllu.build_vocab(sentences, min_count=1, lowercase=True)
  assert vocab['ev'] >= 2 and 'Ev' not in vocab
  twice = sentences + [(['EV', 'x'], ['NOUN', 'X'])]
  assert conllu.build_vocab(twice, min_count=2, lowercase=True) == {'ev': 2}
  assert conllu.build_vocab(twice, min_count=2, lowercase=False) == {}
  tag_ids = {t: i for i, t in enumerate(['ADP', 'NOUN', 'PROPN', 'PUNCT', 'VERB'])}
  split = conllu.encode([(['ev', 'yok'], ['NOUN', 'VERB'])], {'ev': 2}, tag_ids)
  np.testing.assert_array_equal(split['inputs'], [[2, conllu.OOV]])
  np.testing.assert_array_equal(split['labels'], [[1, 4]])


def test_turkish_treebank_loads_from_the_installed_package():
  data = conllu.load_turkish(default_config().data)
  n = sum(len(s['lengths']) for s in data.splits.values())
  assert n == 4851 and data.num_classes == 14
  train = data.splits['train']
  assert train['inputs'].shape == train['labels'].shape
  assert train['inputs'].max() < data.vocab_size


def test_a_data_set_whose_extra_is_not_installed_names_the_extra(tmp_path, monkeypatch):
  import importlib.metadata
  import subprocess
  import sys
  def not_installed(name):
    raise importlib.metadata.PackageNotFoundError(name)
  with monkeypatch.context() as m:
    m.setattr(importlib.metadata, 'distribution', not_installed)
    with pytest.raises(ImportError, match=r"turkish_pos needs the Turkish treebanks: pip install "
                                          r"'seqrnn\[treebanks\]'"):
      conllu.load_turkish(default_config().data)
  with monkeypatch.context() as m:
    m.setitem(sys.modules, 'aeon.datasets', None)
    with pytest.raises(ImportError, match=r"uea needs aeon .*pip install 'seqrnn\[timeseries\]'"):
      timeseries.load(default_config().data)
  # From the command line: the message alone, and no workdir left behind.
  root = pathlib.Path(__file__).resolve().parents[1]
  hide = ('import importlib.metadata as m, runpy, sys\n'
          'def gone(name): raise m.PackageNotFoundError(name)\n'
          'm.distribution = gone\n'
          'sys.argv = ["main"] + sys.argv[1:]\n'
          'runpy.run_module("experiments.main", run_name="__main__")\n')
  out = subprocess.run([sys.executable, '-c', hide, '--config=experiments/configs/turkish_pos.py:debug',
                        f'--workdir={tmp_path / "w"}'], cwd=root, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 1 and out.stderr.startswith(
      "error: data set turkish_pos needs the Turkish treebanks: pip install 'seqrnn[treebanks]'")
  assert not (tmp_path / 'w').exists()


def test_digits_are_eight_rows_of_eight_pixels_in_a_fixed_split():
  data = digits.load(default_config().data)
  sizes = {k: len(v['labels']) for k, v in data.splits.items()}
  assert sizes == {'train': 1258, 'eval': 270, 'test': 269}
  assert data.splits['train']['inputs'].shape[1:] == (8, 8)
  again = digits.load(default_config().data)
  np.testing.assert_array_equal(again.splits['test']['labels'], data.splits['test']['labels'])


def _variable_split(n=100, max_len=30, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, max_len + 1, n).astype(np.int32)
  inputs = np.zeros((n, max_len, 2), np.float32)
  labels = np.zeros((n, max_len), np.int32)
  for i, length in enumerate(lengths):
    inputs[i, :length] = i + 1  # row identity, visible in every real step
    labels[i, :length] = i
  return {'inputs': inputs, 'lengths': lengths, 'labels': labels}


def test_bucketed_batches_keep_every_true_length_and_label():
  split = _variable_split()
  buckets = batching.bucket_lengths(split['lengths'], 3)
  assert len(buckets) <= 3 and buckets[-1] == split['lengths'].max()
  seen = []
  for step in range(batching.steps_per_epoch(split, 8)):
    b = batching.train_batch(split, step, batch_size=8, buckets=buckets, seed=1)
    assert b['inputs'].shape[1] in buckets
    for row in range(8):
      i = int(b['inputs'][row, 0, 0]) - 1
      length = b['lengths'][row]
      assert length == split['lengths'][i]
      np.testing.assert_array_equal(b['labels'][row, :length], i)
      assert np.all(b['inputs'][row, length:] == 0)
      seen.append(i)
  assert len(set(seen)) == len(seen) == 96  # one epoch: no repeats, remainder dropped


def test_bucketing_pads_less_than_padding_to_the_longest():
  split = _variable_split(n=400)
  buckets = batching.bucket_lengths(split['lengths'], 4)
  kw = dict(batch_size=16, seed=0)
  bucketed = [batching.train_batch(split, s, buckets=buckets, **kw) for s in range(25)]
  built = 1 - sum(b['lengths'].sum() for b in bucketed) / sum(b['inputs'].shape[1] * 16
                                                             for b in bucketed)
  assert batching.epoch_padding_fraction(split, buckets=buckets, **kw) == pytest.approx(built)
  assert built < batching.epoch_padding_fraction(split, buckets=(30,), **kw) - 0.1


def test_the_batch_of_a_step_depends_only_on_seed_and_step():
  split = _variable_split()
  kw = dict(batch_size=8, buckets=(30,), seed=3)
  later = batching.train_batch(split, 17, **kw)  # e.g. the first step after a resume
  for step in range(17):
    batching.train_batch(split, step, **kw)
  np.testing.assert_array_equal(batching.train_batch(split, 17, **kw)['inputs'], later['inputs'])
  other_epoch = batching.train_batch(split, 17 + 12, **kw)
  assert not np.array_equal(other_epoch['inputs'], later['inputs'])


def test_processes_take_disjoint_shares_of_the_global_batch():
  split = _variable_split()
  kw = dict(batch_size=8, buckets=(30,), seed=0)
  whole = batching.train_batch(split, 5, **kw)
  parts = [batching.train_batch(split, 5, process_index=p, process_count=2, **kw)
           for p in range(2)]
  np.testing.assert_array_equal(np.concatenate([p['inputs'] for p in parts]), whole['inputs'])


def test_eval_batches_cover_the_split_once_sorted_by_length_with_zero_weight_filler():
  split = _variable_split(n=21)
  batches = list(batching.eval_batches(split, batch_size=8, buckets=(16, 30)))
  assert [int(b['weights'].sum()) for b in batches] == [8, 8, 5]
  rows = [int(b['inputs'][r, 0, 0]) - 1 for b in batches for r in range(8) if b['weights'][r]]
  assert sorted(rows) == list(range(21))
  assert list(split['lengths'][rows]) == sorted(split['lengths'])  # shortest first
  # Sorted, the first batches fit the small bucket: less padding than file order.
  assert [b['inputs'].shape[1] for b in batches] == [16, 30, 30]
  assert batching.eval_padding_fraction(split, batch_size=8, buckets=(16, 30)) == pytest.approx(
      1 - split['lengths'].sum() / (8 * (16 + 30 + 30)))


def test_prefetch_yields_in_order():
  assert list(batching.prefetch(lambda k: k * k, range(6), depth=3)) == [0, 1, 4, 9, 16, 25]


def test_too_small_a_training_split_is_refused():
  with pytest.raises(ValueError, match=r'fewer than config.data.batch_size=200'):
    batching.train_batch(_variable_split(), 0, batch_size=200, buckets=(30,), seed=0)


def _write_idx(path, array, code):
  header = bytes([0, 0, code, array.ndim]) + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  opener = gzip.open if str(path).endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(header + array.tobytes())


def test_idx_reader_reads_what_the_header_says(tmp_path):
  images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  _write_idx(tmp_path / 'x-idx3-ubyte.gz', images, 0x08)
  np.testing.assert_array_equal(idx.read_idx(tmp_path / 'x-idx3-ubyte.gz'), images)
  (tmp_path / 'bad').write_bytes(b'\x01\x02\x03\x04')
  with pytest.raises(ValueError, match='not an IDX file'):
    idx.read_idx(tmp_path / 'bad')


def test_idx_directory_becomes_row_sequences_with_a_held_out_eval_split(tmp_path):
  rng = np.random.default_rng(0)
  for split, n in (('train', 5010), ('t10k', 7)):
    _write_idx(tmp_path / f'{split}-images-idx3-ubyte', rng.integers(0, 256, (n, 28, 28), np.uint8), 0x08)
    _write_idx(tmp_path / f'{split}-labels-idx1-ubyte.gz', rng.integers(0, 10, n, np.uint8), 0x08)
  data = idx.load_directory(tmp_path)
  assert {k: v['inputs'].shape for k, v in data.splits.items()} == {
      'train': (10, 28, 28), 'eval': (5000, 28, 28), 'test': (7, 28, 28)}
  assert data.splits['test']['inputs'].max() <= 1.0


def test_missing_idx_files_say_where_to_get_them(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'config.data.path must name a directory.*'
                                              r'apt-get install dataset-fashion-mnist'):
    idx.load_directory(tmp_path)


@pytest.mark.skipif(not pathlib.Path(idx.FASHION_MNIST_DIR).exists(),
                    reason='apt-get install dataset-fashion-mnist')
def test_fashion_mnist_from_debian_package():
  data = idx.load_fashion_mnist(default_config().data)
  assert [len(data.splits[s]['labels']) for s in ('train', 'eval', 'test')] == [55000, 5000, 10000]


def _letter_line(letter_id, letter, next_id, word_id, position, fold, pixel):
  pixels = '\t'.join(['1' if i == pixel else '0' for i in range(128)])
  return f'{letter_id}\t{letter}\t{next_id}\t{word_id}\t{position}\t{fold}\t{pixels}\n'


def test_ocr_words_follow_the_next_id_chains_and_the_fold_protocol(tmp_path):
  # Word "cab" (fold 0) is written out of order; "ad" is fold 1; "be" is fold 1.
  lines = [_letter_line(5, 'a', 6, 2, 1, 0, 5), _letter_line(4, 'c', 5, 2, 0, 0, 4),
           _letter_line(6, 'b', -1, 2, 2, 0, 6), _letter_line(1, 'a', 2, 1, 0, 1, 1),
           _letter_line(2, 'd', -1, 1, 1, 1, 2), _letter_line(7, 'b', 8, 3, 0, 1, 7),
           _letter_line(8, 'e', -1, 3, 1, 1, 8)]
  path = tmp_path / 'letter.data.gz'
  with gzip.open(path, 'wt') as f:
    f.writelines(lines)
  words, folds = ocr.read_letters(path)
  assert [''.join('abcdefghijklmnopqrstuvwxyz'[i] for i in w[1]) for w in words] == ['ad', 'cab', 'be']
  assert list(folds) == [1, 0, 1]
  assert [list(np.argmax(w[0], 1)) for w in words] == [[1, 2], [4, 5, 6], [7, 8]]
  config = default_config().data
  config.path, config.ocr.fold = str(path), 0
  data = ocr.load(config)
  assert list(data.splits['test']['lengths']) == [3]  # fold 0 tests; folds 1-9 train
  config.ocr.train_on_one_fold = True
  data = ocr.load(config)
  assert len(data.splits['test']['lengths']) == 2  # trained on fold 0, tested on the rest


@pytest.mark.skipif(not (SHARED_DATA / 'ocr' / 'letter.data.gz').exists(), reason='no shared data')
def test_ocr_real_file_has_all_words_and_letters():
  words, folds = ocr.read_letters(SHARED_DATA / 'ocr' / 'letter.data.gz')
  assert len(words) == 6877 and sum(len(l) for _, l in words) == 52152
  assert sorted(set(folds)) == list(range(10))
  assert min(len(l) for _, l in words) == 3 and max(len(l) for _, l in words) == 14


TS = """@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1.0,2.0,3.0:4.0,5.0,6.0:a
3.0,2.0:7.0,4.0:b
"""


def _toy_uea(tmp_path):
  """The data config of set 'Toy' (TS as both its training and test file) in tmp_path."""
  pytest.importorskip('aeon')
  (tmp_path / 'Toy').mkdir()
  for split in ('TRAIN', 'TEST'):
    (tmp_path / 'Toy' / f'Toy_{split}.ts').write_text(TS)
  config = default_config().data
  config.name, config.uea.series, config.path = 'uea', 'Toy', str(tmp_path)
  return config


def test_uea_ts_files_keep_true_lengths_and_standardise_on_train(tmp_path):
  config = _toy_uea(tmp_path)
  data = timeseries.load(config)
  test = data.splits['test']
  assert list(test['lengths']) == [3, 2] and list(test['labels']) == [0, 1]
  real = test['inputs'][0, :3]  # channel 0: 1, 2, 3 with train mean 2.2, std sqrt(0.56)
  np.testing.assert_allclose(real[:, 0], (np.array([1, 2, 3]) - 2.2) / np.sqrt(0.56), rtol=1e-4)
  assert np.all(test['inputs'][1, 2:] == 0)


def test_unknown_words_are_marked_in_eval_and_test(tmp_path):
  config = default_config().data
  train = [(['ev', 'var'], ['NOUN', 'VERB'])]
  test = [(['ev', 'yok'], ['NOUN', 'VERB'])]
  data = conllu.make_dataset(train, test, test, config)
  assert 'unknown' not in data.splits['train']
  np.testing.assert_array_equal(data.splits['test']['unknown'], [[False, True]])


def test_buckets_minimise_padding_as_a_brute_force_search_does():
  rng = np.random.default_rng(0)
  for trial in range(5):
    lengths = np.concatenate([rng.integers(1, 20, 30), rng.integers(20, 70, 5 * trial + 1)])
    longest = lengths.max()
    cands = sorted(set(lengths.tolist()))

    def padded(buckets):
      return sum(min(b for b in buckets if b >= l) for l in lengths)

    best = min(padded(c + (longest,)) for k in range(4)
               for c in itertools.combinations(cands[:-1], k))
    buckets = batching.bucket_lengths(lengths, 4)
    assert len(buckets) <= 4 and buckets[-1] == longest
    assert padded(buckets) == best


def test_auto_buckets_add_a_length_only_when_the_padding_it_saves_pays_for_a_compile():
  # 100 sequences of length 5 and 100 of 50. One bucket (50) pads 100 * 45 = 4,500
  # slots per 200 sequences trained; two buckets (5, 50) pad none and compile twice.
  lengths = np.repeat([5, 50], 100)
  cost = 1000  # slots a compile costs
  def auto(trained):
    return batching.auto_bucket_lengths(lengths, trained_sequences=trained, compile_cost_slots=cost)
  # The second bucket pays when trained / 200 * 4,500 > 1,000, i.e. trained > 44.4.
  assert auto(44) == (50,)
  assert auto(45) == (5, 50)
  assert auto(10**6) == (5, 50)  # no third length exists to add


def test_an_epoch_is_cut_into_batches_after_sorting_so_batches_do_not_overlap_in_length():
  split = _variable_split(n=2000)
  batches = [np.sort(batching.train_batch(split, step, batch_size=16, buckets=(30,), seed=0)['lengths'])
             for step in range(batching.steps_per_epoch(split, 16))]
  batches.sort(key=lambda b: (b[0], b[-1]))
  assert np.all(np.diff(np.concatenate(batches)) >= 0)  # ranges meet only at ties
  assert len({b[0] for b in batches}) > 20  # and the batches do differ in length


def test_a_missing_uea_set_says_where_it_was_looked_for(tmp_path):
  config = default_config().data
  config.uea.series, config.path = 'NoSuchSet', str(tmp_path)
  with pytest.raises(FileNotFoundError, match=r"set 'NoSuchSet': no train file in .* \(looked for "
                                              r".*/NoSuchSet/NoSuchSet_TRAIN.tsv, .*TRAIN.ts"):
    timeseries.load(config)
  config.path = ''  # a set aeon does not ship, and no path: where to give it
  pytest.importorskip('aeon')
  with pytest.raises(FileNotFoundError, match=r"'NoSuchSet' is not one aeon ships .* give "
                                              r"config.data.path"):
    timeseries.load(config)


def test_frames_read_consecutive_steps_as_one_and_zero_fill_the_last():
  from seqrnn.data.dataset import frames
  x = np.arange(1, 2 * 11 * 2 + 1, dtype=np.float32).reshape(2, 11, 2)
  split = {'inputs': x, 'lengths': np.array([11, 3], np.int32), 'labels': np.array([0, 1])}
  out = frames(split, 4, 4)
  assert list(out['lengths']) == [3, 1] and out['inputs'].shape == (2, 3, 8)
  np.testing.assert_array_equal(out['inputs'][0, 1], x[0, 4:8].ravel())
  np.testing.assert_array_equal(out['inputs'][0, 2], np.r_[x[0, 8:11].ravel(), 0, 0])
  np.testing.assert_array_equal(out['inputs'][1, 0], np.r_[x[1, :3].ravel(), 0, 0])
  overlapping = frames(split, 4, 2)  # starts 0, 2, 4, 6, 8: the last covers step 10
  assert list(overlapping['lengths']) == [5, 1]
  np.testing.assert_array_equal(overlapping['inputs'][0, 4], np.r_[x[0, 8:11].ravel(), 0, 0])
  # 1,460 steps in frames of 8 are 183 steps; frame_size=0 picks 23 (64 steps).
  long = {'inputs': np.zeros((1, 1460, 1), np.float32), 'lengths': np.array([1460], np.int32)}
  assert list(frames(long, 8, 8)['lengths']) == [183]
  from seqrnn.data import auto_frame_size
  assert [auto_frame_size([n]) for n in (24, 64, 65, 251, 1460)] == [1, 1, 2, 4, 23]


def test_uea_without_an_eval_fraction_trains_on_the_whole_training_split(tmp_path):
  config = _toy_uea(tmp_path)
  config.uea.eval_fraction = 0.0
  data = timeseries.load(config)
  assert data.splits['eval'] is data.splits['train'] and len(data.splits['train']['labels']) == 2
  config.frames.size = 2
  from seqrnn.data import load
  framed = load(config)
  assert framed.splits['eval'] is framed.splits['train'] and framed.num_features == 4
  assert list(framed.splits['test']['lengths']) == [2, 1]


def test_frames_are_refused_for_tokens_and_per_step_labels():
  config = default_config().data
  config.name, config.frames.size = 'turkish_pos', 4
  from seqrnn.data import load
  with pytest.raises(ValueError, match='frames.size=4: frames are for float series .* token inputs'):
    load(config)


def test_frames_never_skip_steps_or_end_on_padding_alone():
  from seqrnn.data.dataset import frames
  from seqrnn.config import validate_config
  # 20 values, frames of 2 every 7 steps would read (1,2) (8,9) (15,16) and a frame (0,0).
  split = {'inputs': np.arange(1, 21, dtype=np.float32).reshape(1, 20, 1),
           'lengths': np.array([20], np.int32), 'labels': np.array([0])}
  with pytest.raises(ValueError, match=r'frames of 2 steps every 7 steps: the stride must be '
                                       r'in \[1, 2\]'):
    frames(split, 2, 7)
  config = default_config()
  config.data.frames.size, config.data.frames.stride = 2, 7
  with pytest.raises(ValueError, match=r'frames.stride=7 is more than config.data.frames.size=2'):
    validate_config(config)


@pytest.mark.parametrize('train, test, message', [
    (TS, TS.replace(':b\n', ':c\n').replace('true a b', 'true a b c'),
     r"Toy_TEST.ts: class\(es\) \['c'\] are not in the training file, which has \['a', 'b'\]"),
    (TS.replace('@data\n', ''), TS, r'Toy_TRAIN.ts: no @data line'),
    # Channel 0 has a value at step 1: channel 1's NaN there is missing, not padding.
    (TS.replace('3.0,2.0:7.0,4.0', '3.0,2.0:7.0,NaN'), TS,
     r"set 'Toy', .*Toy_TRAIN.ts: series 1 misses its value at step 1, channel 1 \(counting "
     r"from 0; 1 missing values in 1 series\): impute them with config.data.uea.impute='linear'"),
], ids=['class only in test', 'no @data', 'NaN'])
def test_a_bad_uea_file_is_named_with_what_is_wrong_in_it(tmp_path, train, test, message):
  config = _toy_uea(tmp_path)
  (tmp_path / 'Toy' / 'Toy_TRAIN.ts').write_text(train)
  (tmp_path / 'Toy' / 'Toy_TEST.ts').write_text(test)
  with pytest.raises(DataFileError, match=message):
    timeseries.load(config)
