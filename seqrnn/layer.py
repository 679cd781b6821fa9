"""One recurrent layer: a cell run over time, masked by lengths, in one of two loops.

- `scan`: `flax.linen.scan` over the cell as an ordinary Flax module, for any
  cell `(carry, x) -> (carry, y)`: parameters broadcast over time, the
  'dropout' RNG split per step, differentiable in every mode (reverse,
  forward, higher order). A cell that offers `project` has its input
  projection computed for all steps at once, before the loop.
- `fused`: for cells with a hand-written backward pass (the built-in GRU and
  LSTM). The loop is a `lax.scan` under `jax.custom_vjp` (cuDNN's scheme): the
  reverse loop computes only the gate gradients and the recurrent
  back-propagation; the weight gradients and the inputs' gradient are large
  matmuls over all timesteps after the loop. The input projection runs inside
  the loop or before it, by the input's width (`_loop_inputs`). Reverse mode only.

Both mask the same way: past `lengths[b]` the carry of sequence b is frozen and
its outputs are zero, so the final carry is the carry at the last real step.
Both also read packed rows (`segments`: several sequences laid end to end in
one row, see `seqrnn.batch`): the carry goes back to the initial carry where a
new sequence starts, and a reversed layer reads each sequence backwards on its
own, so a packed sequence's outputs are those it has alone.

The scan loop also regularises the recurrent state, each off by default:
variational recurrent dropout (one mask per sequence on the h the recurrent
matmul reads, Gal & Ghahramani 2016) and zoneout (Krueger et al. 2016: each
unit of h, and of an LSTM's c, keeps its previous value with probability p in
training; at evaluation the expectation p * old + (1 - p) * new).
"""

import functools
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrnn.cells import cell_state, has_fused_loop, hidden_state, with_states
from seqrnn import checks
from seqrnn import cudnn, parallel
from seqrnn.fused import recurrence
from seqrnn.masks import keep_and_scale, per_step_bernoulli, segment_starts, select, time_mask


def reverse_padded(x_tb, lengths_b, segments_bt=None):
  """Reverses each sequence of x [time, batch, ...] within its own length:
  step t of sequence b becomes step lengths[b] - 1 - t; padded steps stay put.
  With `segments` (packed rows), each sequence of a row within its own span.
  Its own inverse."""
  num_steps = x_tb.shape[0]
  t = jnp.arange(num_steps)[:, None]
  if segments_bt is None:
    start, end = 0, lengths_b[None, :]
  else:  # each step's sequence spans [start, end)
    seg = segments_bt.T
    change = seg[1:] != seg[:-1]
    first = jnp.concatenate([jnp.ones_like(change[:1]), change])
    last = jnp.concatenate([change, jnp.ones_like(change[:1])])
    start = jax.lax.cummax(jnp.where(first, t, 0), axis=0)
    end = jax.lax.cummin(jnp.where(last, t + 1, num_steps), axis=0, reverse=True)
  idx = jnp.where(t < lengths_b[None, :], start + end - 1 - t, t)
  idx = idx.reshape(idx.shape + (1,) * (x_tb.ndim - 2))
  return jnp.take_along_axis(x_tb, idx, axis=0)


class Zoneout(NamedTuple):
  """Zoneout probabilities of the carry's hidden state and (LSTM) cell state."""
  hidden: float = 0.0
  cell: float = 0.0

  def on(self):
    return is_on(self.hidden) or is_on(self.cell)


def is_on(rate):
  """Whether a regulariser of rate `rate` is applied: a float above 0, or an array
  (one rate per model under vmap, from runs that all apply it)."""
  return not isinstance(rate, (int, float)) or rate > 0


def _zoneout(old, new, rates, keep_old):
  """The carry after zoneout. `keep_old`: None at evaluation (the expectation),
  else per-step booleans shaped like h (True: keep the old value), for h and c.
  A carry is any `hidden_state`/`cell_state` read (h alone, LSTMState, Flax's (c, h))."""
  def one(o, n, rate, keep):
    if not is_on(rate):
      return n
    if keep is None:
      return (rate * o + (1.0 - rate) * n).astype(n.dtype)
    return jnp.where(keep, o, n)
  keep = keep_old or (None, None)
  h = one(hidden_state(old), hidden_state(new), rates.hidden, keep[0])
  c = cell_state(new)
  c = None if c is None else one(cell_state(old), c, rates.cell, keep[1])
  return with_states(new, h, c)


