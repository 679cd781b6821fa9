"""Sweep files (`get_sweep()` -> a list of override dicts) and the helpers they use."""

import itertools
from typing import NamedTuple

import numpy as np


def product(values):
  """Every combination: product({'a': [1, 2], 'b': [3, 4]}) is 4 override dicts."""
  keys = list(values)
  return [dict(zip(keys, combo)) for combo in itertools.product(*values.values())]


def zipped(values):
  """Values side by side: zipped({'a': [1, 2], 'b': [3, 4]}) is [{a: 1, b: 3}, {a: 2, b: 4}]."""
  lengths = {k: len(v) for k, v in values.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f'zipped needs lists of one length; got {lengths}')
  return [dict(zip(values, combo)) for combo in zip(*values.values())]


class uniform(NamedTuple):
  """A value drawn uniformly from [low, high)."""
  low: float
  high: float


class loguniform(NamedTuple):
  """A value whose logarithm is drawn uniformly: as many draws in [1e-4, 1e-3) as in
  [1e-3, 1e-2) (learning rates, weight decays)."""
  low: float
  high: float


def random(n, seed, space):
  """`n` override dicts drawn from `space` ({field: uniform(a, b) | loguniform(a, b) | a list
  to choose from | a value}), reproducibly from `seed` (Bergstra & Bengio 2012: for the same
  number of runs, random points cover each field's range better than a grid). Drawn floats
  keep 4 significant digits, so that run names stay readable."""
  rng = np.random.default_rng(seed)

  def draw(spec):
    if isinstance(spec, loguniform):
      if not 0 < spec.low < spec.high:
        raise ValueError(f'{spec}: needs 0 < low < high')
      return float(f'{np.exp(rng.uniform(np.log(spec.low), np.log(spec.high))):.4g}')
    if isinstance(spec, uniform):
      return float(f'{rng.uniform(spec.low, spec.high):.4g}')
    if isinstance(spec, list):
      return spec[rng.integers(len(spec))]
    return spec

  return [{field: draw(spec) for field, spec in space.items()} for _ in range(n)]
