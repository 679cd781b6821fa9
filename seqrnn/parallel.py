"""`impl='parallel'`: a layer's whole trajectory at once, O(log time) deep, not one step
after another.

- A cell linear in its state (`min_gru`, `min_lstm`: `linear_coefficients(x_proj) ->
  (a, b)`, h' = a * h + b) is one `jax.lax.associative_scan` of the affine maps
  h -> a_t * h + b_t: exact, and differentiated by autodiff.
- Any other cell (GRU, LSTM, a Flax cell): Newton's method on the whole trajectory (DEER,
  Lim et al. 2024). The equations s_t = f(s_{t-1}, x_t) for all t are solved together;
  each iteration linearises f around the current trajectory and solves the linear
  recurrence s_t = J_t s_{t-1} + (f_t - J_t s'_{t-1}) with the same associative scan:
  of [S, S] matrices with the full Jacobian (Newton, for states of at most 32 units), of
  its diagonal otherwise (quasi-DEER, Gonzalez et al. 2024; exact Newton for `diag_gru`,
  whose Jacobian is diagonal; the GRU's and LSTM's diagonal comes from the cell,
  `FusedCell.state_jacobian_diagonal`); `parallel_jacobian` chooses. The first k steps are
  exact after k iterations, so at most `time` iterations converge; a trajectory that has
  not converged (some |s_t - f(s_{t-1}, x_t)| above `tol`, or an iterate not finite: where
  the Jacobian exceeds 1 the scan's products overflow) within `iterations` is finished by
  the sequential loop, never returned unconverged. (ELK's damping, Gonzalez et al. 2024,
  was tried and left out: on h' = tanh(1.5 h + x), whose undamped iterates overflow, its
  Levenberg-Marquardt steps stalled at a trajectory off by 1.05 with residual 0.0125, a
  local minimum of the residual, while the sequential finish is exact.) The gradient is taken at
  the converged trajectory by the implicit function theorem: the adjoint
  mu_t = g_t + J_{t+1}^T mu_{t+1} is a linear recurrence, solved backwards by the same
  associative scan (exactly: of J's diagonal for a diagonal Jacobian, of the [S, S]
  matrices with the full one; with the diagonal of a full Jacobian it is iterated, one
  batched VJP an iteration, under the same cap and tolerance, relative to the adjoint's
  size, and finished by `lax.scan` if it has not converged); then every step's
  parameter and input gradients come from one batched VJP.

Padding keeps the carry (the step's map is the identity: coefficient 1), a packed row's
new sequence starts from the initial carry (coefficient 0), as in the other loops.
"""

import functools
import itertools

import jax
import jax.numpy as jnp

from seqrnn.cells import hidden_state


def linear_scan(a, b, h0):
  """h_t = a_t * h_{t-1} + b_t for t = 0..T-1 from h_{-1} = h0, all at once.
  a, b: [time, batch, S]; h0: [batch, S]. Returns h [time, batch, S]."""
  b = b.at[0].add(a[0] * h0)  # h0 folded into the first step
  a = a.at[0].set(0.0)

  def combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2

  return jax.lax.associative_scan(combine, (a, b), axis=0)[1]


def _masked(a, b, h0, real, resets):
  """Coefficients with padding (keep h: a=1, b=0) and packed rows' starts (from h0)."""
  a = jnp.where(real, a, jnp.ones((), a.dtype))
  b = jnp.where(real, b, jnp.zeros((), b.dtype))
  if resets is not None:
    b = jnp.where(resets, a * h0 + b, b)
    a = jnp.where(resets, jnp.zeros((), a.dtype), a)
  return a, b


def linear_layer(cell, x_tbf, real, carry0, resets):
  """(final carry, outputs [time, batch, H]) of a cell linear in its state."""
  x_proj = cell.project(x_tbf)
  a, b = cell.linear_coefficients(x_proj)
  dtype = carry0.dtype
  a, b = _masked(a.astype(dtype), b.astype(dtype), carry0, real, resets)
  h = linear_scan(a, b, carry0)
  return h[-1], jnp.where(real, h, jnp.zeros((), h.dtype)).astype(cell.dtype or dtype)


