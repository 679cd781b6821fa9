"""Recurrent cells: Flax cells with the documented equations, and a fast path.

A seqrnn cell is an ordinary Flax RNN cell (`flax.linen.RNNCellBase`):
`cell(carry, x) -> (carry, y)` for one step, `cell.initialize_carry(rng,
input_shape)` for the zero carry, so the stack runs it like any Flax cell,
and any Flax cell (`nn.LSTMCell`, `nn.GRUCell`, a user's own) runs in the
stack. Gates lie side by side along the last axis in the order of the
equations below (torch's order, so `torch.nn.GRU`/`LSTM` weights map onto
ours by a transpose: see `seqrnn.torch_weights`).

What a cell may add for seqrnn's loops is a protocol, each part a base class a
researcher can subclass, its docstring the one list of members and shapes:
`ProjectedCell` (an input projection for all steps at once, before the scan
loop; variational dropout) and `FusedCell` (the fused loop's hand-written
backward pass). `has_fused_loop` checks a cell against the second, completely:
config validation and the layer call it. The hidden state h of any carry is
read by `hidden_state` (and c by `cell_state`), whatever the cell.

Precision follows Flax: `dtype` is the computation's (matmuls and gate
activations), `param_dtype` the parameters' and the carry's (the state summed
into over every step stays in it; float32 by default). Gradients come back in
`param_dtype`, as the parameters are.
"""

import dataclasses
import functools
import importlib
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class LSTMState(NamedTuple):
  """The carry of an LSTM: `hidden` (h) and `cell` (c), each `[batch, hidden]`."""
  hidden: jax.Array
  cell: jax.Array


def _split(gates, n):
  """Splits `[..., n * hidden]` into n arrays `[..., hidden]`."""
  return jnp.split(gates, n, axis=-1)


def accumulation_dtype(dtype):
  """The dtype gradients are summed in: float32, or wider if `dtype` is (float64)."""
  return jnp.promote_types(jnp.float32, dtype)


def _hidden_by_steps(h_prev_tbh, d_gates_tbg):
  """sum over time and batch of h^T d_gates: [hidden, gates], one big matmul."""
  return jnp.einsum('tbh,tbg->hg', h_prev_tbh, d_gates_tbg.astype(h_prev_tbh.dtype),
                    preferred_element_type=accumulation_dtype(d_gates_tbg.dtype))


def _is_pair(carry):
  return type(carry) is tuple and len(carry) == 2  # Flax's LSTM cells: (c, h)


def hidden_state(carry):
  """h [batch, H] of any cell's carry: the carry itself (GRU and most cells), its
  `hidden` field (seqrnn's `LSTMState(hidden, cell)`), or the second of a pair
  (Flax's LSTM cells' carry `(c, h)`)."""
  if hasattr(carry, 'hidden'):
    return carry.hidden
  if _is_pair(carry):
    return carry[1]
  if not hasattr(carry, 'shape'):
    raise ValueError(f'hidden_state: a carry is h alone, an LSTMState(hidden, cell) or Flax\'s '
                     f'(c, h) pair; this one is {jax.tree.structure(carry)}')
  return carry


def cell_state(carry):
  """c [batch, H] of an LSTM's carry (`LSTMState.cell`, the first of Flax's `(c, h)`);
  None for a carry that has none (h alone: GRU and most cells)."""
  if hasattr(carry, 'cell'):
    return carry.cell
  if _is_pair(carry):
    return carry[0]
  hidden_state(carry)  # names a carry of no known kind
  return None


def with_states(carry, hidden, cell=None):
  """`carry` with its h replaced by `hidden` (and its c by `cell`, unless None)."""
  if hasattr(carry, 'hidden'):
    return carry._replace(hidden=hidden, **({} if cell is None else {'cell': cell}))
  if _is_pair(carry):
    return (carry[0] if cell is None else cell, hidden)
  hidden_state(carry)
  return hidden


