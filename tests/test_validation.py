"""Bad configs and bad batches are refused with a message that names the problem."""

import importlib
import pathlib
import re
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from helpers import random_batch

from seqrnn import config, default_config, validate_batch, validate_config


def _check(batch, task='classification', **kw):
  kw = {'num_classes': 3, 'num_features': 5, **kw}
  validate_batch(batch, task=task, **kw)


def test_a_good_batch_passes():
  _check(random_batch(0))
  _check(random_batch(0, task='labelling'), task='labelling')


@pytest.mark.parametrize('mutate, message', [
    (lambda b: b.update(inputs=b['inputs'][0]), r'\(rank 2\); expected rank 3'),
    (lambda b: b.update(inputs=b['inputs'][..., :4]), r'has 4 features .* expects 5'),
    (lambda b: b['inputs'].__setitem__((1, 2, 3), np.nan), r'holds nan at index \(1, 2, 3\)'),
    (lambda b: b['inputs'].__setitem__((0, 0, 0), np.inf), r'holds inf'),
    (lambda b: b['labels'].__setitem__(2, 3), r'labels.*holds 3 at index \(2,\).*\[0, 3\)'),
    (lambda b: b['labels'].__setitem__(0, -1), r'holds -1'),
    (lambda b: b['lengths'].__setitem__(1, 0), r'lengths"\]\[1\] = 0; expected 1 <= length'),
    (lambda b: b['lengths'].__setitem__(3, 8), r'lengths"\]\[3\] = 8; .*time = 7'),
    (lambda b: b.update(lengths=b['lengths'][:2]), r'lengths"\] has shape \(2,\)'),
    (lambda b: b.update(labels=b['labels'].astype(np.float32)), r'labels"\] has .*float32'),
    (lambda b: b.pop('labels'), r"no 'labels' array"),
    (lambda b: b.update({k: v[:0] for k, v in b.items()}), r'is empty'),
])
def test_bad_batch_is_refused_with_a_clear_message(mutate, message):
  batch = random_batch(0)
  mutate(batch)
  with pytest.raises(ValueError, match=message):
    _check(batch)


def test_token_ids_outside_the_vocabulary_are_refused():
  batch = {'inputs': np.array([[1, 2, 12]], np.int32), 'lengths': np.array([3], np.int32),
           'labels': np.array([[0, 1, 2]], np.int32)}
  _check(batch, task='labelling', num_features=None, vocab_size=13)
  batch['inputs'][0, 2] = 13
  with pytest.raises(ValueError, match=r'token id 13 .* \[0, 13\)'):
    _check(batch, task='labelling', num_features=None, vocab_size=13)


def test_labelling_labels_are_checked_at_real_steps_only():
  batch = random_batch(0, task='labelling', lengths=[7, 2, 3, 4])
  batch['labels'][1, 5] = 99  # padding: ignored
  _check(batch, task='labelling')
  batch['labels'][1, 1] = 99
  with pytest.raises(ValueError, match=r'holds 99 at index \(1, 1\)'):
    _check(batch, task='labelling')


@pytest.mark.parametrize('field, value, error, message', [
    ('model.cell', 'rnn', ValueError, r"config.model.cell='rnn': cell 'rnn' is not one of \[.*'gru'"),
    ('model.cell', 'nowhere.Cell', ValueError, r"config.model.cell='nowhere.Cell': cell .* could not "
                                               r"be imported \(No module named 'nowhere'\)"),
    ('model.cell', 'flax.linen.Dense', ValueError, r"not a Flax cell class"),
    ('model.impl', 'fast', ValueError, r"config.model.impl='fast' is not one of"),
    ('model.dropout_rate', 1.0, ValueError, r'dropout_rate=1.0 must be in \[0, 1\)'),
    ('model.dropout_rate', -0.1, ValueError, r'dropout_rate=-0.1'),
    ('model.hidden_size', -4, ValueError, r'hidden_size=-4 must be > 0'),
    ('model.num_layers', 0, ValueError, r'num_layers=0 must be > 0'),
    ('model.hidden_size', 12.5, TypeError, r'hidden_size=12.5 has type float; expected int'),
    ('data.num_buckets', '0', ValueError, r"num_buckets='0' must be 'auto' or a number of padded"),
    ('data.num_buckets', 'many', ValueError, r"num_buckets='many' must be 'auto'"),
    ('task', 'regression', ValueError, r"config.task='regression'"),
    ('optim.name', 'adagrad', ValueError, r'optim.name'),
    ('optim.learning_rate', float('inf'), ValueError, r'learning_rate=inf must be a finite'),
    ('optim.weight_decay', float('nan'), ValueError, r'weight_decay=nan must be a finite'),
    ('optim.weight_decay', 0.1, ValueError, r"weight_decay=0.1 is used by optim.name='adamw' alone"),
    ('seed', -1, ValueError, r'config.seed=-1 must be in \[0, 2\*\*31\)'),
    ('seed', 2**40, ValueError, r'config.seed=1099511627776'),
    ('optim.warmup_steps', 5000, ValueError, r'warmup_steps=5000 is more than .*num_steps=1000'),
    ('train.label_smoothing', 1.0, ValueError, r'label_smoothing=1.0 must be in \[0, 1\)'),
])
def test_bad_config_value_is_refused_naming_the_field(field, value, error, message):
  fields = default_config().to_dict()
  group, _, name = field.rpartition('.')
  (fields[group] if group else fields)[name] = value
  config = ml_collections.ConfigDict(fields)  # as a hand-written config file could
  with pytest.raises(error, match=message):
    validate_config(config)


