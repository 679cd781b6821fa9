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
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrnn.cells import LSTMState, project


def time_mask(lengths_b, num_steps):
  """`[time, batch, 1]` booleans, True at the real steps `t < lengths[b]`."""
  return (jnp.arange(num_steps)[:, None] < lengths_b[None, :])[..., None]


def per_step_bernoulli(key, p, num_steps, shape):
  """Booleans [num_steps, *shape], True with probability p; step t's from
  `fold_in(key, t)`, so a step's draw does not depend on how many steps follow
  (padding changes no mask a real step sees)."""
  keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_steps))
  # 64 steps at a time: drawn for all steps at once, threefry's 32-bit words of
  # every step are alive together, several times the booleans' size (at T=4,000
  # they were most of a remat train step's memory). The same draws either way.
  return jax.lax.map(lambda k: jax.random.bernoulli(k, p, shape), keys, batch_size=64)


def _select(mask, new, old):
  return jax.tree.map(lambda a, b: jnp.where(mask, a, b), new, old)


def _loop_inputs(cell, w_i, b_i, w_h, x):
  """What the loop scans over: x itself, to project each step inside the loop, or
  its projection [time, batch, G*H] as G separate arrays, computed before it.

  On XLA:CPU a step's small matmuls are bound by latency: an input projection no
  wider than the recurrent matmul (in <= hidden) rides along in the loop for less
  than one big [time*batch] matmul before it costs; a wider one costs more in the
  loop (one layer's forward and backward timed both ways: docs/speed.md).
  """
  if x.shape[-1] <= w_h.shape[0]:
    return x
  return _gates(cell, w_i, b_i, x)


def _projects_in_loop(xs):
  """Whether `_loop_inputs` gave x itself (not its projected gates)."""
  return not isinstance(xs, tuple)


def _gates(cell, w_i, b_i, x):
  return tuple(jnp.split(project(x, w_i, b_i), cell.num_gates, axis=-1))


def segment_starts(segments_bt, mask):
  """[time, batch, 1] booleans, True where a packed row's second, third, ...
  sequence starts (its carry goes back to the initial carry there)."""
  seg = segments_bt.T
  new = jnp.concatenate([jnp.zeros_like(seg[:1], bool), seg[1:] != seg[:-1]])
  return new[..., None] & mask


def _forward(cell, params, xs, mask, resets, start, carry0, unroll, keep_residuals=False):
  """Runs the loop over `xs` (from `_loop_inputs`) from carry `start`, going back
  to `carry0` at `resets` (None: no packed rows). Returns (final carry, outputs
  [time, batch, hidden], per-step residuals or None)."""
  w_i, b_i, w_h, b_h = params

  def step(carry, inputs):
    x_t, real, reset = inputs
    if reset is not None:
      carry = _select(reset, carry0, carry)
    x_gates = _gates(cell, w_i, b_i, x_t) if _projects_in_loop(x_t) else x_t
    new, residuals = cell.step(w_h, b_h, carry, x_gates)
    h = cell.output(new)
    # Unused scan outputs still cost a write per step: keep residuals only for a backward pass.
    return _select(real, new, carry), (jnp.where(real, h, jnp.zeros_like(h)),
                                       residuals if keep_residuals else None)

  carry, (outputs, residuals) = jax.lax.scan(step, start, (xs, mask, resets), unroll=unroll)
  return carry, outputs, residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 9, 10))
def _fused(cell, w_i, b_i, w_h, b_h, x, mask, resets, carry0, unroll, chunk):
  params = (w_i, b_i, w_h, b_h)
  carry, outputs, _ = _forward(cell, params, _loop_inputs(cell, *params[:3], x), mask, resets,
                               carry0, carry0, unroll)
  return carry, outputs


def _chunks(x, chunk, fill=0):
  """x [time, ...] -> [time / chunk (rounded up), chunk, ...], the tail filled with `fill`."""
  pad = -x.shape[0] % chunk
  x = jnp.concatenate([x, jnp.full((pad,) + x.shape[1:], fill, x.dtype)]) if pad else x
  return x.reshape((-1, chunk) + x.shape[1:])


def _unchunk(x, num_steps):
  return x.reshape((-1,) + x.shape[2:])[:num_steps]