class ProjectedCell(nn.RNNCellBase):
  """A cell whose step splits into an input side, computed for every timestep at
  once, and the rest; `__call__` and `initialize_carry` (the Flax protocol) come
  from the two. A subclass gives:

    project(x [..., in]) -> x_proj [..., G*H]: the input side (e.g. x @ W_i + b_i)
    step_projected(carry, x_proj_t [batch, G*H], recurrent_mask=None) -> (carry, y [batch, H]):
        the step after the projection; `recurrent_mask` [batch, H] multiplies h where the
        recurrent matmul reads it (variational dropout, Gal & Ghahramani 2016)
    carry_from_zeros(zeros [batch, H]) -> carry (static; default: h alone)
  """
  features: int
  dtype: Any = jnp.float32        # the computation's (matmuls, gate activations)
  param_dtype: Any = jnp.float32  # the parameters' and the carry's
  num_gates: ClassVar[int]

  def __call__(self, carry, x):
    """One step of x [batch, in]: (new carry, output [batch, H])."""
    return self.step_projected(carry, self.project(x))

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    """The zero carry for inputs of `input_shape` [batch, in]."""
    del rng
    return self.carry_from_zeros(jnp.zeros(input_shape[:-1] + (self.features,),
                                           self.param_dtype))

  @staticmethod
  def carry_from_zeros(zeros):
    return zeros  # h alone; an LSTM's carry is LSTMState(h, c)

  @property
  def num_feature_axes(self):
    return 1


def _lstm_carry(zeros):
  return LSTMState(zeros, zeros)


class InputProjection(nn.Module):
  """x @ kernel + bias, computed as `nn.Dense` computes it (the same parameters,
  initialisers and names), whose parameters the fused loop can also take without
  a call (`params`), to project each step inside its loop."""
  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def params(self, in_features):
    """(kernel [in_features, features], bias [features]) in the compute dtype."""
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (in_features, self.features),
                        self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), self.param_dtype)
    return kernel.astype(self.dtype), bias.astype(self.dtype)

  def __call__(self, x):
    kernel, bias = self.params(x.shape[-1])
    return project(x, kernel, bias)


def project(x, kernel, bias):
  """x [..., in] @ kernel [in, out] + bias [out], in the kernel's dtype."""
  return jax.lax.dot_general(x.astype(kernel.dtype), kernel,
                             (((x.ndim - 1,), (0,)), ((), ()))) + bias


