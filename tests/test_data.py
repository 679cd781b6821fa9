"""Readers and batching: real files where present, small hand-written files always."""

import numpy as np
import pytest

from seqrnn.config import default_config
from seqrnn.data import batching, conllu, digits

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
  bucketed = [batching.train_batch(split, s, batch_size=16, buckets=buckets, seed=0)
              for s in range(25)]
  single = [batching.pad_to(b, 30) for b in bucketed]
  assert batching.padding_fraction(bucketed) < batching.padding_fraction(single) - 0.1


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


def test_eval_batches_cover_the_split_once_with_zero_weight_filler():
  split = _variable_split(n=21)
  batches = list(batching.eval_batches(split, batch_size=8, buckets=(10, 30)))
  assert [int(b['weights'].sum()) for b in batches] == [8, 8, 5]
  rows = [int(b['inputs'][r, 0, 0]) - 1 for b in batches for r in range(8) if b['weights'][r]]
  assert rows == list(range(21))


def test_prefetch_yields_in_order():
  assert list(batching.prefetch(lambda k: k * k, range(6), depth=3)) == [0, 1, 4, 9, 16, 25]


def test_too_small_a_training_split_is_refused():
  with pytest.raises(ValueError, match=r'fewer than config.data.batch_size=200'):
    batching.train_batch(_variable_split(), 0, batch_size=200, buckets=(30,), seed=0)
