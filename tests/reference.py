"""Plain numpy implementations of the documented equations, one sequence at a time.

Independent of seqrnn's code: no masking tricks, no scan; each sequence is run
for exactly its own length with Python loops.
"""

import numpy as np


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def gru_sequence(x_tf, w_i, b_i, w_h, b_h):
  """torch.nn.GRU equations. w_i [F, 3H], w_h [H, 3H], gates (r, z, n). -> [T, H]."""
  hidden = w_h.shape[0]
  h = np.zeros(hidden)
  outs = []
  for x in x_tf:
    gi = x @ w_i + b_i
    gh = h @ w_h + b_h
    r = sigmoid(gi[:hidden] + gh[:hidden])
    z = sigmoid(gi[hidden:2 * hidden] + gh[hidden:2 * hidden])
    n = np.tanh(gi[2 * hidden:] + r * gh[2 * hidden:])
    h = (1 - z) * n + z * h
    outs.append(h)
  return np.array(outs)


def lstm_sequence(x_tf, w_i, b_i, w_h, b_h):
  """torch.nn.LSTM equations, gates (i, f, g, o). -> [T, H]."""
  hidden = w_h.shape[0]
  h, c = np.zeros(hidden), np.zeros(hidden)
  outs = []
  for x in x_tf:
    gates = x @ w_i + b_i + h @ w_h + b_h
    i, f, g, o = np.split(gates, 4)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    outs.append(h)
  return np.array(outs)


SEQUENCE_FNS = {'gru': gru_sequence, 'lstm': lstm_sequence}


def stack_sequence(cell, layer_params, x_tf):
  """Runs the layers of `layer_params` (seqrnn's param names) over one sequence."""
  for p in layer_params:
    x_tf = SEQUENCE_FNS[cell](
        x_tf, np.asarray(p['cell']['input_projection']['kernel'], np.float64),
        np.asarray(p['cell']['input_projection']['bias'], np.float64),
        np.asarray(p['cell']['recurrent_kernel'], np.float64),
        np.asarray(p['cell']['recurrent_bias'], np.float64))
  return x_tf


def log_softmax(logits):
  z = logits - logits.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def bidirectional_stack_sequence(cell, layer_params, x_tf, merge='concat', residual=False):
  """Layers of (forward params, backward params) over one sequence of its own length:
  the backward direction is the same equations over the sequence reversed, reversed back."""
  run = lambda p, x: stack_sequence(cell, [p], x)
  for forward, backward in layer_params:
    out_f, out_b = run(forward, x_tf), run(backward, x_tf[::-1])[::-1]
    y = np.concatenate([out_f, out_b], -1) if merge == 'concat' else out_f + out_b
    x_tf = y + x_tf if residual and y.shape[-1] == x_tf.shape[-1] else y
  return x_tf


def torch_rnn_sequence(state_dict, x_tf, final_states=False):
  """torch.nn.GRU / nn.LSTM (any layers, bidirectional or not) on one sequence, from
  its state dict in torch's layout ([gates*H, in] weights, x @ W^T). -> [T, H * dirs];
  with final_states, also torch's h_n and c_n [layers * dirs, H] (layer by layer, the
  forward direction first; c_n None for a GRU)."""
  sd = {k: np.asarray(v, np.float64) for k, v in state_dict.items()}
  hidden = sd['weight_hh_l0'].shape[1]
  lstm = sd['weight_hh_l0'].shape[0] == 4 * hidden
  num_layers = 1 + max(int(k.split('_l')[1].split('_')[0]) for k in sd)
  suffixes = [''] + (['_reverse'] if 'weight_ih_l0_reverse' in sd else [])
  h_n, c_n = [], []
  for layer in range(num_layers):
    outs = []
    for suffix in suffixes:
      w = lambda name: sd[f'{name}_l{layer}{suffix}']
      seq = x_tf[::-1] if suffix else x_tf
      h, c, hs = np.zeros(hidden), np.zeros(hidden), []
      for x in seq:
        gi = w('weight_ih') @ x + w('bias_ih')
        gh = w('weight_hh') @ h + w('bias_hh')
        if lstm:
          i, f, g, o = np.split(gi + gh, 4)
          c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
          h = sigmoid(o) * np.tanh(c)
        else:
          r = sigmoid(gi[:hidden] + gh[:hidden])
          z = sigmoid(gi[hidden:2 * hidden] + gh[hidden:2 * hidden])
          n = np.tanh(gi[2 * hidden:] + r * gh[2 * hidden:])
          h = (1 - z) * n + z * h
        hs.append(h)
      h_n.append(h)
      c_n.append(c)
      outs.append(np.array(hs[::-1] if suffix else hs))
    x_tf = np.concatenate(outs, -1)
  if final_states:
    return x_tf, np.array(h_n), np.array(c_n) if lstm else None
  return x_tf


def layer_norm(v, scale, bias=0.0, eps=1e-5):
  return (v - v.mean()) / np.sqrt(v.var() + eps) * scale + bias


def ln_lstm_sequence(x_tf, p):
  """Layer-normalised LSTM (Ba et al. 2016) over one sequence, seqrnn's parameter names."""
  p = {k: ({kk: np.asarray(vv, np.float64) for kk, vv in v.items()} if isinstance(v, dict)
           else np.asarray(v, np.float64)) for k, v in p.items()}
  hidden = p['recurrent_kernel'].shape[0]
  h, c, outs = np.zeros(hidden), np.zeros(hidden), []
  for x in x_tf:
    gates = (layer_norm(x @ p['input_projection']['kernel'], p['input_norm']['scale'])
             + layer_norm(h @ p['recurrent_kernel'], p['recurrent_norm']['scale']) + p['bias'])
    i, f, g, o = np.split(gates, 4)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(layer_norm(c, p['cell_norm']['scale'], p['cell_norm']['bias']))
    outs.append(h)
  return np.array(outs)


def ln_gru_sequence(x_tf, p):
  """Layer-normalised GRU (reset-after) over one sequence, seqrnn's parameter names."""
  p = {k: ({kk: np.asarray(vv, np.float64) for kk, vv in v.items()} if isinstance(v, dict)
           else np.asarray(v, np.float64)) for k, v in p.items()}
  hidden = p['recurrent_kernel'].shape[0]
  h, outs = np.zeros(hidden), []
  for x in x_tf:
    xr, xz, xn = np.split(layer_norm(x @ p['input_projection']['kernel'],
                                     p['input_norm']['scale']) + p['bias'], 3)
    hr, hz, hn = np.split(layer_norm(h @ p['recurrent_kernel'], p['recurrent_norm']['scale'],
                                     p['recurrent_norm']['bias']), 3)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    h = (1 - z) * n + z * h
    outs.append(h)
  return np.array(outs)


def dtw(a, b):
  """DTW distance of series a [Ta, C] and b [Tb, C] by the textbook recursion: D[i, j] =
  |a_i - b_j|^2 + min(D[i-1, j], D[i, j-1], D[i-1, j-1]), D[0, 0] its own cost."""
  d = np.full((len(a) + 1, len(b) + 1), np.inf)
  d[0, 0] = 0.0
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      d[i, j] = np.sum((a[i - 1] - b[j - 1]) ** 2) + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
  return d[-1, -1]