class FusedCell(ProjectedCell):
  """A cell with the fused loop's hand-written backward pass (`seqrnn.fused`).

  Its parameters are `input_projection` (kernel [in, G*H], bias [G*H]: nn.Dense's)
  and `recurrent_kernel` [H, G*H], `recurrent_bias` [G*H] (`init_recurrent_bias`),
  and its gates pre-activations are `x @ W_i + b_i + h @ W_h + b_h`, G arrays of
  [batch, H] side by side. It gives `project`, `step_projected`, and
    input_params(in_features) -> (w_i [in, G*H], b_i [G*H]) in the compute dtype
    recurrent_params()        -> (w_h [H, G*H], b_h [G*H]) in the compute dtype
  A subclass gives, as class members (static: the loop calls them on the class):
    num_gates: ClassVar[int]                          G
    output(carry) -> y [batch, H]                     the step's output (h)
    step(w_h, b_h, carry, x_gates, h_read=None) -> (carry, residuals)
        x_gates: the step's input projection as G arrays [batch, H] (projected
        before the loop they are scanned as G arrays: on XLA:CPU slicing one wide
        array per step costs more); `h_read`, if given, replaces h in the
        recurrent matmul only; residuals: what step_backward reads
    step_backward(w_h, residuals, d_carry) -> (d_previous_carry, d_x_proj_t [batch, G*H])
    grad_residuals(residuals) -> saved: the part of the residuals recurrent_grads reads
    recurrent_grads(saved, d_x_proj [time, batch, G*H]) -> (d_w_h, d_b_h), over all steps
  `has_fused_loop` refuses a subclass that lacks one of them, naming it; one with
  none of the backward three runs in the scan loop (its gradient by autodiff).
  `experiments/custom_cell.py` (the README's) is a whole example. A subclass whose gate
  g of unit i reads only column g*H + i of h @ W_h, elementwise, may set
  `elementwise_gates = True`: `impl='parallel'` then takes its quasi-Newton Jacobian
  diagonal from `state_jacobian_diagonal` (one JVP per carry array, not one per unit).
  """
  num_gates: ClassVar[int]
  output = step = step_backward = grad_residuals = recurrent_grads = None  # a subclass's
  elementwise_gates: ClassVar[bool] = False

  def setup(self):
    gates = self.num_gates * self.features
    self.input_projection = InputProjection(gates, dtype=self.dtype,
                                            param_dtype=self.param_dtype)
    self.recurrent_kernel = self.param('recurrent_kernel', nn.initializers.orthogonal(),
                                       (self.features, gates), self.param_dtype)
    self.recurrent_bias = self.param('recurrent_bias', self.init_recurrent_bias, (gates,),
                                     self.param_dtype)

  def project(self, x):
    """x [..., in] -> x @ W_i + b_i [..., G*H]."""
    return self.input_projection(x)

  def input_params(self, in_features):
    """(w_i [in, G*H], b_i [G*H]) in the compute dtype."""
    return self.input_projection.params(in_features)

  def recurrent_params(self):
    return self.recurrent_kernel.astype(self.dtype), self.recurrent_bias.astype(self.dtype)

  def step_projected(self, carry, x_proj, recurrent_mask=None):
    """One step from the projected input x_proj [batch, G*H]: (new carry, output)."""
    w_h, b_h = self.recurrent_params()
    h_read = None if recurrent_mask is None else self.output(carry) * recurrent_mask
    new, _ = self.step(w_h, b_h, carry, tuple(_split(x_proj, self.num_gates)), h_read)
    return new, self.output(new)

  @staticmethod
  def init_recurrent_bias(key, shape, dtype):
    return jnp.zeros(shape, dtype)

  def state_jacobian_diagonal(self, carry, x_proj):
    """d carry'_i / d carry_i of `step_projected`: the diagonal of the state Jacobian
    (seqrnn.parallel's quasi-Newton), carry-shaped, by one JVP per carry array instead of
    one per unit. For `elementwise_gates` cells: unit i's own weight w_h[i, g*H + i] in
    each gate g enters as a tangent of the recurrent bias (h @ w_h + b_h moves as b_h
    does), the rest as a tangent of the carry with the matmul's input held."""
    w_h, b_h = self.recurrent_params()
    x_gates = tuple(_split(x_proj, self.num_gates))
    h = self.output(carry)
    own = jnp.concatenate([jnp.diagonal(w) for w in _split(w_h, self.num_gates)])
    leaves, tree = jax.tree.flatten(carry)
    new = lambda carry, b_h: jax.tree.leaves(self.step(w_h, b_h, carry, x_gates, h)[0])
    diagonal = []
    for k, leaf in enumerate(leaves):
      tangent = jax.tree.unflatten(tree, [jnp.ones_like(l) if j == k else jnp.zeros_like(l)
                                          for j, l in enumerate(leaves)])
      read = leaf is h  # the array the recurrent matmul reads
      _, dots = jax.jvp(new, (carry, b_h), (tangent, own if read else jnp.zeros_like(own)))
      diagonal.append(dots[k])
    return jax.tree.unflatten(tree, diagonal)


class GRUCell(FusedCell):
  """Gated recurrent unit with cuDNN's (and torch's) reset-after convention.

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

  Parameters: `input_projection` (kernel [in, 3*H] = [W_ir | W_iz | W_in]^T, bias
  [3*H]), `recurrent_kernel` [H, 3*H] = [W_hr | W_hz | W_hn]^T, `recurrent_bias`
  [3*H]. The carry is h `[batch, H]` (float32), which is also the output.
  """
  num_gates: ClassVar[int] = 3
  elementwise_gates: ClassVar[bool] = True

  @staticmethod
  def output(carry):
    return carry

  @staticmethod
  def step(w_h, b_h, h, x_gates, h_read=None):
    """`h_read`, if given, replaces h in the recurrent matmul only."""
    h_proj = (h if h_read is None else h_read).astype(w_h.dtype) @ w_h + b_h
    xr, xz, xn = x_gates
    hr, hz, hn = _split(h_proj, 3)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    new_h = ((1.0 - z) * n + z * h).astype(h.dtype)
    return new_h, (h, r, z, n, hn)

  @staticmethod
  def step_backward(w_h, residuals, d_new_h):
    acc = d_new_h.dtype  # the carry's: float32, or float64
    h, r, z, n, hn = (x.astype(acc) for x in residuals)
    d_n = d_new_h * (1.0 - z)
    d_an = d_n * (1.0 - n * n)                     # through tanh
    d_az = d_new_h * (h - n) * z * (1.0 - z)       # through sigmoid
    d_ar = d_an * hn * r * (1.0 - r)
    d_h_proj = jnp.concatenate([d_ar, d_az, d_an * r], -1)
    d_h = d_new_h * z + (d_h_proj.astype(w_h.dtype) @ w_h.T).astype(acc)
    return d_h, jnp.concatenate([d_ar, d_az, d_an], -1)

  @staticmethod
  def grad_residuals(residuals):
    return residuals[:2]  # h, r

  @staticmethod
  def recurrent_grads(saved, d_x_proj):
    h, r = saved
    d_ar, d_az, d_an = _split(d_x_proj, 3)
    d_h_proj = jnp.concatenate([d_ar, d_az, d_an * r.astype(d_x_proj.dtype)], -1)
    return _hidden_by_steps(h.astype(r.dtype), d_h_proj), d_h_proj.sum((0, 1))


