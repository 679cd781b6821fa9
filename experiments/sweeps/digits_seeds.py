"""Seeds x learning rates on digits: 4 runs of one shape (vectorised: one model axis).

  python -m experiments.sweep --config=experiments/configs/digits.py \
      --sweep=experiments/sweeps/digits_seeds.py --workdir=/tmp/seeds
"""

from experiments.sweeps import zipped


def get_sweep():
  return zipped({'seed': [0, 1, 2, 3], 'optim.learning_rate': [1e-3, 3e-3, 1e-3, 3e-3]})
