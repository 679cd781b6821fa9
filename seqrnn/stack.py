"""Recurrent layers stacked, with dropout on each layer's output."""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrnn import checks
from seqrnn.cells import make_cell
from seqrnn.layer import IMPLS, Recurrent, Zoneout, is_on
from seqrnn.masks import keep_and_scale, per_step_bernoulli, time_mask


def dropout(key, x_tbh, rate):
  """Inverted dropout with an independent mask per timestep.

  Each step's mask comes from `fold_in(key, t)`, so step t gets the same mask
  whatever the padded length: padding does not change a training step either.
  `rate` may be a traced scalar (e.g. one per model under `vmap`).
  """
  keep, scale = keep_and_scale(rate, x_tbh.dtype)
  masks = per_step_bernoulli(key, keep, x_tbh.shape[0], x_tbh.shape[1:])
  return jnp.where(masks, x_tbh * scale, 0).astype(x_tbh.dtype)


def sequence_dropout(key, x_tbh, rate):
  """Variational dropout: one mask per sequence [batch, width], the same at every step."""
  keep, scale = keep_and_scale(rate, x_tbh.dtype)
  mask = jax.random.bernoulli(key, keep, x_tbh.shape[1:])
  return jnp.where(mask, x_tbh * scale, 0).astype(x_tbh.dtype)


MERGES = ('concat', 'sum')  # how a bidirectional layer joins its two directions