class LSTMCell(FusedCell):
  """Long short-term memory cell, torch's equations and gate order (i, f, g, o).

    i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
    f  = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g  = tanh(W_ig x + b_ig + W_hg h + b_hg)
    o  = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g
    h' = o * tanh(c')

  Parameters: `input_projection` (kernel [in, 4*H], bias [4*H]), `recurrent_kernel`
  [H, 4*H] and `recurrent_bias` [4*H] (1 on the forget gate at initialisation, so
  that a fresh cell remembers). The carry is `LSTMState(hidden=h, cell=c)` (float32);
  the output is h.
  """
  num_gates: ClassVar[int] = 4
  elementwise_gates: ClassVar[bool] = True

  @staticmethod
  def init_recurrent_bias(key, shape, dtype):
    """Zeros with 1 on the forget gate, the second quarter of [i, f, g, o]."""
    del key
    hidden = shape[0] // 4
    return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)

  carry_from_zeros = staticmethod(_lstm_carry)

  @staticmethod
  def output(carry):
    return carry.hidden

  @staticmethod
  def step(w_h, b_h, carry, x_gates, h_read=None):
    """`h_read`, if given, replaces h in the recurrent matmul (its only use)."""
    h, c = carry
    hi, hf, hg, ho = _split((h if h_read is None else h_read).astype(w_h.dtype) @ w_h + b_h, 4)
    xi, xf, xg, xo = x_gates
    i, f = jax.nn.sigmoid(xi + hi), jax.nn.sigmoid(xf + hf)
    g, o = jnp.tanh(xg + hg), jax.nn.sigmoid(xo + ho)
    new_c = (f * c + i * g).astype(c.dtype)
    tanh_c = jnp.tanh(new_c)
    new_h = (o * tanh_c).astype(h.dtype)
    return LSTMState(new_h, new_c), (h, c, i, f, g, o, tanh_c)

  @staticmethod
  def step_backward(w_h, residuals, d_new):
    d_h, d_c = d_new
    h, c, i, f, g, o, tanh_c = (x.astype(d_c.dtype) for x in residuals)
    d_c = d_c + d_h * o * (1.0 - tanh_c * tanh_c)
    d_gates = jnp.concatenate([d_c * g * i * (1.0 - i), d_c * c * f * (1.0 - f),
                               d_c * i * (1.0 - g * g), d_h * tanh_c * o * (1.0 - o)], -1)
    d_prev_h = (d_gates.astype(w_h.dtype) @ w_h.T).astype(d_c.dtype)
    return LSTMState(d_prev_h, d_c * f), d_gates

  @staticmethod
  def grad_residuals(residuals):
    return (residuals[0].astype(residuals[2].dtype),)  # h, in the compute dtype

  @staticmethod
  def recurrent_grads(saved, d_x_proj):
    return _hidden_by_steps(saved[0], d_x_proj), d_x_proj.sum((0, 1))


