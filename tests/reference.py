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
        x_tf, np.asarray(p['input_projection']['kernel'], np.float64),
        np.asarray(p['input_projection']['bias'], np.float64),
        np.asarray(p['cell']['recurrent_kernel'], np.float64),
        np.asarray(p['cell']['recurrent_bias'], np.float64))
  return x_tf


def log_softmax(logits):
  z = logits - logits.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))