class RNNStack(nn.Module):
  """`num_layers` recurrent layers of `hidden_size` units, dropout after each.

  The classic `MultiRNNCell([DropoutWrapper(cell, output_keep_prob)] * L)`, and
  what research code adds to it:
  - `cell`: a name in `seqrnn.cells.CELLS` ('gru', 'lstm', 'flax_lstm', ...), a
    dotted path to a Flax cell class, or the class itself; made with
    `features=hidden_size`.
  - `impl`: the time loop, 'auto' | 'fused' | 'scan' | 'parallel' (see `seqrnn.layer`);
    `parallel_iterations`, `parallel_tol`, `parallel_jacobian`: the parallel loop's Newton
    cap, tolerance and Jacobian ('auto', 'diagonal', 'full').
  - `bidirectional`: each layer also reads each sequence backwards from its own
    last real step (parameters under `layer_i_backward`); the two directions'
    outputs are concatenated ([forward | backward], 2*hidden_size) or summed
    (`merge`). `merge_top=False` leaves the top layer's outputs concatenated
    whatever `merge` says (for pooling each direction on its own).
  - `residual`: a layer whose output is as wide as its input adds its input.
  - `learned_initial_carry`: the initial carry of each layer is a parameter.
  - `variational_dropout` (Gal & Ghahramani 2016): one mask per sequence,
    constant over time, on each layer's input, on its recurrent state (the h
    its recurrent matmul reads) and on the top layer's output.
  - `zoneout_hidden`, `zoneout_cell` (Krueger et al. 2016): see `seqrnn.layer`.
  - `remat_chunk`: the fused loop's memory for long sequences (`seqrnn.layer.recurrence`).
  Both need the scan loop ('auto' takes it). Dropout is drawn from the
  'dropout' RNG collection when `train` is True; evaluation is deterministic.

  Layout and return order are `flax.linen.RNN`'s: inputs [batch, time, features]
  ([time, batch, features] with `time_major`); the call returns the outputs, or
  `(carries, outputs)` with `return_carry=True` (both may also be given to the
  call). Left unset, `return_carry` keeps the old order `(outputs, carries)` with
  a FutureWarning, until seqrnn 0.4.

  Precision follows Flax's `dtype`/`param_dtype`: the matmuls and gates run in
  `dtype` (None: the inputs' and parameters' promoted dtype), the parameters and
  the carries are `param_dtype` (the state summed into over every step stays in
  it), the outputs come out in `dtype`, the gradients in `param_dtype`.

  `step(carries, x_t)` runs every layer one timestep, with the parameters of the
  sequence call: a decoder's loop (greedy, beam search, sequence to sequence).
  """
  cell: Any = 'gru'
  hidden_size: int = 128
  num_layers: int = 1
  dropout_rate: float = 0.0
  dtype: Any = None
  param_dtype: Any = jnp.float32
  unroll: int = 1
  impl: str = 'auto'
  bidirectional: bool = False
  merge: str = 'concat'
  merge_top: bool = True
  residual: bool = False
  learned_initial_carry: bool = False
  variational_dropout: float = 0.0
  zoneout_hidden: float = 0.0
  zoneout_cell: float = 0.0
  remat_chunk: Any = 0
  parallel_iterations: int = 0
  parallel_tol: float = 1e-5
  parallel_jacobian: str = 'auto'
  time_major: bool = False
  return_carry: Optional[bool] = None

  def __post_init__(self):
    """Attributes are checked when the stack is made, naming the bad one."""
    for name in ('hidden_size', 'num_layers', 'unroll'):
      checks.check_positive(getattr(self, name), name, 'RNNStack')
    for name in ('dropout_rate', 'variational_dropout', 'zoneout_hidden', 'zoneout_cell'):
      checks.check_rate(getattr(self, name), name, 'RNNStack')
    if self.merge not in MERGES:
      raise ValueError(f'RNNStack: merge={self.merge!r} is not one of {list(MERGES)}')
    if self.impl not in IMPLS:
      raise ValueError(f'RNNStack: impl={self.impl!r} is not one of {list(IMPLS)}')
    if self.impl == 'scan' and str(self.remat_chunk) != '0':
      raise ValueError(f"RNNStack: remat_chunk={self.remat_chunk!r} rematerialises the fused "
                       f"loop; impl='scan' would keep every step: set remat_chunk=0 or "
                       f"impl='fused' or 'auto'")
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs, lengths_b=None, *, train=False, initial_carries=None,
               segments_bt=None, time_major=None, return_carry=None):
    """inputs: [batch, time, features] ([time, batch, features] if time_major);
    lengths_b: int [batch], or a right-padded boolean mask [batch, time], or None
    (every sequence fills the time axis); initial_carries: None, or one entry per
    layer: the cell's carry for [batch] sequences (for a bidirectional layer a
    (forward, backward) pair), or None for the default; segments_bt: None, or int
    [batch, time] for packed rows (`seqrnn.batch`): each sequence of a row is read
    as if it were alone.

    Returns outputs [batch, time, width] (time-major if the inputs are), zero past
    each length; with return_carry, (carries, outputs): carries is the list of each
    layer's final carry at each sequence's last real step (a bidirectional layer's
    is (forward carry, backward carry), the backward one being its carry after
    reading step 0). `seqrnn.hidden_state`/`cell_state` read h and c of any carry.
    """
    time_major = self.time_major if time_major is None else time_major
    return_carry = self.return_carry if return_carry is None else return_carry
    if return_carry is None:
      if not self.is_initializing():  # init returns the variables: no order to change
        checks.warn_changing(_LEGACY)
    if inputs.ndim != 3:
      raise ValueError(f'RNNStack: inputs have shape {inputs.shape}; expected '
                       f'{"[time, batch" if time_major else "[batch, time"}, features]'
                       f'{"" if time_major else " (batch-major; time_major=True for time first)"}')
    x = inputs if time_major else jnp.swapaxes(inputs, 0, 1)  # [time, batch, features]
    num_steps, batch = x.shape[:2]
    lengths_b = checks.lengths_of(lengths_b, batch, num_steps, 'RNNStack')
    if segments_bt is not None:
      checks.check_segments(segments_bt, lengths_b, 'RNNStack')
    mask = time_mask(lengths_b, num_steps)
    dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
    # Zeroed padding, so that a residual connection cannot carry it upwards.
    x = jnp.where(mask, x, 0).astype(dtype)
    initial_carries = initial_carries or [None] * self.num_layers
    if len(initial_carries) != self.num_layers:
      raise ValueError(f'RNNStack: initial_carries has {len(initial_carries)} entries for '
                       f'{self.num_layers} layers (one per layer, None for the default)')

    variational = train and is_on(self.variational_dropout)
    if variational and segments_bt is not None:
      raise ValueError('variational dropout draws one mask per row, which packed rows '
                       '(segments) would share between sequences: set config.data.pack=False')

    def layer(i, reverse):
      return Recurrent(make_cell(self.cell, self.hidden_size, dtype, self.param_dtype),
                       impl=self.impl, time_major=True, return_carry=True,
                       reverse=reverse, learned_initial_carry=self.learned_initial_carry,
                       unroll=self.unroll, recurrent_dropout=self.variational_dropout,
                       zoneout=Zoneout(self.zoneout_hidden, self.zoneout_cell),
                       remat_chunk=self.remat_chunk, parallel_iterations=self.parallel_iterations,
                       parallel_tol=self.parallel_tol,
                       parallel_jacobian=self.parallel_jacobian,
                       name=f'layer_{i}_backward' if reverse else f'layer_{i}')

    carries = []
    for i in range(self.num_layers):
      if variational:
        x = sequence_dropout(self.make_rng('dropout'), x, self.variational_dropout)
      if self.bidirectional:
        start_f, start_b = initial_carries[i] or (None, None)
        carry_f, y_f = layer(i, False)(x, lengths_b, start_f, train=train,
                                       segments_bt=segments_bt)
        carry_b, y_b = layer(i, True)(x, lengths_b, start_b, train=train,
                                      segments_bt=segments_bt)
        carry = (carry_f, carry_b)
        concat = self.merge == 'concat' or (i == self.num_layers - 1 and not self.merge_top)
        y = jnp.concatenate([y_f, y_b], -1) if concat else y_f + y_b
      else:
        carry, y = layer(i, False)(x, lengths_b, initial_carries[i], train=train,
                                   segments_bt=segments_bt)
      y = y.astype(dtype)
      if train and is_on(self.dropout_rate):
        y = dropout(self.make_rng('dropout'), y, self.dropout_rate)
      if self.residual and y.shape[-1] == x.shape[-1]:
        y = y + x
      elif self.residual and i > 0:  # the first layer's input may be narrower: documented
        raise ValueError(f'RNNStack: residual=True, but layer {i} reads {x.shape[-1]} features '
                         f'and writes {y.shape[-1]} (a bidirectional top layer concatenated by '
                         f'merge_top=False?): its input cannot be added')
      x = y
      carries.append(carry)
    if variational:
      x = sequence_dropout(self.make_rng('dropout'), x, self.variational_dropout)
    outputs = x if time_major else jnp.swapaxes(x, 0, 1)
    if return_carry is None:
      return outputs, carries  # the old order (warned above)
    return (carries, outputs) if return_carry else outputs

  def step(self, carries, x_bf, *, train=False):
    """One timestep of every layer: x_bf [batch, features] -> (carries, y [batch, width]).

    `carries`: the carries of the step before (as the sequence call returns them with
    return_carry=True), or None to start from the initial ones. Stepping T times gives
    the outputs and carries of the call over those T steps, with the same parameters
    (`stack.apply(variables, carries, x_t, method='step')`). Dropout in training draws
    a step's masks from the 'dropout' RNG as a call's step 0: give each step its own key.
    """
    if self.bidirectional:
      raise ValueError('RNNStack.step: a bidirectional stack reads each sequence backwards '
                       'from its end, which a step-by-step decoder has not seen yet: decode '
                       'with a unidirectional stack (bidirectional=False)')
    if x_bf.ndim != 2:
      raise ValueError(f'RNNStack.step: x has shape {x_bf.shape}; expected one timestep '
                       f'[batch, features]')
    carries, y = self(x_bf[:, None], None, train=train, initial_carries=carries,
                      time_major=False, return_carry=True)
    return carries, y[:, 0]


_LEGACY = ('seqrnn.RNNStack without return_carry returns (outputs, carries); from seqrnn 0.4 '
           'it returns the outputs alone, or (carries, outputs) with return_carry=True, as '
           'flax.linen.RNN: pass return_carry=True (and unpack carries, outputs) or '
           'return_carry=False to choose now, without this warning')
