"""PyTorch `nn.GRU` / `nn.LSTM` weights as seqrnn parameters (torch is not needed).

torch keeps, per layer k and direction (suffix `_reverse` for the backward one),
  weight_ih_l{k} [G*H, in], weight_hh_l{k} [G*H, H], bias_ih_l{k}, bias_hh_l{k} [G*H]
with the gates in the order of seqrnn's equations (GRU r, z, n; LSTM i, f, g, o),
so seqrnn's kernels are their transposes.
"""

import re

import jax.numpy as jnp
import numpy as np

from seqrnn.stack import RNNStack

_KEY = re.compile(r'^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$')


def _numpy(value):
  value = value.detach() if hasattr(value, 'detach') else value  # a torch tensor
  value = value.cpu() if hasattr(value, 'cpu') else value
  return np.asarray(value, np.float32)


def from_torch(state_dict, *, prefix='', dtype=jnp.float32):
  """(RNNStack, {'params': ...}) whose outputs equal the torch RNN's.

  `state_dict`: the `state_dict()` of a `torch.nn.GRU` or `torch.nn.LSTM` (any
  number of layers, uni- or bidirectional), as tensors, numpy arrays or
  anything array-like; `prefix` selects it inside a larger model's state dict
  (e.g. 'encoder.rnn.'). The cell, sizes and directions are read from the
  shapes. The stack concatenates directions, as torch does; apply it with
  `train=False` (torch puts no dropout after the top layer).
  """
  arrays = {}
  for key, value in state_dict.items():
    if not key.startswith(prefix):
      continue
    name = key[len(prefix):]
    if name.startswith('weight_hr'):
      raise ValueError(f'{key}: LSTMs with projections (proj_size > 0) are not supported')
    match = _KEY.match(name)
    if match:
      kind, side, layer, reverse = match.groups()
      arrays[(int(layer), bool(reverse), kind, side)] = _numpy(value)
  if not arrays:
    raise ValueError(f'no GRU/LSTM weights (weight_ih_l0, ...) under prefix {prefix!r} in '
                     f'the state dict (keys {sorted(state_dict)[:8]})')
  if (0, False, 'weight', 'hh') not in arrays:
    raise ValueError(f"the state dict lacks ['{prefix}weight_hh_l0'], which gives the hidden size")
  hidden = arrays[(0, False, 'weight', 'hh')].shape[1]
  gates = arrays[(0, False, 'weight', 'hh')].shape[0] // hidden
  if gates not in (3, 4):
    raise ValueError(f'weight_hh_l0 has shape {arrays[(0, False, "weight", "hh")].shape}: '
                     f'{gates} gates, neither a GRU (3) nor an LSTM (4)')
  num_layers = 1 + max(layer for layer, *_ in arrays)
  bidirectional = any(reverse for _, reverse, *_ in arrays)
  directions = (False, True) if bidirectional else (False,)
  # torch's bias=False leaves out every bias key; a dict with some of them is cut short.
  kinds = ('weight', 'bias') if any(kind == 'bias' for _, _, kind, _ in arrays) else ('weight',)
  missing = [f'{prefix}{kind}_{side}_l{layer}{"_reverse" if reverse else ""}'
             for layer in range(num_layers) for reverse in directions for kind in kinds
             for side in ('ih', 'hh') if (layer, reverse, kind, side) not in arrays]
  if missing:
    raise ValueError(f'the state dict lacks {missing}: a {num_layers}-layer '
                     f'{"bidirectional " if bidirectional else ""}torch RNN has all of them '
                     f'(only bias=False leaves out the biases, all of them)')
  params = {}
  for layer in range(num_layers):
    for reverse in directions:
      get = lambda kind, side: arrays.get((layer, reverse, kind, side))
      w_ih, w_hh = get('weight', 'ih'), get('weight', 'hh')
      zeros = np.zeros(gates * hidden, np.float32)  # torch's bias=False
      biases = (zeros, zeros) if kinds == ('weight',) else (get('bias', 'ih'), get('bias', 'hh'))
      b_ih, b_hh = biases
      name = f'layer_{layer}_backward' if reverse else f'layer_{layer}'
      params[name] = {'cell': {
          'input_projection': {'kernel': jnp.asarray(w_ih.T), 'bias': jnp.asarray(b_ih)},
          'recurrent_kernel': jnp.asarray(w_hh.T), 'recurrent_bias': jnp.asarray(b_hh)}}
  stack = RNNStack(cell={3: 'gru', 4: 'lstm'}[gates], hidden_size=hidden,
                   num_layers=num_layers, bidirectional=bidirectional, merge='concat',
                   dtype=dtype)
  return stack, {'params': params}
