"""One recurrent layer: the input projection of all steps, then the time loop.

The loop (`recurrence`) is a `lax.scan` over the cell's step with masking by
lengths. Its backward pass is written by hand when the cell provides
`step_backward` (cuDNN's scheme): the reverse loop computes only the gate
gradients and the recurrent back-propagation; the weight gradients are one
large matmul over all timesteps after the loop, and the input-side gradients
come from the projection outside it.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def time_mask(lengths_b, num_steps):
  """`[time, batch, 1]` booleans, True at the real steps `t < lengths[b]`."""
  return (jnp.arange(num_steps)[:, None] < lengths_b[None, :])[..., None]


def _select(mask, new, old):
  return jax.tree.map(lambda a, b: jnp.where(mask, a, b), new, old)


def _forward(cell, w_h, b_h, x_proj, mask, carry0, unroll, keep_residuals=False):
  """Returns (final carry, outputs [time, batch, hidden], per-step residuals or None)."""
  def step(carry, inputs):
    x_t, real = inputs
    new, residuals = cell.step(w_h, b_h, carry, x_t)
    h = cell.output(new)
    # Unused scan outputs still cost a write per step: keep residuals only for a backward pass.
    return _select(real, new, carry), (jnp.where(real, h, jnp.zeros_like(h)),
                                       residuals if keep_residuals else None)

  x_gates = tuple(jnp.split(x_proj, cell.num_gates, axis=-1))
  carry, (outputs, residuals) = jax.lax.scan(step, carry0, (x_gates, mask), unroll=unroll)
  return carry, outputs, residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 6))
def _fused(cell, w_h, b_h, x_proj, mask, carry0, unroll):
  carry, outputs, _ = _forward(cell, w_h, b_h, x_proj, mask, carry0, unroll)
  return carry, outputs


def _fused_fwd(cell, w_h, b_h, x_proj, mask, carry0, unroll):
  carry, outputs, residuals = _forward(cell, w_h, b_h, x_proj, mask, carry0, unroll,
                                       keep_residuals=True)
  # Of x_proj only the dtype is needed: an empty array carries it without keeping
  # the [time, batch, gates] projection alive until the backward pass.
  return (carry, outputs), (w_h, b_h, jnp.zeros((0,), x_proj.dtype), mask, residuals)


def _fused_bwd(cell, unroll, saved, grads):
  w_h, b_h, x_proj_empty, mask, residuals = saved
  d_carry, d_outputs = grads

  def step(d_carry, inputs):
    d_out, real, res = inputs
    d_new = _select(real, d_carry, jax.tree.map(jnp.zeros_like, d_carry))
    # The output at a real step is the new carry's h: its gradient joins the carry's.
    d_new = _add_to_hidden(cell, d_new, jnp.where(real, d_out, 0.0))
    d_prev, d_x = cell.step_backward(w_h, res, d_new)
    d_prev = _select(real, d_prev, d_carry)  # a frozen step passes its gradient through
    return d_prev, d_x

  d_carry = jax.tree.map(lambda x: x.astype(jnp.float32), d_carry)
  d_carry0, d_x_gates = jax.lax.scan(step, d_carry, (d_outputs.astype(jnp.float32), mask, residuals),
                                     reverse=True, unroll=unroll)
  d_x_proj = jnp.concatenate(d_x_gates, -1)
  d_w_h, d_b_h = cell.recurrent_grads(residuals, d_x_proj)
  return (d_w_h.astype(w_h.dtype), d_b_h.astype(b_h.dtype), d_x_proj.astype(x_proj_empty.dtype),
          None, d_carry0)


_fused.defvjp(_fused_fwd, _fused_bwd)


def _add_to_hidden(cell, d_carry, d_h):
  """Adds d_h to the gradient of the carry's hidden state h = cell.output(carry)."""
  _, pullback = jax.vjp(cell.output, d_carry)
  (d_from_h,) = pullback(d_h)
  return jax.tree.map(jnp.add, d_carry, d_from_h)


def recurrence(cell, w_h, b_h, x_proj, mask, carry0, unroll=1):
  """Runs `cell` over `x_proj` [time, batch, gates] with `mask` [time, batch, 1].

  Past a sequence's end its carry is frozen and its outputs are zero.
  Returns (final carry, outputs [time, batch, hidden]).
  """
  if getattr(cell, 'step_backward', None) is not None:
    return _fused(cell, w_h, b_h, x_proj, mask, carry0, unroll)
  carry, outputs, _ = _forward(cell, w_h, b_h, x_proj, mask, carry0, unroll)
  return carry, outputs


class Recurrent(nn.Module):
  """Runs `cell` over time, time-major.

  The input projection of every timestep is one `[time*batch, in] x [in, gates]`
  matmul before the loop (what cuDNN does and `nn.RNN` does not); the loop runs
  only the recurrent matmul and the gates. Past `lengths[b]` the carry of
  sequence b is frozen and its outputs are zero, so the final carry is the
  carry at the last real step, without storing every step's carry.
  """
  cell: nn.Module
  unroll: int = 1

  @nn.compact
  def __call__(self, x_tbf, lengths_b):
    """x_tbf: [time, batch, in]; lengths_b: int [batch].

    Returns (final carry, outputs [time, batch, hidden]).
    """
    num_steps, batch_size, _ = x_tbf.shape
    mask = time_mask(lengths_b, num_steps)
    # Padded steps are zeroed before the projection: its weight gradient is
    # x^T @ d_x_proj over all steps, where a NaN in padding times a zero gradient
    # would still be NaN. So a padded step's content, whatever it is, changes nothing.
    x_tbf = jnp.where(mask, x_tbf, jnp.zeros((), x_tbf.dtype))
    x_proj = nn.Dense(self.cell.num_gates * self.cell.hidden_size,
                      dtype=self.cell.dtype, name='input_projection')(x_tbf)
    w_h, b_h = self.cell()
    return recurrence(type(self.cell), w_h, b_h, x_proj, mask,
                      self.cell.initial_carry(batch_size), self.unroll)
