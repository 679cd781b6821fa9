"""The length of a run in epochs: train.num_epochs and optim.warmup_epochs become steps
once the data is loaded (packing and padded lengths counted), recorded in config.json;
train.refit trains again on all the training series for the selected step's epochs."""

import json
import math

import numpy as np
import pytest

from helpers import digits_config
from seqrnn import train_and_evaluate
from seqrnn.data import batching
from seqrnn.prepare import prepare_data


def _saved(workdir):
  return json.loads((workdir / 'config.json').read_text())


def test_epochs_of_digits_are_its_training_sequences_over_the_batch_size(tmp_path):
  config = digits_config(1000)  # num_steps given, and replaced by the epochs
  config.train.num_epochs, config.optim.warmup_epochs = 2.5, 1.0
  train_and_evaluate(config, tmp_path)
  per_epoch = 1258 // 64  # digits' 1,258 training images, whole batches of 64
  saved = _saved(tmp_path)
  assert saved['train.num_steps'] == math.ceil(2.5 * per_epoch) == 48
  assert saved['optim.warmup_steps'] == per_epoch and saved['train.num_epochs'] == 2.5
  steps = [json.loads(l)['step'] for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert max(steps) == 48


def test_epochs_of_packed_rows_count_rows_not_sequences(tmp_path):
  from experiments.configs import turkish_pos
  config = turkish_pos.get_config('debug')
  config.data.pack, config.train.num_epochs = True, 1.0
  dataset, buckets = prepare_data(config)
  train = dataset.splits['train']
  rows = batching.steps_per_epoch(train, config.data.batch_size, buckets, pack=True)
  assert rows < len(train['lengths']) // config.data.batch_size  # several sentences a row
  train_and_evaluate(config, tmp_path)
  assert _saved(tmp_path)['train.num_steps'] == rows


def test_a_warm_up_longer_than_the_run_is_refused_in_epochs_too():
  from seqrnn.config import validate_config
  config = digits_config(100)
  config.train.num_epochs, config.optim.warmup_epochs = 1.0, 2.0
  with pytest.raises(ValueError, match=r'warmup_epochs=2.0 is more than .*num_epochs=1.0'):
    validate_config(config)


def _bumps(tmp_path, n):
  """A UCR-layout set of `n` training series: a bump early (class 1) or late (class 2)."""
  rng = np.random.default_rng(0)
  (tmp_path / 'Bumps').mkdir()
  for split, count in (('TRAIN', n), ('TEST', 20)):
    lines = []
    for i in range(count):
      x = rng.normal(0, 0.3, 16)
      x[2 + 8 * (i % 2):6 + 8 * (i % 2)] += 2.0
      lines.append(f'{1 + i % 2}\t' + '\t'.join(f'{v:.3f}' for v in x))
    (tmp_path / 'Bumps' / f'Bumps_{split}.tsv').write_text('\n'.join(lines) + '\n')


def test_refit_trains_on_every_training_series_for_the_epochs_of_the_selected_step(
    tmp_path, capsys):
  from experiments.configs import japanese_vowels
  _bumps(tmp_path, 40)
  config = japanese_vowels.get_config('debug')
  config.data.path, config.data.uea.series = str(tmp_path), 'Bumps'
  config.data.batch_size, config.data.uea.eval_fraction = 10, 0.25  # 30 series train, 10 eval
  config.train.num_steps, config.train.eval_every_steps = 30, 6
  config.train.best_metric, config.train.refit = 'loss', True
  results = train_and_evaluate(config, tmp_path / 'run')
  best_step = results['best_step']
  assert results['steps_per_epoch'] == 30 // 10
  refit = _saved(tmp_path / 'run' / 'refit')
  assert refit['data.uea.eval_fraction'] == 0.0 and not refit['train.refit']
  assert refit['train.num_steps'] == math.ceil(best_step / 3 * (40 // 10))
  assert results['refit']['epochs'] == pytest.approx(best_step / 3)
  assert 'data uea: 40 training sequences' in capsys.readouterr().out
  (test,) = [json.loads(l) for l in (tmp_path / 'run' / 'refit' / 'metrics.jsonl').read_text()
             .splitlines() if json.loads(l)['split'] == 'test']
  assert results['refit']['test'] == {k: v for k, v in test.items() if k not in ('step', 'split')}
  config.data.uea.eval_fraction = 0.0  # nothing held out: nothing to choose the epochs on
  with pytest.raises(ValueError, match='train.refit=True .* needs .*eval_fraction > 0'):
    train_and_evaluate(config, tmp_path / 'never')
