"""Part-of-speech tagging from CoNLL-U (Universal Dependencies) files.

Words become token ids through a vocabulary built on the training split:
id 0 pads, id 1 is the out-of-vocabulary word. Each word also becomes its
character ids `chars` [sentences, time, max_chars] (the original spelling, case
kept whatever `data.treebank.lowercase` says; id 0 pads, id 1 is a character unseen in
training), truncated to `data.treebank.max_word_chars`: a word seen nowhere in training
still has a spelling for a character-aware model to read.
"""

import collections
import importlib.metadata
import pathlib

import numpy as np
from absl import logging

from seqrnn.data.dataset import Dataset, pad_sequences, split_indices
from seqrnn.data.files import DataFileError, read_lines

PAD, OOV = 0, 1
_COLUMNS = {'upos': 3, 'xpos': 4}
TAG_COLUMNS = tuple(_COLUMNS)


def read_conllu(path, column='upos'):
  """Sentences of `path` as a list of (words, tags).

  Multiword-token ranges (ids like `3-4`) and empty nodes (ids like `5.1`) are
  skipped: the tagged units are the syntactic words. A word whose tag is `_`
  (the column is not annotated) is refused, naming the line: a tagger trained
  on it would learn the placeholder and report it as accuracy.
  """
  sentences, words, tags = [], [], []
  for line_no, line in read_lines(path):
    if not line:
      if words:
        sentences.append((words, tags))
      words, tags = [], []
      continue
    if line.startswith('#'):
      continue
    fields = line.split('\t')
    if len(fields) != 10:
      raise DataFileError(f'{path}:{line_no}: expected 10 tab-separated fields, got {len(fields)}')
    if '-' in fields[0] or '.' in fields[0]:
      continue
    tag = fields[_COLUMNS[column]]
    if tag == '_':
      raise DataFileError(f'{path}:{line_no}: the {column.upper()} column of word '
                          f'{fields[1]!r} is "_" (not annotated); choose another '
                          f'config.data.treebank.tag_column or another treebank')
    words.append(fields[1])
    tags.append(tag)
  if words:
    sentences.append((words, tags))
  return sentences


def build_vocab(sentences, min_count=1, lowercase=False):
  """{word: id} of the words seen at least `min_count` times, ids from 2."""
  counts = collections.Counter(_norm(w, lowercase) for words, _ in sentences for w in words)
  kept = sorted(w for w, c in counts.items() if c >= min_count)
  return {w: i + 2 for i, w in enumerate(kept)}


def _norm(word, lowercase):
  return word.lower() if lowercase else word


def build_char_vocab(sentences):
  """{character: id} of the characters of the training words, ids from 2."""
  return {c: i + 2 for i, c in enumerate(sorted({c for ws, _ in sentences for w in ws for c in w}))}


def encode_chars(sentences, char_vocab, width):
  """Character ids [sentences, longest sentence, width], the first `width`
  characters of each word, 0 at padding (words past a sentence's end,
  characters past a word's end)."""
  out = np.zeros((len(sentences), max(len(ws) for ws, _ in sentences), width), np.int32)
  for i, (words, _) in enumerate(sentences):
    for j, w in enumerate(words):
      out[i, j, :min(len(w), width)] = [char_vocab.get(c, OOV) for c in w[:width]]
  return out


def encode(sentences, vocab, tag_ids, lowercase=False, seen=None, char_vocab=None,
           char_width=0):
  """Sentences -> a padded split dict (token ids, lengths, tag ids; when the set
  of training words `seen` is given, `unknown`: True at words never seen in
  training; when `char_vocab` is given, `chars`, see `encode_chars`)."""
  tokens = [np.array([vocab.get(_norm(w, lowercase), OOV) for w in words], np.int32)
            for words, _ in sentences]
  unknown = [tags for _, tags in sentences if set(tags) - set(tag_ids)]
  if unknown:  # make_dataset gives every split's tags an id: a caller's mistake
    raise ValueError(f'tag(s) {sorted(set(unknown[0]) - set(tag_ids))} are not in the '
                     f'tag set {sorted(tag_ids)}')
  labels = [np.array([tag_ids[t] for t in tags], np.int32) for _, tags in sentences]
  inputs, lengths = pad_sequences(tokens, np.int32, PAD)
  labels, _ = pad_sequences(labels, np.int32, 0)
  split = {'inputs': inputs, 'lengths': lengths, 'labels': labels}
  if seen is not None:
    split['unknown'], _ = pad_sequences(
        [np.array([_norm(w, lowercase) not in seen for w in words]) for words, _ in sentences], bool)
  if char_vocab is not None:
    split['chars'] = encode_chars(sentences, char_vocab, char_width)
  return split