class _LayerNormCell(ProjectedCell):
  """The input side of the layer-normalised cells: LN_x(W_i x) + b, and W_h."""

  def setup(self):
    gates = self.num_gates * self.features
    dtypes = {'dtype': self.dtype, 'param_dtype': self.param_dtype}
    self.input_projection = nn.Dense(gates, use_bias=False, **dtypes)
    self.input_norm = nn.LayerNorm(epsilon=1e-5, use_bias=False, **dtypes)
    self.recurrent_kernel = self.param('recurrent_kernel', nn.initializers.orthogonal(),
                                       (self.features, gates), self.param_dtype)
    self.bias = self.param('bias', self.init_bias, (gates,), self.param_dtype)
    self.setup_norms()

  def project(self, x):
    """x [..., in] -> LN_x(W_i x) + b [..., G*H]."""
    return self.input_norm(self.input_projection(x)) + self.bias.astype(self.dtype)

  def recurrent(self, h):
    """LN_h(W_h h) [batch, G*H]."""
    return self.recurrent_norm(h.astype(self.dtype) @ self.recurrent_kernel.astype(self.dtype))



def _masked(h, mask):
  return h if mask is None else h * mask


class LayerNormLSTMCell(_LayerNormCell):
  """LSTM with layer normalisation (Ba, Kiros and Hinton, 2016):

    [i, f, g, o] = LN_x(W_i x) + LN_h(W_h h) + b      (LN over all 4*H pre-activations)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h' = sigmoid(o) * tanh(LN_c(c'))

  LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) * scale + bias (LN_x and LN_h
  without bias: b is theirs). LN_x normalises each step on its own, so
  `project` computes it for all steps before the loop. The carry is
  `LSTMState(hidden, cell)`; no hand-written backward (the scan loop).
  """
  num_gates: ClassVar[int] = 4
  init_bias = staticmethod(LSTMCell.init_recurrent_bias)  # forget gate 1

  def setup_norms(self):
    dtypes = {'dtype': self.dtype, 'param_dtype': self.param_dtype}
    self.recurrent_norm = nn.LayerNorm(epsilon=1e-5, use_bias=False, **dtypes)
    self.cell_norm = nn.LayerNorm(epsilon=1e-5, **dtypes)

  def step_projected(self, carry, x_proj, recurrent_mask=None):
    h, c = carry
    i, f, g, o = _split(x_proj + self.recurrent(_masked(h, recurrent_mask)), 4)
    new_c = (jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)).astype(c.dtype)
    new_h = (jax.nn.sigmoid(o) * jnp.tanh(self.cell_norm(new_c))).astype(h.dtype)
    return LSTMState(new_h, new_c), new_h

  carry_from_zeros = staticmethod(_lstm_carry)


class LayerNormGRUCell(_LayerNormCell):
  """GRU with layer normalisation of both pre-activations (Ba et al., 2016),
  reset-after like `GRUCell`:

    [x_r, x_z, x_n] = LN_x(W_i x) + b,   [h_r, h_z, h_n] = LN_h(W_h h)   (LN over all 3*H)
    r = sigmoid(x_r + h_r),  z = sigmoid(x_z + h_z),  n = tanh(x_n + r * h_n)
    h' = (1 - z) * n + z * h

  LN as in `LayerNormLSTMCell`, but LN_h has a bias (it plays b_hn's part).
  """
  num_gates: ClassVar[int] = 3
  init_bias = staticmethod(nn.initializers.zeros_init())

  def setup_norms(self):
    self.recurrent_norm = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype,
                                       param_dtype=self.param_dtype)

  def step_projected(self, h, x_proj, recurrent_mask=None):
    hr, hz, hn = _split(self.recurrent(_masked(h, recurrent_mask)), 3)
    xr, xz, xn = _split(x_proj, 3)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    new_h = ((1.0 - z) * n + z * h).astype(h.dtype)
    return new_h, new_h


# Cells a config can name (`config.model.cell`). Flax's own cells are here under
# `flax_*`; any other importable cell class can be named by its dotted path.
CELLS = {
    'gru': GRUCell,
    'lstm': LSTMCell,
    'ln_gru': LayerNormGRUCell,
    'ln_lstm': LayerNormLSTMCell,
    'flax_gru': nn.GRUCell,
    'flax_lstm': nn.LSTMCell,
    'flax_optimized_lstm': nn.OptimizedLSTMCell,
    'flax_mgu': nn.MGUCell,
    'flax_simple': nn.SimpleCell,
}