def _fused_fwd(cell, w_i, b_i, w_h, b_h, x, mask, resets, carry0, unroll, chunk):
  params = (w_i, b_i, w_h, b_h)
  xs = _loop_inputs(cell, w_i, b_i, w_h, x)
  if not chunk:
    carry, outputs, saved = _forward(cell, params, xs, mask, resets, carry0, carry0, unroll,
                                     keep_residuals=True)
    xs = None
  else:  # keep only each chunk's starting carry: the backward pass recomputes the rest
    # from the same xs (a projection made before the loop is kept, so that the recomputed
    # steps read bitwise the gate inputs the first pass read).
    xs = jax.tree.map(lambda a: _chunks(a, chunk), xs)
    def run_chunk(carry, inputs):
      xs_c, mask_c, resets_c = inputs
      new, outputs, _ = _forward(cell, params, xs_c, mask_c, resets_c, carry, carry0, unroll)
      return new, (carry, outputs)
    carry, (saved, outputs) = jax.lax.scan(
        run_chunk, carry0, (xs, _chunks(mask, chunk, False), _maybe_chunks(resets, chunk)))
    outputs = _unchunk(outputs, x.shape[0])
  return (carry, outputs), (params, x, xs, mask, resets, carry0, saved)


def _maybe_chunks(resets, chunk):
  return None if resets is None else _chunks(resets, chunk, False)


def _fused_bwd(cell, unroll, chunk, saved, grads):
  params, x, xs, mask, resets, carry0, saved = saved
  w_i, b_i, w_h, b_h = params
  d_carry, d_outputs = grads
  zeros = lambda tree: jax.tree.map(jnp.zeros_like, tree)

  def step(acc, inputs):
    d_carry, d_carry0 = acc  # d_carry0: what reached the initial carry at resets so far
    d_out, real, reset, res = inputs
    d_new = _select(real, d_carry, zeros(d_carry))
    # The output at a real step is the new carry's h: its gradient joins the carry's.
    d_new = _add_to_hidden(cell, d_new, jnp.where(real, d_out, 0.0))
    d_prev, d_x = cell.step_backward(w_h, res, d_new)
    d_prev = _select(real, d_prev, d_carry)  # a frozen step passes its gradient through
    if reset is not None:  # a packed sequence's first step read the initial carry
      d_carry0 = jax.tree.map(jnp.add, d_carry0, _select(reset, d_prev, zeros(d_prev)))
      d_prev = _select(reset, zeros(d_prev), d_prev)
    return (d_prev, d_carry0), d_x

  d_carry = jax.tree.map(lambda x: x.astype(jnp.float32), d_carry)
  d_outputs = d_outputs.astype(jnp.float32)
  acc = (d_carry, None if resets is None else zeros(d_carry))
  if not chunk:
    acc, d_x_proj = jax.lax.scan(step, acc, (d_outputs, mask, resets, saved),
                                 reverse=True, unroll=unroll)
    grads, d_x = _param_grads(cell, w_i, x, d_x_proj, cell.grad_residuals(saved))
  else:  # each chunk's gradients are summed as it goes: no [time, batch, gates] array is kept
    def back_chunk(carry, inputs):
      acc, grads = carry
      xs_c, x_c, mask_c, resets_c, start, d_out_c = inputs
      _, _, res = _forward(cell, params, xs_c, mask_c, resets_c, start, carry0, unroll,
                           keep_residuals=True)
      acc, d_x_proj = jax.lax.scan(step, acc, (d_out_c, mask_c, resets_c, res), reverse=True,
                                   unroll=unroll)
      chunk_grads, d_x = _param_grads(cell, w_i, x_c, d_x_proj, cell.grad_residuals(res))
      return (acc, jax.tree.map(jnp.add, grads, chunk_grads)), d_x
    zero_grads = tuple(jnp.zeros(p.shape, jnp.float32) for p in params)
    (acc, grads), d_x = jax.lax.scan(
        back_chunk, (acc, zero_grads),
        (xs, xs if _projects_in_loop(xs) else _chunks(x, chunk), _chunks(mask, chunk, False),
         _maybe_chunks(resets, chunk), saved, _chunks(d_outputs, chunk)), reverse=True)
    d_x = _unchunk(d_x, mask.shape[0])
  d_carry0, d_at_resets = acc
  if d_at_resets is not None:
    d_carry0 = jax.tree.map(jnp.add, d_carry0, d_at_resets)
  return (*(g.astype(p.dtype) for g, p in zip(grads, params)), d_x.astype(x.dtype), None, None,
          d_carry0)


