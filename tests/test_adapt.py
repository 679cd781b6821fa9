"""config.adapt: a config file's rule chooses fields from the training split's size once
it is loaded (experiments/configs/ud_pos.py:by_size, small treebanks' regularisation;
uea.py:by_data, tiny time-series sets' batches and the front end's pool); what it sets is said and recorded
(a field of how the data are read: they are read again so), and what a researcher set is kept."""

import json
import sys

import jax
import pytest

from experiments.configs import ud_pos
from seqrnn import config as config_lib
from seqrnn import train_and_evaluate
from seqrnn.run import evaluate_checkpoint, train_runs
from helpers import restore_checkpoint
from test_data import CONLLU


def _treebank(tmp_path):
  tmp_path.mkdir()
  for name in ('train', 'dev', 'test'):
    (tmp_path / f'xx-ud-{name}.conllu').write_text(CONLLU * 3)
  return str(tmp_path)


def test_a_small_treebank_gets_more_regularisation_said_and_written_to_config_json(tmp_path,
                                                                                  capsys):
  config = ud_pos.get_config('debug')
  config.data.path, config.model.words.char_encoder = _treebank(tmp_path / 'ud'), 'none'
  config.data.batch_size = config.data.eval_batch_size = 2
  config.train.num_steps = 2
  train_and_evaluate(config, tmp_path / 'run')
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert (saved['model.dropout_rate'], saved['model.words.embed_dropout']) == (0.5, 0.33)
  assert ('model.dropout_rate 0.3 -> 0.5, model.words.embed_dropout 0.2 -> 0.33'
          in capsys.readouterr().out)


def test_the_rule_keeps_what_a_researcher_set_and_leaves_large_treebanks_alone():
  config = ud_pos.get_config()
  config.model.dropout_rate = 0.1  # as --config.model.dropout_rate=0.1 would
  hungarian = {'sequences': 910, 'steps': 20_166, 'classes': 17}  # sentences, words
  small, changed = config_lib.adapted(config, hungarian)
  assert (small.model.dropout_rate, small.model.words.embed_dropout) == (0.1, 0.33)
  assert changed == {'model.words.embed_dropout': (0.2, 0.33),
                     'model.words.char_encoder': ('cnn', 'lstm'),
                     'train.label_smoothing': (0.0, 0.2),
                     'train.best_loss_margin': (0.0, 0.05)}
  large, changed = config_lib.adapted(ud_pos.get_config(),
                                      {'sequences': ud_pos.SMALL, 'steps': 60_000, 'classes': 17})
  assert changed == {} and large.model.dropout_rate == 0.3


def test_a_treebank_of_few_words_gives_each_word_type_an_embedding_and_more_character_units():
  tamil = {'sequences': 400, 'steps': 6_329, 'classes': 15}
  assert ud_pos.FEW_WORDS == 10_000
  tiny, changed = config_lib.adapted(ud_pos.get_config(), tamil)
  assert changed['data.treebank.min_count'] == (2, 1) and tiny.model.dropout_rate == 0.5
  assert changed['model.words.char_hidden_size'] == (64, 128)  # read more from the spelling
  config = ud_pos.get_config()
  config.data.treebank.min_count = 3  # as --config.data.treebank.min_count=3 would
  assert config_lib.adapted(config, tamil)[0].data.treebank.min_count == 3
  words = config_lib.adapted(ud_pos.get_config(), {**tamil, 'steps': ud_pos.FEW_WORDS})[0]
  assert (words.data.treebank.min_count, words.model.words.char_hidden_size) == (2, 64)


def narrow(config, stats):
  """A rule changing a field a resume keeps fixed: the width of a small data set's model."""
  if stats['sequences'] < 100:
    config.model.hidden_size = 8
  return config


def test_a_run_whose_rule_changed_a_fixed_field_resumes(tmp_path):
  config = ud_pos.get_config('debug')
  config.data.path, config.model.words.char_encoder = _treebank(tmp_path / 'ud'), 'none'
  config.data.batch_size = config.data.eval_batch_size = 2
  config.adapt, config.train.num_steps = 'test_adapt:narrow', 2
  train_and_evaluate(config, tmp_path / 'run')
  assert json.loads((tmp_path / 'run' / 'config.json').read_text())['model.hidden_size'] == 8
  config.train.num_steps = 4  # the saved config says 8 units, this one 16 until the rule runs
  train_and_evaluate(config, tmp_path / 'run')
  assert restore_checkpoint(tmp_path / 'run' / 'checkpoints')[0] == 4  # resumed, not refused


def test_a_run_resumes_and_is_evaluated_as_it_began_after_its_rule_changed(tmp_path,
                                                                          monkeypatch):
  config = ud_pos.get_config('debug')
  config.data.path, config.model.words.char_encoder = _treebank(tmp_path / 'ud'), 'none'
  config.data.batch_size = config.data.eval_batch_size = 2
  config.adapt, config.train.num_steps = 'test_adapt:narrow', 2
  train_and_evaluate(config, tmp_path / 'run')  # 8 units
  newer = lambda config, stats: (config.model.update(hidden_size=4), config)[1]
  monkeypatch.setattr(sys.modules[__name__], 'narrow', newer)  # the file, edited since
  config.train.num_steps = 4
  train_and_evaluate(config, tmp_path / 'run')  # refused without `started`: saved 8, now 4
  assert restore_checkpoint(tmp_path / 'run' / 'checkpoints')[0] == 4
  step, metrics = evaluate_checkpoint(tmp_path / 'run', 'latest')
  assert step == 4 and 0 <= metrics['accuracy'] <= 1
  train_and_evaluate(config, tmp_path / 'new')  # a new run takes the rule as it is now
  assert json.loads((tmp_path / 'new' / 'config.json').read_text())['model.hidden_size'] == 4
  with pytest.raises(ValueError, match=r'began with different model.hidden_size'):
    train_runs([config, config], [tmp_path / 'run', tmp_path / 'new'])  # one model for both


