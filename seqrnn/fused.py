"""The fused loop: a cell with a hand-written backward pass (`seqrnn.FusedCell`) over time.

A `lax.scan` under `jax.custom_vjp` (cuDNN's scheme): the reverse loop computes
only the gate gradients and the recurrent back-propagation; the weight
gradients and the inputs' gradient are large matmuls over all timesteps after
the loop. The input projection runs inside the loop or before it, by the
input's width (`_loop_inputs`). Reverse mode only. Masks and packed rows as in
`seqrnn.layer`'s scan loop: past a sequence's end its carry is frozen and its
outputs are zero; where a packed row's next sequence starts the carry goes back
to the initial carry.
"""

import functools

import jax
import jax.numpy as jnp

from seqrnn.cells import accumulation_dtype, project
from seqrnn.masks import select


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


def _forward(cell, params, xs, mask, resets, start, carry0, unroll, keep_residuals=False):
  """Runs the loop over `xs` (from `_loop_inputs`) from carry `start`, going back
  to `carry0` at `resets` (None: no packed rows). Returns (final carry, outputs
  [time, batch, hidden], per-step residuals or None)."""
  w_i, b_i, w_h, b_h = params

  def step(carry, inputs):
    x_t, real, reset = inputs
    if reset is not None:
      carry = select(reset, carry0, carry)
    x_gates = _gates(cell, w_i, b_i, x_t) if _projects_in_loop(x_t) else x_t
    new, residuals = cell.step(w_h, b_h, carry, x_gates)
    h = cell.output(new)
    # Unused scan outputs still cost a write per step: keep residuals only for a backward pass.
    return select(real, new, carry), (jnp.where(real, h, jnp.zeros_like(h)),
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
    d_new = select(real, d_carry, zeros(d_carry))
    # The output at a real step is the new carry's h: its gradient joins the carry's.
    d_new = _add_to_hidden(cell, d_new, jnp.where(real, d_out, 0.0))
    d_prev, d_x = cell.step_backward(w_h, res, d_new)
    d_prev = select(real, d_prev, d_carry)  # a frozen step passes its gradient through
    if reset is not None:  # a packed sequence's first step read the initial carry
      d_carry0 = jax.tree.map(jnp.add, d_carry0, select(reset, d_prev, zeros(d_prev)))
      d_prev = select(reset, zeros(d_prev), d_prev)
    return (d_prev, d_carry0), d_x

  # Summed in float32 at least (float64 where the carry is), whatever the compute dtype.
  d_carry = jax.tree.map(lambda d, c: d.astype(accumulation_dtype(c.dtype)), d_carry, carry0)
  d_outputs = d_outputs.astype(accumulation_dtype(d_outputs.dtype))
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
    zero_grads = tuple(jnp.zeros(p.shape, accumulation_dtype(p.dtype)) for p in params)
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
  x [time, batch, in]: the gradients (float32 at least) of (w_i, b_i, w_h, b_h), each one
  large matmul or sum over the steps, and the gradient of x."""
  d_w_h, d_b_h = cell.recurrent_grads(grad_saved, d_x_proj)
  acc = accumulation_dtype(d_x_proj.dtype)
  d_x_proj = d_x_proj.astype(w_i.dtype)
  d_w_i = jnp.einsum('tbf,tbg->fg', x.astype(w_i.dtype), d_x_proj, preferred_element_type=acc)
  d_x = jnp.einsum('tbg,fg->tbf', d_x_proj, w_i)
  return (d_w_i, d_x_proj.sum((0, 1), dtype=acc), d_w_h, d_b_h), d_x


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
  if _in_forward_mode((x, input_params, recurrent_params, carry0)):
    raise _no_forward_mode(cell)  # found while tracing: also under jit
  try:
    return _fused(cell, *input_params, *recurrent_params, x, mask, resets, carry0, unroll,
                  remat_steps(remat_chunk, x.shape[0]))
  except TypeError as e:  # eager jax.jvp, should the tracers not have said so
    if 'forward-mode' not in str(e):
      raise
    raise _no_forward_mode(cell) from e


def _no_forward_mode(cell):
  return TypeError(f'the fused loop of {cell.__name__} has a hand-written backward pass and '
                   f'no forward-mode derivative of its outputs (jax.jvp, jax.jacfwd; '
                   f'forward-over-reverse Hessian-vector products of a loss do work); use the '
                   f'scan loop for them: model.impl=\'scan\' (Recurrent/RNNStack '
                   f'impl=\'scan\')')


def _in_forward_mode(tree):
  """Whether `tree` is being differentiated in forward mode (jax.jvp, jacfwd) with no
  reverse-mode pass (which JAX traces as a linearisation) above it: read from each
  leaf's tracers, outermost first. Under jit the tracers are seen as the function is
  traced, where the custom_vjp's own error would come only when it is compiled. (A
  jvp of a function that was jit-compiled on its own sees no such tracer here, and
  gets JAX's message, whose traceback ends here.)"""
  if not getattr(jax.config, 'jax_use_direct_linearize', True):
    return False  # reverse mode is then itself traced as a jvp: nothing to tell apart
  for leaf in jax.tree.leaves(tree):
    while isinstance(leaf, jax.core.Tracer):
      kind = type(leaf).__name__
      if kind == 'LinearizeTracer':
        break
      if kind == 'JVPTracer':
        return True
      leaf = getattr(leaf, 'primal', getattr(leaf, 'val', None))  # JVP's, vmap's inner value
  return False