def _param_grads(cell, w_i, x, d_x_proj, grad_saved):
  """From the gate gradients d_x_proj [time, batch, G*H] of the steps that read
  x [time, batch, in]: the float32 gradients of (w_i, b_i, w_h, b_h), each one
  large matmul or sum over the steps, and the gradient of x."""
  d_w_h, d_b_h = cell.recurrent_grads(grad_saved, d_x_proj)
  d_x_proj = d_x_proj.astype(w_i.dtype)
  d_w_i = jnp.einsum('tbf,tbg->fg', x.astype(w_i.dtype), d_x_proj,
                     preferred_element_type=jnp.float32)
  d_x = jnp.einsum('tbg,fg->tbf', d_x_proj, w_i)
  return (d_w_i, d_x_proj.sum((0, 1), dtype=jnp.float32), d_w_h, d_b_h), d_x


_fused.defvjp(_fused_fwd, _fused_bwd)


def _add_to_hidden(cell, d_carry, d_h):
  """Adds d_h to the gradient of the carry's hidden state h = cell.output(carry)."""
  _, pullback = jax.vjp(cell.output, d_carry)
  (d_from_h,) = pullback(d_h)
  return jax.tree.map(jnp.add, d_carry, d_from_h)


def remat_steps(remat_chunk, num_steps):
  """Steps per rematerialised chunk (0: none) for `remat_chunk` 0, k or 'auto' (about
  sqrt(time))."""
  chunk = round(num_steps ** 0.5) if remat_chunk == 'auto' else int(remat_chunk)
  # A chunk of one step saves nothing (and XLA rounds a one-step loop differently);
  # one chunk of all steps is the loop without remat.
  return chunk if 2 <= chunk < num_steps else 0


def recurrence(cell, input_params, recurrent_params, x, mask, carry0, unroll=1, remat_chunk=0,
               resets=None):
  """The fused loop: runs the cell class `cell` (with `step_backward`) over
  `x` [time, batch, in] with `mask` [time, batch, 1]; `input_params` (w_i, b_i)
  and `recurrent_params` (w_h, b_h) as the cell's `input_params` and
  `recurrent_params` give them.

  Past a sequence's end its carry is frozen and its outputs are zero. Where
  `resets` [time, batch, 1] (packed rows: `segment_starts`) is True the step
  reads `carry0` instead of the carry before it.
  `remat_chunk` (0, k or 'auto': about sqrt(time)) keeps, for the backward
  pass, only the carry at every k-th step instead of every step's gate values,
  and recomputes a chunk's steps in the backward pass, summing each chunk's
  weight gradients as it goes: memory O(time/k + k) steps of gates instead of
  O(time), for one more forward pass; the outputs are bitwise those without it,
  the gradients equal to float rounding (summed chunk by chunk).
  Returns (final carry, outputs [time, batch, hidden]).
  """
  try:
    return _fused(cell, *input_params, *recurrent_params, x, mask, resets, carry0, unroll,
                  remat_steps(remat_chunk, x.shape[0]))
  except TypeError as e:
    if 'forward-mode' not in str(e):
      raise
    raise TypeError(f'the fused loop of {cell.__name__} has a hand-written backward pass and '
                    f'no forward-mode derivative (jax.jvp, jax.jacfwd, Hessian-vector '
                    f'products); use the scan loop for them: model.impl=\'scan\' '
                    f'(Recurrent/RNNStack impl=\'scan\')') from e


def has_fused_loop(cell):
  """Whether `cell` offers what the fused loop needs (a hand-written backward)."""
  return (getattr(type(cell), 'step_backward', None) is not None
          and hasattr(cell, 'input_params') and hasattr(cell, 'recurrent_params'))


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
  else per-step booleans shaped like the carry's leaves (True: keep the old value)."""
  def one(o, n, rate, keep):
    if not is_on(rate):
      return n
    if keep is None:
      return (rate * o + (1.0 - rate) * n).astype(n.dtype)
    return jnp.where(keep, o, n)
  if isinstance(new, LSTMState):
    keep = keep_old or (None, None)
    return LSTMState(one(old.hidden, new.hidden, rates.hidden, keep[0]),
                     one(old.cell, new.cell, rates.cell, keep[1]))
  return one(old, new, rates.hidden, None if keep_old is None else keep_old[0])