# --- Newton's method on the trajectory (DEER) ---------------------------------------

def _flatten(carry):
  leaves = jax.tree.leaves(carry)
  return jnp.concatenate(leaves, -1), (jax.tree.structure(carry), [l.shape[-1] for l in leaves],
                                       [l.dtype for l in leaves])


def _unflatten(s, spec):
  tree, sizes, dtypes = spec
  parts = jnp.split(s, list(itertools.accumulate(sizes))[:-1], -1)
  return jax.tree.unflatten(tree, [p.astype(d) for p, d in zip(parts, dtypes)])


FULL_UP_TO = 32  # jacobian='auto': the full Jacobian for states of at most this many units


def newton_layer(cell, x_tbf, real, carry0, resets, *, iterations, tol, jacobian='auto'):
  """(final carry, outputs [time, batch, H], Newton iterations taken (past `iterations`:
  finished sequentially)) of any cell, by DEER. Call inside the owning module.

  `jacobian`: 'diagonal' (quasi-Newton: each iteration one elementwise scan), 'full'
  (Newton: a scan of [S, S] matrices, O(S^3) a combination, fewer iterations), 'auto'
  (full for a state of at most FULL_UP_TO units, else diagonal; diagonal for a cell whose
  Jacobian is diagonal, where it is exact)."""
  projected = hasattr(cell, 'project') and hasattr(cell, 'step_projected')
  xs = cell.project(x_tbf) if projected else x_tbf
  step_name = 'step_projected' if projected else '__call__'
  getattr(cell, step_name)(carry0, xs[0])  # creates the step's parameters when initialising
  module, variables = cell.unbind()
  s0, spec = _flatten(carry0)
  if jacobian not in ('auto', 'diagonal', 'full'):
    raise ValueError(f"parallel_jacobian={jacobian!r} is not one of ['auto', 'diagonal', 'full']")
  if getattr(type(cell), 'diagonal_state_jacobian', False):
    how = 'exact diagonal'
  elif jacobian == 'auto':
    how = 'full' if s0.shape[-1] <= FULL_UP_TO else 'diagonal'
  else:
    how = jacobian

  def step(v, s, x):
    new, _ = module.apply(v, _unflatten(s, spec), x, method=getattr(type(module), step_name))
    return _flatten(new)[0].astype(s.dtype)

  diagonal = None  # the Jacobian's diagonal by S JVPs, unless the cell gives it cheaper
  if how == 'diagonal' and projected and getattr(type(cell), 'elementwise_gates', False):
    def diagonal(v, s, x):
      d = module.apply(v, _unflatten(s, spec), x, method=type(module).state_jacobian_diagonal)
      return _flatten(d)[0].astype(s.dtype)

  no_reset = jnp.zeros(real.shape, bool) if resets is None else resets
  states, taken = _solve(step, diagonal, how, iterations, tol, variables, s0, xs, real,
                         no_reset)
  carry = _unflatten(states[-1], spec)
  outputs = hidden_state(jax.vmap(lambda s: _unflatten(s, spec))(states))
  outputs = jnp.where(real, outputs, jnp.zeros((), outputs.dtype))
  return carry, outputs, taken


def _masked_step(step, v, s, x, real, reset, s0):
  """One step as every loop takes it: from s0 at a packed row's start, the identity on padding."""
  return jnp.where(real, step(v, jnp.where(reset, s0, s), x), s)


def _masked_diagonal(diagonal, v, s, x, real, reset, s0):
  """The Jacobian diagonal of `_masked_step`: 0 where a packed row's sequence starts (the
  step reads s0), 1 on padding (the identity)."""
  d = jnp.where(reset, jnp.zeros((), s.dtype), diagonal(v, jnp.where(reset, s0, s), x))
  return jnp.where(real, d, jnp.ones((), s.dtype))


def _each(fn, v, prevs, xs, real, resets, s0):
  """`fn` (_masked_step or _masked_diagonal of a step) at every step at once."""
  return jax.vmap(functools.partial(fn, v), (0, 0, 0, 0, None))(prevs, xs, real, resets, s0)


