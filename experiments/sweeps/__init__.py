"""Sweep files (`get_sweep()` -> a list of override dicts) and the helpers they use."""

import itertools


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