def test_nan_and_inf_in_padded_steps_are_accepted_but_not_at_real_steps():
  batch = random_batch(0, lengths=[7, 2, 3, 4])
  batch['inputs'][1, 2:] = np.nan
  batch['inputs'][2, 3:] = -np.inf
  _check(batch)
  batch['inputs'][1, 1, 0] = np.nan
  with pytest.raises(ValueError, match=r'holds nan at index \(1, 1, 0\); expected finite'):
    _check(batch)


@pytest.mark.parametrize('name', ['digits', 'fashion_mnist', 'japanese_vowels', 'ocr',
                                  'turkish_pos', 'ud_pos'])
def test_every_experiment_config_refuses_an_unknown_variant(name):
  module = importlib.import_module(f'experiments.configs.{name}')
  validate_config(module.get_config('debug'))
  with pytest.raises(ValueError, match=r"unknown config variant 'degub'; this config knows \["):
    module.get_config('degub')


def test_the_command_line_prints_one_clean_message_for_a_bad_run(tmp_path):
  out = subprocess.run(
      [sys.executable, '-m', 'experiments.main', '--config=experiments/configs/ocr.py:debug',
       f'--workdir={tmp_path}', f'--config.data.path={tmp_path / "nowhere.data.gz"}'],
      cwd=pathlib.Path(__file__).resolve().parents[1], capture_output=True, text=True)
  assert out.returncode == 1
  assert 'Traceback' not in out.stderr
  assert 'error: config.data.path=' in out.stderr and 'is not a file' in out.stderr


def test_print_config_prints_the_validated_config_and_touches_nothing(tmp_path):
  run = lambda *overrides: subprocess.run(
      [sys.executable, '-m', 'experiments.main', '--config=experiments/configs/ocr.py',
       '--print_config', *overrides], cwd=pathlib.Path(__file__).resolve().parents[1],
      capture_output=True, text=True, timeout=120)
  out = run('--config.model.cell=gru', f'--config.data.path={tmp_path / "letter.data.gz"}')
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert "model.cell = 'gru'" in lines and "task = 'labelling'" in lines
  assert len(lines) == len(config.to_flat_dict(default_config())) and not out.stderr
  assert not list(tmp_path.iterdir())
  bad = run('--config.model.dropout_rate=1.0')
  assert bad.returncode == 1 and bad.stderr.strip() == (
      'error: config.model.dropout_rate=1.0 must be in [0, 1)')


def test_unknown_config_field_is_refused():
  config = default_config()
  config.model.unlock()
  config.model.hiden_size = 3
  with pytest.raises(ValueError, match=r"unknown config field\(s\) \['model.hiden_size'\]"):
    validate_config(config)


def test_mistyped_override_flags_are_named_with_a_suggestion():
  errors = config.unknown_overrides(['--workdir=/tmp', '--config.model.cel=lstm',
                                     '--config.optim.learning_rate=1e-3', '--config.zzz=1'])
  assert errors == ['--config.model.cel=lstm: config.model.cel is not a config field; '
                    'did you mean config.model.cell?',
                    '--config.zzz=1: config.zzz is not a config field']


def test_the_uea_config_takes_a_set_name_and_refuses_an_unknown_variant():
  from experiments.configs import uea
  config = uea.get_config('ArrowHead,debug')
  validate_config(config)
  assert config.data.uea.series == 'ArrowHead' and config.train.num_steps == 20
  with pytest.raises(ValueError, match=r"unknown config variant 'degub'"):
    uea.get_config('ArrowHead,degub')


