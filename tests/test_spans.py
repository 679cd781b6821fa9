"""BIO spans: span F1 against a plain reading of each tag sequence (conlleval's rules)."""

import numpy as np
import pytest
from helpers import random_batch

from seqrnn import crf, spans
from seqrnn.tasks import get_task

TAGS = ('O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC')
TYPES, BEGINS = spans.bio_tags(TAGS)


def _reference_spans(tags):
  """{(type, first, last)} of a list of tag names, read left to right: B-X begins a span,
  I-X continues one of X or else begins one, O ends it."""
  found, current = set(), None
  for t, tag in enumerate(tags + ['O']):
    kind = None if tag == 'O' else tag[2:]
    if current and (kind != current[0] or tag.startswith('B-')):
      found.add((current[0], current[1], t - 1))
      current = None
    if kind and current is None:
      current = (kind, t)
  return found


def _f1(predicted, gold, lengths):
  counts = spans.span_counts(predicted, gold, np.arange(predicted.shape[1]) < lengths[:, None],
                             crf.boundaries(lengths, predicted.shape[1])[1],
                             np.ones(len(lengths)), TYPES, BEGINS)
  return [float(c) for c in counts]


@pytest.mark.parametrize('gold, predicted, counts', [
    ('B-PER I-PER O B-LOC', 'B-PER I-PER O B-LOC', [2, 2, 2]),
    ('B-PER I-PER O B-LOC', 'B-PER I-PER O B-PER', [1, 2, 2]),   # the wrong type
    ('B-PER I-PER O B-LOC', 'I-PER I-PER O B-LOC', [2, 2, 2]),   # I- begins a span too
    ('B-PER I-PER O B-LOC', 'B-PER B-PER O B-LOC', [1, 3, 2]),   # split in two
    ('B-PER I-PER I-PER O', 'B-PER I-PER O O', [0, 1, 1]),       # cut short
    ('B-PER O O O', 'B-PER I-PER O O', [0, 1, 1]),               # run on
    ('B-LOC I-PER O O', 'B-LOC B-PER O O', [2, 2, 2]),           # I-PER after LOC begins PER
])
def test_span_counts_of_hand_written_cases(gold, predicted, counts):
  ids = lambda s: np.array([[TAGS.index(t) for t in s.split()]])
  assert _f1(ids(predicted), ids(gold), np.array([4])) == counts


def test_span_counts_equal_a_plain_reading_of_random_tag_sequences_with_padding():
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 9, 40)
  gold, predicted = rng.integers(0, 5, (2, 40, 8))
  right = n_predicted = n_gold = 0
  for b, n in enumerate(lengths):
    g = _reference_spans([TAGS[i] for i in gold[b, :n]])
    p = _reference_spans([TAGS[i] for i in predicted[b, :n]])
    right, n_predicted, n_gold = right + len(g & p), n_predicted + len(p), n_gold + len(g)
  assert _f1(predicted, gold, lengths) == [right, n_predicted, n_gold]


def test_the_labelling_task_adds_span_f1_and_refuses_tags_that_are_not_bio():
  batch = random_batch(0, batch=3, time=4, num_classes=5, task='labelling', lengths=[4, 2, 3])
  logits = np.eye(5, dtype=np.float32)[batch['labels']]  # every tag right
  metrics = get_task('labelling', spans=(TYPES, BEGINS))(logits, batch)
  assert float(metrics['span_f1'][0]) == float(metrics['span_f1'][1]) > 0
  with pytest.raises(ValueError, match=r"tag 'NOUN' is not 'O', 'B-TYPE' or 'I-TYPE'"):
    spans.bio_tags(('O', 'B-PER', 'NOUN'))