def _scan_body(cell, carry, inputs, recurrent_mask, carry0, hoisted, zoneout):
  x_t, real, keep_old, reset = inputs
  if reset is not None:
    carry = select(reset, carry0, carry)
  if recurrent_mask is not None:
    new, y = cell.step_projected(carry, x_t, recurrent_mask)
  else:
    new, y = cell.step_projected(carry, x_t) if hoisted else cell(carry, x_t)
  # A Flax cell computing in `dtype` returns its carry in it; the carry stays in its own.
  new = jax.tree.map(lambda n, c: n.astype(c.dtype), new, carry)
  if zoneout.on():
    new = _zoneout(carry, new, zoneout, keep_old)
    y = hidden_state(new)  # the output is the zoned-out h
  out = select(real, new, carry)
  if y is hidden_state(new):  # the output is the carry's h: read it from the one carry kept
    y = hidden_state(out)  # (else XLA may compute it twice, rounded differently)
  return out, jnp.where(real, y, jnp.zeros((), y.dtype))


def scan_cell(cell, xs, mask, carry0, unroll=1, *, recurrent_mask=None, zoneout=Zoneout(),
              zoneout_keep=None, resets=None):
  """The scan loop: `flax.linen.scan` of any Flax cell over xs [time, batch, in].

  Call it inside a module's compact method with a bound `cell`.
  `recurrent_mask` [batch, H] is passed to each step (`cell.step_projected`);
  `zoneout` gives the rates and `zoneout_keep` the training masks (a pair of
  [time, batch, H] booleans or None, for h and c), None at evaluation;
  `resets` as for `recurrence`.
  Returns (final carry, outputs [time, batch, out]).
  """
  hoisted = hasattr(cell, 'project') and hasattr(cell, 'step_projected')
  if hoisted:  # one [time*batch, in] x [in, gates] matmul instead of one per step
    xs = cell.project(xs)
  scan = nn.scan(functools.partial(_scan_body, hoisted=hoisted, zoneout=zoneout),
                 variable_broadcast='params', split_rngs={'params': False, 'dropout': True},
                 in_axes=(0, nn.broadcast, nn.broadcast), out_axes=0, unroll=unroll)
  return scan(cell, carry0, (xs, mask, zoneout_keep, resets), recurrent_mask, carry0)


IMPLS = ('auto', 'scan', 'fused', 'parallel', 'cudnn')


_LEGACY = ("seqrnn.Recurrent without time_major and return_carry reads time-major inputs "
           "and returns (carry, outputs); from seqrnn 0.4 it is batch-major and returns the "
           "outputs alone, as flax.linen.RNN and seqrnn.RNNStack: pass time_major=True, "
           "return_carry=True to keep today's behaviour without this warning")