def test_regularisers_the_fused_loop_or_the_cell_cannot_run_are_refused_naming_the_field():
  config = default_config()
  config.model.zoneout_cell = 0.1
  config.model.impl = 'fused'
  with pytest.raises(ValueError, match=r"zoneout run in the scan loop: use impl='scan' or 'auto' "
                                       r"\(config.model.impl\)"):
    validate_config(config)
  config.model.impl, config.model.cell = 'auto', 'gru'
  with pytest.raises(ValueError, match=r"zoneout_cell needs a carry with a cell state \(an "
                                       r"LSTM's: lstm, ln_lstm, flax_lstm\); GRUCell's carry is "
                                       r"h alone"):
    validate_config(config)
  config.model.zoneout_cell, config.model.variational_dropout = 0.0, 0.2
  config.model.cell = 'flax_gru'
  with pytest.raises(ValueError, match=r"config.model.cell='flax_gru': variational recurrent "
                                       r"dropout needs a cell whose step takes a recurrent mask .* "
                                       r"GRUCell has none"):
    validate_config(config)
  config.model.variational_dropout, config.model.words.embed_dropout = 0.0, 1.0
  with pytest.raises(ValueError, match=r'config.model.words.embed_dropout=1.0 must be in \[0, 1\)'):
    validate_config(config)


@pytest.mark.parametrize('value', ['-1', 'sqrt', '2.5'])
def test_remat_chunk_is_auto_or_a_number_of_steps(value):
  config = default_config()
  config.model.remat_chunk = value
  with pytest.raises(ValueError, match=rf"remat_chunk='{re.escape(value)}' must be 'auto' or a "
                                       r"number of steps"):
    validate_config(config)


def test_a_config_json_from_before_auto_buckets_still_loads():
  # Runs saved before num_buckets took 'auto' hold an int there.
  loaded = config.from_flat_dict({'data.num_buckets': 4, 'model.hidden_size': 8})
  assert loaded.data.num_buckets == '4'
  validate_config(loaded)


def test_an_unknown_config_variant_is_one_line_naming_the_known_ones(tmp_path):
  import pathlib
  import subprocess
  import sys
  root = pathlib.Path(__file__).resolve().parents[1]
  done = subprocess.run([sys.executable, '-m', 'experiments.main',
                         '--config=experiments/configs/digits.py:foo', f'--workdir={tmp_path}'],
                        cwd=root, capture_output=True, text=True, timeout=120)
  assert done.returncode != 0 and 'Traceback' not in done.stderr
  assert done.stderr.strip() == ("--config=experiments/configs/digits.py:foo: unknown config "
                                 "variant 'foo'; this config knows ['debug']")
  assert not list(tmp_path.iterdir())


def test_each_fields_role_is_declared_beside_its_default_and_choices_come_from_their_modules():
  from seqrnn import config as config_lib, group, stack, words
  fixed = config_lib.fields_with('fixed')
  assert {'model.words.embed_dim', 'data.treebank.min_count', 'data.uea.series',
          'data.frames.size', 'optim.name'} <= set(fixed)
  assert 'train.num_steps' not in fixed and 'optim.learning_rate' not in fixed
  assert set(group.VECTORISED) == {
      'seed', 'optim.learning_rate', 'optim.grad_clip_norm', 'optim.weight_decay',
      'model.dropout_rate', 'model.variational_dropout', 'model.zoneout_hidden',
      'model.zoneout_cell'}
  config = default_config()
  config.model.merge = 'mean'
  with pytest.raises(ValueError, match=re.escape(
      f"config.model.merge='mean' is not one of {list(stack.MERGES)}")):
    validate_config(config)
  config.model.merge, config.model.words.char_encoder = 'sum', 'gru'
  with pytest.raises(ValueError, match=re.escape(
      f"config.model.words.char_encoder='gru' is not one of {list(words.CHAR_ENCODERS)}")):
    validate_config(config)


def test_field_names_before_the_config_groups_still_work_where_they_are_written_down():
  from seqrnn.config import from_flat_dict, set_field, upgrade_command_line
  assert from_flat_dict({'model.char_encoder': 'cnn', 'data.frame_size': 3}).model.words \
      .char_encoder == 'cnn'
  config = default_config()
  set_field(config, 'data.tag_column', 'xpos')  # a sweep file's override
  assert config.data.treebank.tag_column == 'xpos'
  assert upgrade_command_line(['main', '--config.model.embed_dropout=0', '--config.seed=1']) == [
      'main', '--config.model.words.embed_dropout=0', '--config.seed=1']


@pytest.mark.parametrize('task, head', [('labelling', 'crf'), ('ctc', 'softmax')])
def test_label_smoothing_is_refused_where_there_is_no_softmax_target_a_label(task, head):
  config = default_config()
  config.task, config.model.head, config.train.label_smoothing = task, head, 0.1
  config.train.best_metric = 'loss'
  with pytest.raises(ValueError, match=rf"label_smoothing=0.1 smooths a softmax's per-label "
                                       rf"target: task='{task}' with model.head='{head}'"):
    validate_config(config)