def _diagonals(diagonal, v, xs, real, resets, s0):
  """prevs -> the masked Jacobian diagonal at every step, of a cell that gives it; None
  for one that does not."""
  return diagonal and (lambda prevs: _each(functools.partial(_masked_diagonal, diagonal), v,
                                           prevs, xs, real, resets, s0))


def _sequential(step, v, s0, xs, real, resets):
  def body(s, inputs):
    new = _masked_step(step, v, s, *inputs, s0)
    return new, new
  return jax.lax.scan(body, s0, (xs, real, resets))[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _solve(step, diagonal, how, iterations, tol, v, s0, xs, real, resets):
  return _newton(step, diagonal, how, iterations, tol, v, s0, xs, real, resets)


def matrix_scan(a, b, h0):
  """h_t = a_t @ h_{t-1} + b_t from h_{-1} = h0, all at once: a [time, batch, S, S]."""
  b = b.at[0].add(jnp.einsum('bij,bj->bi', a[0], h0))
  a = a.at[0].set(0.0)

  def combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a2 @ a1, jnp.einsum('...ij,...j->...i', a2, b1) + b2

  return jax.lax.associative_scan(combine, (a, b), axis=0)[1]


def _jacobian(f, prev, how, diagonal=None):
  """d f(prev)_t / d prev_t of a function acting on each step alone: its diagonal
  [time, batch, S] (`diagonal(prev)` where given), or all of it [time, batch, S, S] for
  how='full'."""
  if diagonal is not None and how == 'diagonal':
    return diagonal(prev)
  along = lambda tangent: jax.jvp(f, (prev,), (tangent,))[1]
  if how == 'exact diagonal':  # the Jacobian is diagonal: its product with ones is it
    return along(jnp.ones_like(prev))
  # One product a unit (S of them, one after another): column j of every step's Jacobian.
  units = jnp.eye(prev.shape[-1], dtype=prev.dtype)
  if how == 'full':
    return jnp.moveaxis(jax.lax.map(lambda e: along(jnp.broadcast_to(e, prev.shape)),
                                    units), 0, -1)
  return jnp.moveaxis(jax.lax.map(lambda e: along(jnp.broadcast_to(e, prev.shape)) @ e,
                                  units), 0, -1)  # no [S, S] matrix held


def _newton(step, diagonal, how, iterations, tol, v, s0, xs, real, resets):
  """(states [time, batch, S], iterations taken) by (quasi-)Newton on the trajectory."""
  per_step = lambda prevs: _each(functools.partial(_masked_step, step), v, prevs, xs, real,
                                 resets, s0)
  diagonals = _diagonals(diagonal, v, xs, real, resets, s0)

  shift = lambda s: jnp.concatenate([s0[None], s[:-1]])  # s_{t-1} of every step

  def evaluated(s):
    """(f_t = F(s_{t-1}) of every step, the largest residual |s_t - f_t|: inf where not finite)."""
    f = per_step(shift(s))
    return f, _largest(s - f)

  def iterate(state):
    k, s, f, _ = state
    prev = shift(s)
    j = _jacobian(per_step, prev, how, diagonals).astype(s.dtype)
    if how == 'full':
      new = matrix_scan(j, f - jnp.einsum('...ij,...j->...i', j, prev), s0)
    else:
      new = linear_scan(j, f - j * prev, s0)
    return k + 1, new, *evaluated(new)

  # Converged when the trajectory solves its equations; a non-finite iterate (the linear
  # recurrence's products overflow where the Jacobian exceeds 1) ends the loop unconverged.
  guess = per_step(jnp.broadcast_to(s0, xs.shape[:1] + s0.shape))
  k, s, _, residual = jax.lax.while_loop(
      lambda st: (st[0] < iterations) & (st[3] > tol) & jnp.isfinite(st[3]), iterate,
      (jnp.int32(0), guess, *evaluated(guess)))
  converged = residual <= tol
  s = jax.lax.cond(converged, lambda: s, lambda: _sequential(step, v, s0, xs, real, resets))
  return s, jnp.where(converged, k, iterations + 1)


def _largest(d):
  """max |d|, inf if any element is not finite (XLA's max may pass a NaN over)."""
  return jnp.max(jnp.where(jnp.isfinite(d), jnp.abs(d), jnp.inf))


def _solve_fwd(step, diagonal, how, iterations, tol, v, s0, xs, real, resets):
  states, taken = _newton(step, diagonal, how, iterations, tol, v, s0, xs, real, resets)
  return (states, taken), (v, s0, xs, real, resets, states)


def _solve_bwd(step, diagonal, how, iterations, tol, residuals, cotangents):
  """Gradients at the converged trajectory: the adjoint recurrence solved at once, then
  one batched VJP of every step."""
  v, s0, xs, real, resets, states = residuals
  g = cotangents[0]
  prevs = jnp.concatenate([s0[None], states[:-1]])
  each = lambda v, p, xs, s0: _each(functools.partial(_masked_step, step), v, p, xs, real,
                                    resets, s0)
  shifted = lambda a: jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])  # a_{t+1}, 0 at the end
  backwards = lambda a: jnp.flip(a, 0)
  # mu_t = g_t + J_{t+1}^T mu_{t+1}: run from the end, it is h_k = A_k h_{k-1} + b_k.
  j = _jacobian(lambda p: each(v, p, xs, s0), prevs, how,
                _diagonals(diagonal, v, xs, real, resets, s0))
  if how == 'full':
    a = backwards(shifted(jnp.swapaxes(j, -1, -2)))
    return (*_gradients(each, v, prevs, xs, s0,
                        backwards(matrix_scan(a, backwards(g), jnp.zeros_like(s0)))), None, None)
  a = backwards(shifted(j))
  diagonal_solve = lambda rest: backwards(linear_scan(a, backwards(g + rest), jnp.zeros_like(s0)))
  if how == 'exact diagonal':
    return (*_gradients(each, v, prevs, xs, s0, diagonal_solve(0.0)), None, None)

  _, transposed = jax.vjp(lambda p: each(v, p, xs, s0), prevs)  # mu -> (J_t^T mu_t,)

  def iterate(state):  # the rest of J^T from the last iterate: exact after T iterations
    k, mu, _ = state
    new = diagonal_solve(shifted(transposed(mu)[0] - j * mu))
    return k + 1, new, _largest(new - mu) / (jnp.max(jnp.abs(new)) + 1e-30)

  mu0 = diagonal_solve(0.0)
  _, mu, change = jax.lax.while_loop(
      lambda st: (st[0] < iterations) & (st[2] > tol) & jnp.isfinite(st[2]), iterate,
      (jnp.int32(0), mu0, jnp.array(jnp.finfo(mu0.dtype).max, mu0.dtype)))
  return (*jax.lax.cond(change <= tol, lambda: _gradients(each, v, prevs, xs, s0, mu),
                        lambda: _sequential_gradients(step, v, s0, xs, real, resets, prevs, g)),
          None, None)