# What the fused loop reads of a cell (FusedCell's docstring says what each is).
FUSED_LOOP_MEMBERS = ('num_gates', 'input_params', 'recurrent_params', 'output', 'step',
                      'step_backward', 'grad_residuals', 'recurrent_grads')


def has_fused_loop(cell):
  """Whether `cell` (a class or an instance) runs in the fused loop: True if it
  offers every member of FusedCell's protocol, False if it offers no backward
  pass; a cell that offers part of one raises ValueError naming what it lacks
  (it would otherwise run inference and fail at its first training step)."""
  cls = cell if isinstance(cell, type) else type(cell)
  missing = [m for m in FUSED_LOOP_MEMBERS if getattr(cls, m, None) is None]
  if all(m in missing for m in ('step_backward', 'grad_residuals', 'recurrent_grads')):
    return False
  if missing:
    raise ValueError(f'cell {cls.__name__} offers part of the fused loop\'s protocol '
                     f'(seqrnn.FusedCell) but lacks {missing}: give them (see FusedCell\'s '
                     f'docstring), or none of the backward pass to run in the scan loop')
  return True


def register_cell(name):
  """Class decorator: makes a cell class nameable as `config.model.cell=name`."""
  def register(cls):
    CELLS[name] = cls
    return cls
  return register


def resolve_cell(spec):
  """The cell class for `spec`: a class, a name in CELLS, or an importable dotted
  path (`package.module.Class` or `package.module:Class`)."""
  if not isinstance(spec, str):
    return spec
  if spec in CELLS:
    return CELLS[spec]
  module_name, sep, attr = spec.rpartition(':') if ':' in spec else spec.rpartition('.')
  if not sep or not module_name:
    raise ValueError(f'cell {spec!r} is not one of {sorted(CELLS)} nor a dotted path '
                     f'(package.module.Class) of a Flax cell')
  try:
    cls = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as e:
    raise ValueError(f'cell {spec!r} could not be imported ({e}); expected one of '
                     f'{sorted(CELLS)} or a dotted path package.module.Class') from None
  if not (isinstance(cls, type) and issubclass(cls, nn.Module)
          and hasattr(cls, 'initialize_carry')):
    raise ValueError(f'cell {spec!r} is {cls!r}, not a Flax cell class (a module with '
                     f'__call__(carry, x) -> (carry, y) and initialize_carry)')
  return cls


def make_cell(spec, features, dtype=jnp.float32, param_dtype=jnp.float32):
  """A cell of `features` units, unbound (it takes the name of the layer attribute
  it is given to). `spec`: a name in CELLS, a dotted path, a cell class (made with
  `features=features`, and `dtype`, `param_dtype` where it has them), a `functools.partial` of one (its
  own arguments kept, e.g. `partial(nn.GRUCell, gate_fn=...)`), or a cell instance
  (`nn.MGUCell(8)`: cloned as it is; its features must be `features`)."""
  if isinstance(spec, nn.Module):
    if getattr(spec, 'features', features) != features:
      raise ValueError(f'cell {type(spec).__name__} has features={spec.features}, but the stack '
                       f'has hidden_size={features}: give them the same value')
    return spec.clone(parent=None, name=None)
  made = spec.func if isinstance(spec, functools.partial) else resolve_cell(spec)
  if not (isinstance(made, type) and issubclass(made, nn.Module)):
    raise ValueError(f'cell {spec!r} is not a Flax cell class, instance, partial of a class, '
                     f'name in {sorted(CELLS)} or dotted path')
  fields = {f.name for f in dataclasses.fields(made)}
  if 'features' not in fields:
    raise ValueError(f'cell {made.__name__} has no `features` field: a cell takes its number '
                     f'of units as `features`, as Flax cells do')
  kwargs = {k: v for k, v in (('dtype', dtype), ('param_dtype', param_dtype)) if k in fields}
  if isinstance(spec, functools.partial):
    kwargs = {k: v for k, v in kwargs.items() if k not in spec.keywords}  # the partial's own
    return spec(features=features, parent=None, **kwargs)
  return made(features=features, parent=None, **kwargs)


# Registers min_gru, min_lstm, diag_gru and diag_lstm (they build on the classes above).
from seqrnn import parallel_cells  # noqa: E402,F401
