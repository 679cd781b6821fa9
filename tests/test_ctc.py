"""CTC: the loss against a numpy forward recursion, decoding and edit distance against
hand-computed cases, the unsegmented OCR words, and what CTC cannot emit refused."""

import gzip

import jax
import numpy as np
import pytest

from seqrnn import ctc
from seqrnn.batch import validate_batch
from seqrnn.config import default_config, validate_config
from seqrnn.data import ocr
from seqrnn.tasks import ctc as ctc_task


def _numpy_ctc(log_probs, labels):
  """-log p(labels) by Graves et al.'s forward recursion over the labels with blanks
  between and around them (blank = 0)."""
  ext = [0]
  for label in labels:
    ext += [label, 0]
  alpha = np.full(len(ext), -np.inf)
  alpha[0] = log_probs[0, 0]
  alpha[1] = log_probs[0, ext[1]]
  for t in range(1, len(log_probs)):
    new = np.full(len(ext), -np.inf)
    for s, k in enumerate(ext):
      paths = [alpha[s]] + ([alpha[s - 1]] if s else [])
      if s > 1 and k != 0 and ext[s - 2] != k:
        paths.append(alpha[s - 2])
      new[s] = np.logaddexp.reduce(paths) + log_probs[t, k]
    alpha = new
  return -np.logaddexp(alpha[-1], alpha[-2])


def test_the_loss_equals_the_forward_recursion_and_ignores_padding():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 6, 4)).astype(np.float32)
  lengths = np.array([6, 4, 3])
  labels = np.array([[1, 2, 2], [3, 1, 0], [2, 0, 0]])
  label_lengths = np.array([3, 2, 1])
  loss = ctc.loss(logits, lengths, labels, label_lengths)
  for b in range(3):
    log_probs = np.asarray(jax.nn.log_softmax(logits[b, :lengths[b]].astype(np.float64)))
    np.testing.assert_allclose(loss[b], _numpy_ctc(log_probs, labels[b, :label_lengths[b]]),
                               rtol=1e-4)
  noisy = np.where(np.arange(6)[None, :, None] < lengths[:, None, None], logits, 50.0)
  np.testing.assert_allclose(ctc.loss(noisy, lengths, np.where(labels, labels, 3), label_lengths),
                             loss, rtol=1e-6)


def test_greedy_decoding_merges_runs_drops_blanks_and_stops_at_the_length():
  best_paths = np.array([[1, 1, 0, 1, 2, 2, 0, 3], [0, 0, 2, 0, 0, 0, 0, 0], [3, 3, 3, 1, 1, 1, 2, 2]])
  logits = np.eye(4, dtype=np.float32)[best_paths] * 5
  decoded, lengths = ctc.greedy_decode(logits, np.array([7, 8, 5]))
  assert list(lengths) == [3, 1, 2]
  assert decoded.tolist() == [[1, 1, 2, 0, 0, 0, 0, 0], [2] + [0] * 7, [3, 1] + [0] * 6]


def test_edit_distance_of_hand_computed_pairs():
  pairs = [('kitten', 'sitting', 3), ('flaw', 'lawn', 2), ('abc', 'abc', 0), ('', 'abc', 3),
           ('abc', '', 3), ('ab', 'ba', 2), ('a', 'b', 1)]
  code = lambda word: [ord(ch) - 96 for ch in word] + [0] * (8 - len(word))
  a, b = (np.array([code(p[i]) for p in pairs]) for i in (0, 1))
  lengths = lambda i: np.array([len(p[i]) for p in pairs])
  assert ctc.edit_distance(a, lengths(0), b, lengths(1)).tolist() == [p[2] for p in pairs]


def test_beam_search_finds_the_label_that_greedy_decoding_misses():
  # Two steps, p(blank) = .6, p(a) = .4 at each: the best path is blank blank ('', .36),
  # but 'a' has three alignments, aa, a-, -a: .16 + .24 + .24 = .64.
  logits = np.log(np.array([[0.6, 0.4], [0.6, 0.4]], np.float32))
  decoded, length = ctc.greedy_decode(logits[None], np.array([2]))
  assert int(length[0]) == 0
  assert ctc.beam_decode(logits, 2, beam_width=1) == ()
  assert ctc.beam_decode(logits, 2, beam_width=2) == (1,)


def test_the_task_counts_label_errors_and_whole_sequences():
  logits = np.eye(4, dtype=np.float32)[np.array([[1, 0, 2, 0], [3, 3, 0, 0]])] * 5
  batch = {'lengths': np.array([4, 2]), 'labels': np.array([[1, 2, 0], [3, 1, 2]]),
           'label_lengths': np.array([2, 3])}
  metrics = ctc_task(logits, batch)
  assert [float(x) for x in metrics['label_error_rate']] == [2.0, 5.0]  # 0 + 2 of 2 + 3
  assert [float(x) for x in metrics['sequence_accuracy']] == [1.0, 2.0]


def test_a_target_ctc_cannot_emit_in_its_steps_is_refused_naming_the_example():
  batch = {'inputs': np.zeros((2, 3, 1), np.float32), 'lengths': np.array([3, 2]),
           'labels': np.array([[1, 1], [2, 1]]), 'label_lengths': np.array([2, 2])}
  validate_batch(batch, task='ctc', num_classes=3)
  batch['lengths'] = np.array([2, 2])  # "aa" needs a blank between: 3 steps
  with pytest.raises(ValueError, match=r'example 0 has 2 labels \(1 repeated next to itself, '
                                       r'each needing a blank step between\) in 2 input steps'):
    validate_batch(batch, task='ctc', num_classes=3)
  batch['labels'] = np.array([[0, 1], [2, 1]])
  with pytest.raises(ValueError, match=r'holds 0 at index \(0, 0\); expected labels in \[1, 3\) '
                                       r'\(0 is the blank\)'):
    validate_batch(batch, task='ctc', num_classes=3)
  config = default_config()
  config.task = 'ctc'
  with pytest.raises(ValueError, match="set config.train.best_metric='sequence_accuracy'"):
    validate_config(config)


def test_unsegmented_ocr_words_are_their_letters_pixel_columns_with_the_letters_as_target(
    tmp_path):
  rng = np.random.default_rng(0)
  images = {i: rng.integers(0, 2, 128) for i in (1, 2, 3)}
  line = lambda i, letter, nxt, pos, fold: '\t'.join(
      map(str, [i, letter, nxt, 9 if fold else 8, pos, fold, *images[i]])) + '\n'
  path = tmp_path / 'letter.data.gz'
  with gzip.open(path, 'wt') as f:
    f.writelines([line(1, 'c', 2, 0, 0), line(2, 'a', -1, 1, 0), line(3, 'b', -1, 0, 1)])
  config = default_config().data
  config.path = str(path)
  word = ocr.load_unsegmented(config).splits['test']  # fold 0: "ca"
  assert word['lengths'].tolist() == [16] and word['label_lengths'].tolist() == [2]
  assert word['labels'].tolist() == [[3, 1]]  # c, a; 0 is the blank
  # Step 8 + j is column j of the second letter's 16 rows of 8 pixels.
  for j in range(8):
    np.testing.assert_array_equal(word['inputs'][0, 8 + j], images[2].reshape(16, 8)[:, j])