def _gradients(each, v, prevs, xs, s0, mu):
  """(dv, ds0, dxs) of every step at once, from the adjoint mu [time, batch, S]."""
  _, vjp = jax.vjp(each, v, prevs, xs, s0)
  dv, dprevs, dxs, ds0 = vjp(mu)
  return dv, ds0 + dprevs[0], dxs


def _sequential_gradients(step, v, s0, xs, real, resets, prevs, g):
  """(dv, ds0, dxs): the sequential loop's gradient, one step after another from the end."""
  def body(carry, inputs):
    lam, dv, ds0 = carry
    g_t, prev, x, r, z = inputs
    _, vjp = jax.vjp(lambda v, s, x, s0: _masked_step(step, v, s, x, r, z, s0), v, prev, x, s0)
    dv_t, ds, dx, ds0_t = vjp(g_t + lam)
    return (ds, jax.tree.map(jnp.add, dv, dv_t), ds0 + ds0_t), dx

  zero_v = jax.tree.map(jnp.zeros_like, v)
  (lam, dv, ds0), dxs = jax.lax.scan(body, (jnp.zeros_like(s0), zero_v, jnp.zeros_like(s0)),
                                     (g, prevs, xs, real, resets), reverse=True)
  return dv, ds0 + lam, dxs


_solve.defvjp(_solve_fwd, _solve_bwd)
