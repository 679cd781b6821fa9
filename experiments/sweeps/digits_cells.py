"""Cell x learning rate on digits: 2 x 3 runs, a few seconds each.

  python -m experiments.sweep --config=experiments/configs/digits.py \
      --sweep=experiments/sweeps/digits_cells.py --workdir=/tmp/sweep
"""

from experiments.sweeps import product


def get_sweep():
  return product({'model.cell': ['gru', 'lstm'], 'optim.learning_rate': [1e-3, 3e-3, 1e-2]})