class Recurrent(nn.Module):
  """Runs `cell` over time, masked by lengths; the layout and return order of
  `flax.linen.RNN` (and `RNNStack`): inputs [batch, time, features] (or
  [time, batch, features] with `time_major=True`); returns the outputs, or
  (final carry, outputs) with `return_carry=True`. Both may also be given
  to the call. (Left unset, both are today True, with a FutureWarning.)

  `impl` picks the loop: 'fused' (the hand-written backward pass, for cells
  that have one), 'scan' (`flax.linen.scan`, any cell), 'auto' (fused where
  the cell allows it), 'parallel' (the whole trajectory at once, `seqrnn.parallel`:
  exact for cells linear in their state, Newton iterations for the others, capped by
  `parallel_iterations`, their count sown as 'intermediates'/'parallel_iterations'),
  'cudnn' (the LSTM by cuDNN, `seqrnn.cudnn`, GPUs only). All take the same parameters
  and give the same results. `reverse` reads each sequence backwards from its own last
  real step (outputs are put back in forward order). `learned_initial_carry`
  makes the zero carry a parameter.

  `recurrent_dropout` and `zoneout` (see the module docstring) need the scan
  loop ('auto' takes it when either is on) and a cell that supports them:
  recurrent dropout a `step_projected(carry, x_proj, recurrent_mask)` (seqrnn's
  cells), zoneout a carry that is h alone or an `LSTMState`. Their masks come
  from the 'dropout' RNG when `train` is True: the recurrent mask one per
  sequence, the zoneout masks one per step from `fold_in(key, t)`, t counted in
  the sequence's own reading order (the scan's step: a reversed sequence is read
  from its last real step), so padding changes no mask a real step sees.
  """
  cell: nn.Module
  impl: str = 'auto'
  reverse: bool = False
  learned_initial_carry: bool = False
  unroll: int = 1
  recurrent_dropout: float = 0.0
  zoneout: Zoneout = Zoneout()
  remat_chunk: Any = 0  # fused loop: 0, steps per rematerialised chunk, or 'auto'
  parallel_iterations: int = 0  # impl='parallel', Newton: the cap (0: the number of steps)
  parallel_tol: float = 1e-5    # impl='parallel', Newton: converged below this max residual
  parallel_jacobian: str = 'auto'  # impl='parallel', Newton: 'auto', 'diagonal' or 'full'
  time_major: Optional[bool] = None
  return_carry: Optional[bool] = None

  @nn.compact
  def __call__(self, inputs, lengths_b=None, initial_carry=None, *, train=False,
               segments_bt=None, time_major=None, return_carry=None):
    """inputs: [batch, time, in] ([time, batch, in] if time_major); lengths_b: int
    [batch], a right-padded boolean mask [batch, time], or None (full length);
    initial_carry: the cell's carry for [batch] sequences, or None for the (zero or
    learned) initial carry; segments_bt: None, or int [batch, time] for packed rows
    (`seqrnn.batch`): each sequence of a row starts from the initial carry.

    Returns outputs [batch, time, out] (time-major if the inputs are), zero past each
    length, or with return_carry (final carry (a packed row's: its last sequence's), outputs).
    """
    time_major = self.time_major if time_major is None else time_major
    return_carry = self.return_carry if return_carry is None else return_carry
    if time_major is None or return_carry is None:
      if not self.is_initializing():  # init returns the variables: no order to change
        checks.warn_changing(_LEGACY)
      time_major = True if time_major is None else time_major
      return_carry = True if return_carry is None else return_carry
    if inputs.ndim != 3:
      raise ValueError(f'Recurrent: inputs have shape {inputs.shape}; expected '
                       f'{"[time, batch" if time_major else "[batch, time"}, features]')
    x_tbf = inputs if time_major else jnp.swapaxes(inputs, 0, 1)
    lengths_b = checks.lengths_of(lengths_b, x_tbf.shape[1], x_tbf.shape[0], 'Recurrent')
    mask = time_mask(lengths_b, x_tbf.shape[0])
    resets = None if segments_bt is None else segment_starts(segments_bt, mask)
    # Padded steps are zeroed before the projection: its weight gradient is
    # x^T @ d_x_proj over all steps, where a NaN in padding times a zero gradient
    # would still be NaN. So a padded step's content, whatever it is, changes nothing.
    x_tbf = jnp.where(mask, x_tbf, jnp.zeros((), x_tbf.dtype))
    if self.reverse:
      x_tbf = reverse_padded(x_tbf, lengths_b, segments_bt)
    if initial_carry is None:
      initial_carry = self._initial_carry(x_tbf.shape[1:])
    loop = loop_for(self.cell, initial_carry, self.impl, self.recurrent_dropout, self.zoneout,
                    self.remat_chunk)
    if loop == 'fused':
      carry, outputs = recurrence(type(self.cell), self.cell.input_params(x_tbf.shape[-1]),
                                  self.cell.recurrent_params(), x_tbf, mask, initial_carry,
                                  self.unroll, self.remat_chunk, resets)
    elif loop == 'cudnn':
      carry, outputs = cudnn.lstm_layer(self.cell, x_tbf, lengths_b, initial_carry, segments_bt)
    elif loop == 'parallel' and hasattr(self.cell, 'linear_coefficients'):
      carry, outputs = parallel.linear_layer(self.cell, x_tbf, mask, initial_carry, resets)
    elif loop == 'parallel':
      carry, outputs, taken = parallel.newton_layer(
          self.cell, x_tbf, mask, initial_carry, resets,
          iterations=self.parallel_iterations or x_tbf.shape[0], tol=self.parallel_tol,
          jacobian=self.parallel_jacobian)
      self.sow('intermediates', 'parallel_iterations', taken)
    else:
      recurrent_mask, keep = self._masks(initial_carry, x_tbf.shape[0], train)
      carry, outputs = scan_cell(self.cell, x_tbf, mask, initial_carry, self.unroll,
                                 recurrent_mask=recurrent_mask, zoneout=self.zoneout,
                                 zoneout_keep=keep, resets=resets)
    if self.reverse:
      outputs = reverse_padded(outputs, lengths_b, segments_bt)
    outputs = outputs if time_major else jnp.swapaxes(outputs, 0, 1)
    return (carry, outputs) if return_carry else outputs

  def _masks(self, carry, num_steps, train):
    """(recurrent dropout mask [batch, H] or None, zoneout's keep masks or None)."""
    h = hidden_state(carry)
    recurrent_mask = keep = None
    if train and is_on(self.recurrent_dropout):
      kept, scale = keep_and_scale(self.recurrent_dropout, h.dtype)
      recurrent_mask = jax.random.bernoulli(self.make_rng('dropout'), kept,
                                            h.shape).astype(h.dtype) * scale
    if train and self.zoneout.on():
      key = self.make_rng('dropout')
      keep = tuple(None if not is_on(rate) else per_step_bernoulli(jax.random.fold_in(key, i), rate,
                                                            num_steps, h.shape)
                   for i, rate in enumerate(self.zoneout))
    return recurrent_mask, keep

  def _initial_carry(self, input_shape):
    zeros = self.cell.initialize_carry(jax.random.key(0), input_shape)  # zero-filled: key unused
    if not self.learned_initial_carry:
      return zeros
    leaves, tree = jax.tree.flatten(zeros)
    learned = [jnp.broadcast_to(self.param(f'initial_carry_{i}', nn.initializers.zeros_init(),
                                           z.shape[1:], z.dtype), z.shape)
               for i, z in enumerate(leaves)]
    return jax.tree.unflatten(tree, learned)


