"""`impl='cudnn'`: an LSTM layer through cuDNN (`jax.experimental.rnn.lstm`), on GPUs only.

seqrnn's LSTM has torch's (and cuDNN's) equations and gate order (i, f, g, o), so its
parameters map one to one: cuDNN's flat weight vector holds W_ih [4H, in], W_hh [4H, H],
b_ih, b_hh, the transposes of `input_projection` and `recurrent_kernel` and the two
biases. One layer, one direction a call: the stack's dropout, directions and residuals
stay seqrnn's (a reversed layer's input is already reversed per sequence, and cuDNN
reads it forwards up to each length). JAX exposes no cuDNN GRU; packed rows are refused.
"""

import jax
import jax.numpy as jnp

from seqrnn.cells import LSTMState


def flat_weights(input_params, recurrent_params):
  """cuDNN's weight vector of one LSTM layer and direction from seqrnn's parameters:
  (w_i [in, 4H], b_i [4H]) and (w_h [H, 4H], b_h [4H])."""
  (w_i, b_i), (w_h, b_h) = input_params, recurrent_params
  return jnp.concatenate([w_i.T.ravel(), w_h.T.ravel(), b_i, b_h]).astype(jnp.float32)


def check_platform():
  platform = jax.default_backend()
  if platform != 'gpu':
    raise ValueError(f"impl='cudnn' runs cuDNN's LSTM, on NVIDIA GPUs only; JAX's backend here "
                     f"is {platform!r}: use impl='auto' (config.model.impl)")


def lstm_layer(cell, x_tbf, lengths_b, carry0, segments_bt=None):
  """(final LSTMState, outputs [time, batch, H]) of a seqrnn LSTM cell by cuDNN."""
  check_platform()
  if segments_bt is not None:
    raise ValueError("impl='cudnn' reads one sequence a row; packed rows (segments) need "
                     "impl='fused' or 'scan' (config.data.pack=False, or another impl)")
  from jax.experimental import rnn
  in_features, hidden = x_tbf.shape[-1], cell.features
  weights = flat_weights(cell.input_params(in_features), cell.recurrent_params())
  y, h, c = rnn.lstm(jnp.swapaxes(x_tbf, 0, 1).astype(jnp.float32),
                     carry0.hidden[None].astype(jnp.float32), carry0.cell[None].astype(jnp.float32),
                     weights, lengths_b.astype(jnp.int32), input_size=in_features,
                     hidden_size=hidden, num_layers=1, dropout=0.0, bidirectional=False)
  mask = (jnp.arange(x_tbf.shape[0])[None, :] < lengths_b[:, None])[..., None]
  outputs = jnp.swapaxes(jnp.where(mask, y, 0.0), 0, 1)
  return LSTMState(h[0].astype(carry0.hidden.dtype), c[0].astype(carry0.cell.dtype)), outputs