def make_dataset(train, eval_, test, data_config, sources=None):
  """A tagging Dataset from three lists of sentences; `sources` names where each
  split came from, for errors."""
  where = {name: f' ({path})' for name, path in (sources or {}).items()}
  named = (('train', train), ('eval', eval_), ('test', test))
  for name, sentences in named:
    if not sentences:
      raise DataFileError(f'the {name} split{where.get(name, "")} holds no sentence')
  vocab = build_vocab(train, data_config.treebank.min_count, data_config.treebank.lowercase)
  seen = set(build_vocab(train, 1, data_config.treebank.lowercase))
  trained = {t for _, ts in train for t in ts}
  if len(trained) < 2:
    raise DataFileError(f'the train split{where.get("train", "")} has a single '
                        f'{data_config.treebank.tag_column} tag {sorted(trained)}: nothing to '
                        f'learn')
  # A tag only eval or test holds (Tamil-TTB's test has an X, its training split none) gets
  # a class the model never sees: its words count as errors, as in UD's own evaluation.
  for name, sentences in named[1:]:
    untrained = collections.Counter(t for _, ts in sentences for t in ts if t not in trained)
    if untrained:
      logging.warning('the %s split%s holds %s tag(s) the training split never has: %s; they '
                      'count as errors', name, where.get(name, ''),
                      data_config.treebank.tag_column, dict(sorted(untrained.items())))
  tags = sorted({t for _, s in named for _, ts in s for t in ts})
  tag_ids = {t: i for i, t in enumerate(tags)}
  char_vocab = build_char_vocab(train)
  # One width for all splits (one compiled shape): the longest word, up to the cap.
  width = min(max(len(w) for _, s in named for ws, _ in s for w in ws),
              data_config.treebank.max_word_chars)
  splits = {name: encode(s, vocab, tag_ids, data_config.treebank.lowercase, seen, char_vocab, width)
            for name, s in named}
  del splits['train']['unknown']  # every training word is seen
  return Dataset(splits=splits, num_classes=len(tags), vocab_size=len(vocab) + 2,
                 class_names=tuple(tags), num_chars=len(char_vocab) + 2)


def load_directory(data_config):
  """A UD treebank directory with `*-ud-train.conllu`, `*-ud-dev.conllu`,
  `*-ud-test.conllu` (optionally gzipped), at `config.data.path`."""
  if not data_config.path:
    raise FileNotFoundError('data set conllu needs config.data.path: a directory holding one '
                            '*-ud-train.conllu, *-ud-dev.conllu and *-ud-test.conllu (a UD '
                            'treebank from universaldependencies.org)')
  root = pathlib.Path(data_config.path)
  files = {}
  for split, key in (('train', 'train'), ('eval', 'dev'), ('test', 'test')):
    found = sorted(root.glob(f'*{key}.conllu')) + sorted(root.glob(f'*{key}.conllu.gz'))
    if len(found) != 1:
      raise FileNotFoundError(
          f'config.data.path={str(root)!r}: expected one *{key}.conllu[.gz] file, found '
          f'{[f.name for f in found]}; download a treebank from universaldependencies.org')
    files[split] = found[0]
  sents = {s: read_conllu(p, data_config.treebank.tag_column) for s, p in files.items()}
  return make_dataset(sents['train'], sents['eval'], sents['test'], data_config, files)


def turkish_files():
  """The two CoNLL-U files shipped by the PyPI package `turkish-treebanks`."""
  try:
    dist = importlib.metadata.distribution('turkish-treebanks')
  except importlib.metadata.PackageNotFoundError as e:
    raise ImportError("data set turkish_pos needs the Turkish treebanks: pip install "
                      "'seqrnn[treebanks]'") from e
  return sorted(pathlib.Path(dist.locate_file(f)) for f in dist.files
                if str(f).endswith('.conllu'))


def load_turkish(data_config):
  """Turkish web + wiki treebanks (4,851 sentences), fixed 80/10/10 split."""
  column = data_config.treebank.tag_column
  sentences = [s for path in turkish_files() for s in read_conllu(path, column)]
  parts = split_indices(len(sentences), (0.8, 0.1, 0.1), seed=0)
  train, eval_, test = ([sentences[i] for i in idx] for idx in parts)
  return make_dataset(train, eval_, test, data_config)
