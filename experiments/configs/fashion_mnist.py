"""Fashion-MNIST read row by row: 28 steps of 28 pixels, 10 classes.

  apt-get install -y dataset-fashion-mnist   # the IDX files, in /usr/share/datasets/fashion-mnist
  python -m experiments.main --config=experiments/configs/fashion_mnist.py --workdir=/tmp/fmnist

`--config=...fashion_mnist.py:mnist --config.data.path=DIR` trains on MNIST's IDX files in DIR.
`:debug` is a seconds-long smoke run.
"""

from seqrnn.config import apply_variant, debug_variant, default_config


def get_config(arg=None):
  c = default_config()
  c.task = 'classification'
  c.data.name = 'fashion_mnist'
  c.data.batch_size = 128
  c.data.eval_batch_size = 1000
  c.model.cell = 'gru'
  c.model.hidden_size = 128
  c.model.num_layers = 1
  c.optim.learning_rate = 2e-3
  c.train.num_steps = 4000      # about 9 epochs of 55,000 images
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 1000
  c.train.checkpoint_every_steps = 1000
  return apply_variant(c, arg, {'debug': debug_variant, 'mnist': _mnist})


def _mnist(c):
  c.data.name = 'mnist'
