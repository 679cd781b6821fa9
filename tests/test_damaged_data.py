"""Damaged or wrong data files are refused with a message naming the file and line."""

import gzip

import numpy as np
import pytest

from seqrnn.config import default_config
from seqrnn.data import conllu, idx, ocr
from seqrnn.data.files import DataFileError
from test_data import CONLLU, _letter_line, _write_idx


def _gzip_cut(path, text_or_bytes):
  """Writes a gzip file of the content, cut short two thirds of the way in."""
  data = text_or_bytes.encode() if isinstance(text_or_bytes, str) else text_or_bytes
  packed = gzip.compress(data)
  path.write_bytes(packed[:2 * len(packed) // 3])
  return path


def _word(letters, first_id=1, word_id=1, fold=0):
  """The OCR lines of one word, ids from `first_id`, positions from 1."""
  ids = range(first_id, first_id + len(letters))
  return [_letter_line(i, c, i + 1 if k < len(letters) - 1 else -1, word_id, k + 1, fold, 0)
          for k, (i, c) in enumerate(zip(ids, letters))]


def test_a_truncated_gzipped_treebank_is_named(tmp_path):
  path = _gzip_cut(tmp_path / 'x.conllu.gz', CONLLU * 200)
  with pytest.raises(DataFileError, match=rf'{path}:\d+: damaged or truncated gzip file'):
    conllu.read_conllu(path)


def test_a_truncated_gzipped_idx_file_is_named(tmp_path):
  buffer = tmp_path / 'raw'
  _write_idx(buffer, np.zeros((50, 28, 28), np.uint8), 0x08)
  path = _gzip_cut(tmp_path / 'x-idx3-ubyte.gz', buffer.read_bytes())
  with pytest.raises(DataFileError, match=rf'{path}: damaged or truncated gzip file'):
    idx.read_idx(path)


def test_a_truncated_gzipped_ocr_file_is_named(tmp_path):
  words = [line for w in range(20) for line in _word('abcdefgh', 8 * w + 1, w + 1)]
  path = _gzip_cut(tmp_path / 'letter.data.gz', ''.join(words))
  with pytest.raises(DataFileError, match=rf'{path}:\d+: damaged or truncated gzip file'):
    ocr.read_letters(path)


def test_a_treebank_with_bytes_that_are_not_utf8_names_the_line(tmp_path):
  path = tmp_path / 'x.conllu'
  path.write_bytes(CONLLU.encode().replace(b'3\tevi\t', b'3\tev\xff\t'))
  with pytest.raises(DataFileError, match=rf"{path}:6: not UTF-8 text \(byte b'\\xff' at column 5\)"):
    conllu.read_conllu(path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
  path = tmp_path / 'x.conllu'
  path.write_bytes(b'\xef\xbb\xbf' + CONLLU.encode())
  plain = tmp_path / 'y.conllu'
  plain.write_text(CONLLU)
  assert conllu.read_conllu(path) == conllu.read_conllu(plain)


def _treebank_dir(tmp_path, dev=CONLLU, test=CONLLU):
  for name, text in (('train', CONLLU), ('dev', dev), ('test', test)):
    (tmp_path / f'xx-ud-{name}.conllu').write_text(text)
  config = default_config().data
  config.path = str(tmp_path)
  return config


@pytest.mark.parametrize('split, file', [('eval', 'dev'), ('test', 'test')])
def test_an_empty_dev_or_test_file_names_the_split_and_the_file(tmp_path, split, file):
  config = _treebank_dir(tmp_path, **{file: '# only a comment\n'})
  with pytest.raises(DataFileError, match=rf'the {split} split \(.*xx-ud-{file}.conllu\) holds no'):
    conllu.load_directory(config)


def test_an_unannotated_tag_column_is_refused_naming_the_line(tmp_path):
  path = tmp_path / 'x.conllu'
  path.write_text(CONLLU.replace('\tNP\t', '\t_\t'))
  with pytest.raises(DataFileError, match=rf'{path}:4: the XPOS column of word \'Ali\' is "_"'):
    conllu.read_conllu(path, 'xpos')
  assert conllu.read_conllu(path, 'upos')  # the other column is fine


def test_a_tag_set_of_one_class_is_refused():
  config = default_config().data
  one = [(['ev', 'var'], ['X', 'X'])]
  with pytest.raises(DataFileError, match=r"train split has a single upos tag \['X'\]"):
    conllu.make_dataset(one, one, one, config)


def test_an_idx_file_with_a_truncated_header_is_named(tmp_path):
  path = tmp_path / 'x-idx3-ubyte'
  path.write_bytes(bytes([0, 0, 0x08, 3]) + (60000).to_bytes(4, 'big') + b'\x00\x00')
  with pytest.raises(DataFileError, match=rf'{path}: truncated header \(10 bytes; .* has 16\)'):
    idx.read_idx(path)


def test_an_idx_training_file_smaller_than_the_eval_hold_out_says_so(tmp_path):
  rng = np.random.default_rng(0)
  for split, n in (('train', 300), ('t10k', 7)):
    _write_idx(tmp_path / f'{split}-images-idx3-ubyte', rng.integers(0, 256, (n, 28, 28), np.uint8), 0x08)
    _write_idx(tmp_path / f'{split}-labels-idx1-ubyte', rng.integers(0, 10, n, np.uint8), 0x08)
  with pytest.raises(DataFileError, match=r'train-images-idx3-ubyte holds 300 training images; '
                                          r'5000 of them are held out'):
    idx.load_directory(tmp_path)


def _ocr_file(tmp_path, lines):
  path = tmp_path / 'letter.data'
  path.write_text(''.join(lines))
  return path


@pytest.mark.parametrize('case, edit, message', [
    ('cut inside a word', lambda w: w[:2], r'letter id 3, the next letter after id 2, is not in the file'),
    ('an uppercase letter', lambda w: [w[0].replace('\ta\t', '\tA\t', 1)] + w[1:],
     r":1: letter 'A' is not one of a-z"),
    ('a non-numeric pixel', lambda w: w[:1] + [w[1][:-2] + 'x\n'] + w[2:],
     r":2: could not convert string to float: 'x'"),
    ('a duplicate id', lambda w: w + [w[1]], r":5: letter id 2 again \(first on line 2\)"),
    ('a self-loop', lambda w: w + [_letter_line(9, 'z', 9, 2, 1, 0, 0)],
     r'belong to no word .* ids \[9\], first on line 5'),
    ('a cycle', lambda w: w + [_letter_line(8, 'y', 9, 2, 1, 0, 0), _letter_line(9, 'z', 8, 2, 2, 0, 0)],
     r'belong to no word .* ids \[8, 9\]'),
    ('a pointer into another word', lambda w: w[:3] + [w[3].replace('\t-1\t', '\t5\t', 1)]
     + _word('xy', first_id=5, word_id=2), r':5: letter id 5 says word 2 position 1, but its chain '
     r'makes it word 1 position 5'),
])
def test_a_damaged_ocr_file_is_refused_naming_what_is_wrong(tmp_path, case, edit, message):
  path = _ocr_file(tmp_path, edit(_word('abcd')))
  with pytest.raises(DataFileError, match=message):
    ocr.read_letters(path)


def test_a_missing_ocr_file_names_the_config_field_and_where_to_get_it(tmp_path):
  config = default_config().data
  config.path = str(tmp_path / 'letter.data.gz')
  with pytest.raises(FileNotFoundError, match=r"config.data.path=.*letter.data.gz' is not a file; "
                                              r'.*Stanford OCR .*ai.stanford.edu'):
    ocr.load(config)


def test_a_refused_treebank_leaves_no_empty_checkpoint_directories(tmp_path):
  from experiments.configs import ud_pos
  from seqrnn import train_and_evaluate
  config = ud_pos.get_config('debug')
  (tmp_path / 'ud').mkdir()
  config.data.path = _treebank_dir(tmp_path / 'ud', dev=CONLLU.replace('\tNP\t', '\t_\t')).path
  config.data.treebank.tag_column = 'xpos'
  with pytest.raises(DataFileError, match=r'the XPOS column of word \'Ali\' is "_"'):
    train_and_evaluate(config, tmp_path / 'run')
  assert not (tmp_path / 'run' / 'checkpoints').exists()
  assert not (tmp_path / 'run' / 'best').exists()


def test_a_tag_only_the_test_split_holds_gets_a_class_its_words_count_as_errors():
  # Tamil-TTB's test split has one X, its training split none: the treebank still loads.
  config = default_config().data
  train = [(['ev', 'var'], ['NOUN', 'VERB'])]
  test = [(['ev', 'hmm'], ['NOUN', 'X'])]
  dataset = conllu.make_dataset(train, train, test, config)
  assert list(dataset.class_names) == ['NOUN', 'VERB', 'X']
  np.testing.assert_array_equal(dataset.splits['test']['labels'][0], [0, 2])