def test_a_rule_that_cannot_be_imported_is_refused_before_any_data_is_read():
  config = ud_pos.get_config()
  config.adapt = 'experiments.configs.ud_pos:no_such_rule'
  with pytest.raises(ValueError, match=r"config.adapt='experiments.configs.ud_pos:no_such_rule' "
                     r'cannot be imported'):
    config_lib.validate_config(config)


def _sized(name):
  """uea.py's config of set `name` with its rule of sizes alone (the crop rule, which
  measures the series themselves: test_warping.py)."""
  from experiments.configs import uea
  config = uea.get_config(name)
  config.adapt = 'experiments.configs.uea:by_size'
  return config


def test_a_tiny_time_series_set_takes_batches_of_half_its_training_series():
  config = _sized('Coffee')
  short = {'longest': 64}  # series the front end need not pool
  assert config_lib.adapted(config, {'sequences': 36, **short})[1] == {}  # 16 is under half of 36
  tiny, changed = config_lib.adapted(config, {'sequences': 20, **short})
  assert changed == {'data.batch_size': (16, 10)} and tiny.data.batch_size == 10
  config.data.batch_size = 4  # as --config.data.batch_size=4 would
  assert config_lib.adapted(config, {'sequences': 20, **short})[1] == {}


def test_uea_pools_the_longest_training_series_into_64_steps_unless_told_otherwise():
  stats = {'sequences': 36, 'longest': 251}
  adapted, changed = config_lib.adapted(_sized('ArrowHead'), stats)
  assert changed == {'model.conv.pool': (1, 4)} and adapted.model.conv.pool == 4
  assert config_lib.adapted(_sized('ArrowHead'), {**stats, 'longest': 64})[1] == {}
  given = _sized('ArrowHead')
  given.model.conv.pool = 2  # as --config.model.conv.pool=2 would
  assert config_lib.adapted(given, stats)[1] == {}


SEEN = {}


def record(config, stats):
  """A rule that changes nothing and keeps the stats it was given."""
  SEEN.update(stats)
  return config


def _few(tmp_path):
  """japanese_vowels.py's debug config on 'Few', a set of 10 NaN-padded training series of
  4 to 13 values, 3 of class a."""
  from experiments.configs import japanese_vowels
  (tmp_path / 'Few').mkdir()
  for split, labels in (('TRAIN', 'aaabbbbbbb'), ('TEST', 'ab')):
    lines = [f'{y}\t' + '\t'.join([str(0.5 + i)] * (4 + i)) + '\tNaN' * (8 - i)
             for i, y in enumerate(labels)]
    (tmp_path / 'Few' / f'Few_{split}.tsv').write_text('\n'.join(lines) + '\n')
  config = japanese_vowels.get_config('debug')
  config.data.path, config.data.uea.series = str(tmp_path), 'Few'
  config.data.uea.eval_fraction, config.data.batch_size = 0.0, 2
  config.train.num_steps = 2
  return config


def test_a_rule_sees_the_training_splits_size_length_and_classes(tmp_path):
  config = _few(tmp_path)
  config.adapt = 'test_adapt:record'
  train_and_evaluate(config, tmp_path / 'run')
  train = SEEN.pop('train')  # the training split's arrays
  assert sorted(train['lengths']) == list(range(4, 14)) and train['inputs'].shape == (10, 13, 1)
  assert SEEN == {'sequences': 10, 'steps': sum(range(4, 14)), 'longest': 13, 'classes': 2,
                  'smallest_class': 3}


def deviate(config, stats):
  """A rule choosing how the data are read: each value's deviation from the mean series too."""
  config.data.uea.deviation = True
  return config


def test_the_data_are_read_again_as_a_rule_chose_to_read_them(tmp_path):
  config = _few(tmp_path)
  config.adapt = 'test_adapt:deviate'
  train_and_evaluate(config, tmp_path / 'run')
  assert json.loads((tmp_path / 'run' / 'config.json').read_text())['data.uea.deviation']
  _, state = restore_checkpoint(tmp_path / 'run' / 'checkpoints')
  layer = state['params']['encoder']['stack']['layer_0']['cell']
  assert layer['input_projection']['kernel'].shape[0] == 2  # the value and its deviation
  config.train.num_steps = 4
  train_and_evaluate(config, tmp_path / 'run')  # resumes: the rule chooses as it did
  assert restore_checkpoint(tmp_path / 'run' / 'checkpoints')[0] == 4


def test_a_batch_a_rule_chose_is_refused_if_the_devices_cannot_share_it(tmp_path, monkeypatch):
  from experiments.configs import uea
  config = _few(tmp_path)  # 10 training series: uea.py's rule takes batches of 5
  config.adapt, config.data.eval_batch_size = 'experiments.configs.uea:by_size', 2
  config.data.batch_size = uea.get_config().data.batch_size  # the file's: the rule's to choose
  assert uea.by_size(config.copy_and_resolve_references(), {'sequences': 10, 'longest': 13}
                     ).data.batch_size == 5
  monkeypatch.setattr(jax, 'device_count', lambda: 2)
  with pytest.raises(ValueError, match=r'config.data.batch_size=5 is not divisible by the 2 '
                                       r'devices the batch is sharded over'):
    train_and_evaluate(config, tmp_path / 'run')
