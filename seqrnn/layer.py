"""One recurrent layer: the input projection for all steps, then `nn.scan`."""

import flax.linen as nn
import jax
import jax.numpy as jnp


def time_mask(lengths_b, num_steps):
  """`[time, batch, 1]` booleans, True at the real steps `t < lengths[b]`."""
  return (jnp.arange(num_steps)[:, None] < lengths_b[None, :])[..., None]


def _masked_step(cell, carry, inputs):
  """One step of `cell`, frozen (carry kept, output zero) past a sequence's end."""
  x_proj, real = inputs
  new_carry, y = cell(carry, x_proj)
  carry = jax.tree.map(lambda new, old: jnp.where(real, new, old), new_carry, carry)
  return carry, jnp.where(real, y, jnp.zeros_like(y))


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
    x_proj = nn.Dense(self.cell.num_gates * self.cell.hidden_size,
                      dtype=self.cell.dtype, name='input_projection')(x_tbf)
    scan = nn.scan(_masked_step, variable_broadcast='params',
                   split_rngs={'params': False}, in_axes=0, out_axes=0,
                   unroll=self.unroll)
    return scan(self.cell, self.cell.initial_carry(batch_size),
                (x_proj, time_mask(lengths_b, num_steps)))