def _scan_body(cell, carry, inputs, recurrent_mask, carry0, hoisted, zoneout):
  x_t, real, keep_old, reset = inputs
  if reset is not None:
    carry = _select(reset, carry0, carry)
  if recurrent_mask is not None:
    new, y = cell.step_projected(carry, x_t, recurrent_mask)
  else:
    new, y = cell.step_projected(carry, x_t) if hoisted else cell(carry, x_t)
  if zoneout.on():
    new = _zoneout(carry, new, zoneout, keep_old)
    y = new.hidden if isinstance(new, LSTMState) else new  # the output is the zoned-out h
  return _select(real, new, carry), jnp.where(real, y, jnp.zeros((), y.dtype))


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


IMPLS = ('auto', 'scan', 'fused')


class Recurrent(nn.Module):
  """Runs `cell` over time, time-major, masked by lengths.

  `impl` picks the loop: 'fused' (the hand-written backward pass, for cells
  that have one), 'scan' (`flax.linen.scan`, any cell), 'auto' (fused where
  the cell allows it). Both take the same parameters and give the same
  results. `reverse` reads each sequence backwards from its own last real
  step (outputs are put back in forward order). `learned_initial_carry`
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

  @nn.compact
  def __call__(self, x_tbf, lengths_b, initial_carry=None, *, train=False, segments_bt=None):
    """x_tbf: [time, batch, in]; lengths_b: int [batch]; initial_carry: the cell's
    carry for [batch] sequences, or None for the (zero or learned) initial carry;
    segments_bt: None, or int [batch, time] for packed rows (`seqrnn.batch`):
    each sequence of a row starts from the initial carry.

    Returns (final carry (a packed row's: its last sequence's), outputs [time, batch, out]).
    """
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
    regularised = is_on(self.recurrent_dropout) or self.zoneout.on()
    if _resolve_impl(self.impl, self.cell, regularised) == 'fused':
      carry, outputs = recurrence(type(self.cell), self.cell.input_params(x_tbf.shape[-1]),
                                  self.cell.recurrent_params(), x_tbf, mask, initial_carry,
                                  self.unroll, self.remat_chunk, resets)
    else:
      recurrent_mask, keep = self._masks(initial_carry, x_tbf.shape[0], train)
      carry, outputs = scan_cell(self.cell, x_tbf, mask, initial_carry, self.unroll,
                                 recurrent_mask=recurrent_mask, zoneout=self.zoneout,
                                 zoneout_keep=keep, resets=resets)
    if self.reverse:
      outputs = reverse_padded(outputs, lengths_b, segments_bt)
    return carry, outputs

  def _masks(self, carry, num_steps, train):
    """(recurrent dropout mask [batch, H] or None, zoneout's keep masks or None)."""
    lstm = isinstance(carry, LSTMState)
    if self.zoneout.on() and not (lstm or isinstance(carry, jax.Array)):
      raise ValueError(f'zoneout needs a carry that is h alone or an LSTMState; '
                       f'{type(self.cell).__name__} has {jax.tree.structure(carry)}')
    if is_on(self.recurrent_dropout) and not hasattr(self.cell, 'step_projected'):
      raise ValueError(f'variational recurrent dropout needs a cell whose step takes a '
                       f'recurrent mask (step_projected(carry, x_proj, recurrent_mask): '
                       f'seqrnn\'s gru, lstm, ln_gru, ln_lstm); {type(self.cell).__name__} '
                       f'has none')
    h = carry.hidden if lstm else carry
    recurrent_mask = keep = None
    if train and is_on(self.recurrent_dropout):
      rate = self.recurrent_dropout
      recurrent_mask = (jax.random.bernoulli(self.make_rng('dropout'), 1.0 - rate, h.shape)
                        / (1.0 - rate)).astype(h.dtype)
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


def _resolve_impl(impl, cell, regularised=False):
  if impl not in IMPLS:
    raise ValueError(f'impl={impl!r} is not one of {list(IMPLS)}')
  if impl == 'fused' and regularised:
    raise ValueError("recurrent dropout and zoneout run in the scan loop: use impl='scan' or "
                     "'auto' (model.impl)")
  fused = has_fused_loop(cell) and not regularised
  if impl == 'fused' and not fused:
    raise ValueError(f'impl=\'fused\' needs a cell with a hand-written backward pass '
                     f'(seqrnn\'s GRUCell, LSTMCell); {type(cell).__name__} has none: use '
                     f'impl=\'scan\' or \'auto\'')
  return 'fused' if impl == 'fused' or (impl == 'auto' and fused) else 'scan'