def loop_for(cell, carry, impl='auto', recurrent_dropout=0.0, zoneout=Zoneout(), remat_chunk=0):
  """The loop ('fused' or 'scan') that runs `cell` (whose carry is like `carry`) under
  `impl` with these regularisers. Every capability a cell needs is checked here,
  for `Recurrent` and for config validation alike: a ValueError says what is missing."""
  name = cell.__name__ if isinstance(cell, type) else type(cell).__name__
  if impl not in IMPLS:
    raise ValueError(f'impl={impl!r} is not one of {list(IMPLS)}')
  regularised = is_on(recurrent_dropout) or zoneout.on()
  if impl == 'cudnn':
    from seqrnn.cells import LSTMCell
    if not (isinstance(cell, type) and issubclass(cell, LSTMCell) or isinstance(cell, LSTMCell)):
      raise ValueError(f"impl='cudnn' runs seqrnn's LSTM (cell 'lstm') through cuDNN; {name} "
                       f"has no cuDNN kernel in JAX: use impl='auto'")
    if regularised or str(remat_chunk) != '0':
      raise ValueError("impl='cudnn' runs cuDNN's kernel as it is: variational dropout, "
                       "zoneout and remat_chunk need impl='scan' or 'fused'")
    return 'cudnn'
  if impl == 'parallel':
    if regularised:
      raise ValueError("impl='parallel' solves the whole trajectory at once; variational "
                       "dropout and zoneout draw per-step masks in the scan loop: use "
                       "impl='scan' or 'auto' (config.model.impl)")
    if str(remat_chunk) != '0':
      raise ValueError(f"remat_chunk={remat_chunk!r} rematerialises the fused loop; "
                       f"impl='parallel' keeps none: set remat_chunk to 0")
    return 'parallel'
  if impl == 'fused' and regularised:
    raise ValueError("variational dropout and zoneout run in the scan loop: use impl='scan' or "
                     "'auto' (config.model.impl)")
  if is_on(recurrent_dropout) and not hasattr(cell, 'step_projected'):
    raise ValueError(f'variational recurrent dropout needs a cell whose step takes a recurrent '
                     f'mask (step_projected(carry, x_proj, recurrent_mask): a '
                     f'seqrnn.ProjectedCell, such as gru, lstm, ln_gru, ln_lstm); {name} has none')
  if zoneout.on():
    try:
      has_cell = cell_state(carry) is not None
    except ValueError as e:
      raise ValueError(f'zoneout of {name}: {e}') from None
    if is_on(zoneout.cell) and not has_cell:
      raise ValueError(f"zoneout_cell needs a carry with a cell state (an LSTM's: lstm, "
                       f"ln_lstm, flax_lstm); {name}'s carry is h alone")
  fused = has_fused_loop(cell) and not regularised
  if impl == 'fused' and not fused:
    raise ValueError(f'impl=\'fused\' needs a cell with a hand-written backward pass (a '
                     f'seqrnn.FusedCell, such as gru, lstm); {name} has none: use '
                     f'impl=\'scan\' or \'auto\' (config.model.impl)')
  loop = 'fused' if impl == 'fused' or (impl == 'auto' and fused) else 'scan'
  if loop == 'scan' and str(remat_chunk) != '0':
    raise ValueError(f'remat_chunk={remat_chunk!r} rematerialises the fused loop; {name} runs in '
                     f'the scan loop here (impl={impl!r}{", regularised" if regularised else ""}),'
                     f' which would keep every step: set remat_chunk to 0, or use the fused loop')
  return loop
