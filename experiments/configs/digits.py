"""Sequence classification of scikit-learn's handwritten digits (8 rows of 8 pixels).

  python -m experiments.main --config=experiments/configs/digits.py --workdir=/tmp/digits

About 10-17 s on 2 CPU cores (98.1% test accuracy). `--config=...digits.py:debug` is a seconds-long smoke run.
"""

from seqrnn.config import apply_variant, debug_variant, default_config


def get_config(arg=None):
  c = default_config()
  c.task = 'classification'
  c.data.name = 'digits'
  c.data.batch_size = 64
  c.model.cell = 'gru'
  c.model.hidden_size = 128
  c.model.num_layers = 1
  c.model.dropout_rate = 0.1
  c.optim.learning_rate = 3e-3
  c.train.num_steps = 1000
  return apply_variant(c, arg, {'debug': debug_variant})
