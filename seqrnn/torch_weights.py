"""PyTorch `nn.GRU` / `nn.LSTM` weights and states to and from seqrnn's (torch is not needed).

torch keeps, per layer k and direction (suffix `_reverse` for the backward one),
  weight_ih_l{k} [G*H, in], weight_hh_l{k} [G*H, H], bias_ih_l{k}, bias_hh_l{k} [G*H]
with the gates in the order of seqrnn's equations (GRU r, z, n; LSTM i, f, g, o),
so seqrnn's kernels are their transposes.
"""

import re

import jax.numpy as jnp
import numpy as np

from seqrnn.cells import LSTMState, cell_state, hidden_state
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


def to_torch(variables, *, prefix=''):
  """The state dict of the `torch.nn.GRU`/`torch.nn.LSTM` whose outputs equal the stack's:
  `from_torch`'s inverse, as numpy arrays (`{k: torch.from_numpy(v) for k, v in ...}`
  loads them into torch; torch itself is not needed here).

  `variables`: an RNNStack's ({'params': ...} or the params) of seqrnn's 'gru' or 'lstm'
  cell, any number of layers, uni- or bidirectional (merge='concat', as torch joins
  directions); `prefix` is put before every key (e.g. 'encoder.rnn.').
  """
  params = variables.get('params', variables)
  state_dict = {}
  for name, layer in params.items():
    match = re.fullmatch(r'layer_(\d+)(_backward)?', name)
    if not match:
      raise ValueError(f'to_torch: {name!r} is not a recurrent layer (layer_0, layer_0_backward, '
                       f'...): pass the variables of the RNNStack alone')
    extra, cell = sorted(set(layer) - {'cell'}), layer.get('cell', {})
    if extra:
      raise ValueError(f'to_torch: {name} has {extra}, a learned initial carry: torch takes it '
                       f'as h_0 at the call, not as a weight (from_torch_states makes one)')
    if set(cell) != {'input_projection', 'recurrent_kernel', 'recurrent_bias'}:
      raise ValueError(f"to_torch: {name}'s cell holds {sorted(cell)}; torch's GRU and LSTM are "
                       f"seqrnn's 'gru' and 'lstm' cells (input_projection, recurrent_kernel, "
                       f"recurrent_bias)")
    suffix = f'l{match.group(1)}{"_reverse" if match.group(2) else ""}'
    w_i, b_i = (np.asarray(cell['input_projection'][k], np.float32) for k in ('kernel', 'bias'))
    w_h, b_h = (np.asarray(cell[k], np.float32) for k in ('recurrent_kernel', 'recurrent_bias'))
    state_dict.update({f'{prefix}weight_ih_{suffix}': w_i.T, f'{prefix}weight_hh_{suffix}': w_h.T,
                       f'{prefix}bias_ih_{suffix}': b_i, f'{prefix}bias_hh_{suffix}': b_h})
  if not state_dict:
    raise ValueError(f'to_torch: no recurrent layers (layer_0, ...) in {sorted(params)}')
  return state_dict


def torch_states(carries, *, bidirectional=False):
  """The carries of a stack (`return_carry=True`) as torch returns its final states:
  h_n [layers * directions, batch, hidden] for a GRU, (h_n, c_n) for an LSTM, layer by
  layer, each layer's forward direction first (torch's order). `bidirectional`: the
  stack's (each layer's carry is then a (forward, backward) pair)."""
  flat = [c for carry in carries for c in (carry if bidirectional else (carry,))]
  h_n = jnp.stack([hidden_state(c) for c in flat])
  cells = [cell_state(c) for c in flat]
  return h_n if cells[0] is None else (h_n, jnp.stack(cells))


def from_torch_states(h_0, c_0=None, *, bidirectional=False):
  """torch's h_0 (and c_0) [layers * directions, batch, hidden] as a stack's
  `initial_carries`: torch's `rnn(x, h_0)` is `stack(x, initial_carries=...)`."""
  def carry(i):
    return h_0[i] if c_0 is None else LSTMState(h_0[i], c_0[i])
  if bidirectional:
    return [(carry(i), carry(i + 1)) for i in range(0, h_0.shape[0], 2)]
  return [carry(i) for i in range(h_0.shape[0])]
