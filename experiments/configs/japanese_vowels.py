"""UEA JapaneseVowels: 9 speakers from 12 cepstral channels, lengths 7-29.

  pip install -e '.[timeseries]'
  python -m experiments.main --config=experiments/configs/japanese_vowels.py --workdir=/tmp/jv

`--config.data.uea.series=NAME` picks another UEA/UCR set that aeon ships or finds in data.path.
"""

from seqrnn.config import apply_variant, debug_variant, default_config


def get_config(arg=None):
  c = default_config()
  c.task = 'classification'
  c.data.name = 'uea'
  c.data.uea.series = 'JapaneseVowels'
  c.data.batch_size = 32
  c.model.cell = 'gru'
  c.model.hidden_size = 64
  c.model.num_layers = 1
  c.model.dropout_rate = 0.2
  c.optim.learning_rate = 3e-3
  c.train.num_steps = 600
  c.train.eval_every_steps = 100
  c.train.checkpoint_every_steps = 300
  return apply_variant(c, arg, {'debug': debug_variant})
