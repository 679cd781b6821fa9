"""A search space on digits: learning rate, gradient clipping and dropout.

  python -m experiments.sweep --config=experiments/configs/digits.py \
      --sweep=experiments/sweeps/digits_search.py --workdir=/tmp/search \
      --search=optuna --trials=20          # or --search=random --trials=20
"""

from experiments.sweeps import loguniform, uniform


def get_search_space():
  return {'optim.learning_rate': loguniform(3e-4, 3e-1),
          'optim.grad_clip_norm': loguniform(0.1, 10.0),
          'model.dropout_rate': uniform(0.0, 0.5)}
