"""Checks of what a researcher hands the modules, named by argument, value and rule.

Shapes and dtypes are checked whenever a module is called (they are static, also
under `jit`). Values are checked eagerly where they are concrete (outside `jit`).
Compiled code carries no value checks (they would add to every step, and keep
its program out of JAX's persistent compilation cache) unless it is traced
inside `checked`, which puts the same checks in with `jax.experimental.checkify`:

    err, (outputs, carries) = seqrnn.checked(jax.jit(stack.apply))(params, x, lengths, train=False)
    err.throw()  # raises naming the first failed check, if any

(A jitted function traced before without checks keeps its program: wrap it in
`checked` before its first call.)
"""

import contextvars
import functools
import numbers
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify


_CHECKING = contextvars.ContextVar('seqrnn_checking', default=False)


def checked(fn):
  """`fn` with the modules' value checks on, also under `jit`: returns (error, output);
  `error.throw()` raises the first failed check (`jax.experimental.checkify`)."""
  checkified = checkify.checkify(fn, errors=checkify.user_checks)

  @functools.wraps(fn)
  def run(*args, **kwargs):
    token = _CHECKING.set(True)  # read while fn is traced
    try:
      return checkified(*args, **kwargs)
    finally:
      _CHECKING.reset(token)
  return run


def _concrete(x):
  """x as numpy, or None where it is traced (under jit, vmap or grad)."""
  try:
    return np.asarray(x)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None


def lengths_of(lengths_or_mask, batch, num_steps, where):
  """int32 lengths [batch] from what a caller gives: None (every sequence fills the time
  axis, as `nn.RNN(seq_lengths=None)`), lengths [batch], or a boolean mask [batch, time]
  that is True on each sequence's real steps, which must come first (right padding)."""
  if lengths_or_mask is None:
    return jnp.full((batch,), num_steps, jnp.int32)
  given = jnp.asarray(lengths_or_mask)
  if given.dtype != jnp.bool_:
    check_lengths(given, batch, num_steps, where)
    return given
  if given.shape != (batch, num_steps):
    raise ValueError(f'{where}: the mask has shape {given.shape}; expected ({batch}, '
                     f'{num_steps}), [batch, time] like the inputs')
  lengths = given.sum(1, dtype=jnp.int32)
  values = _concrete(given)
  right_padded = given == (jnp.arange(num_steps)[None, :] < lengths[:, None])
  if values is not None:
    bad = np.argwhere(~np.asarray(right_padded))
    if len(bad):
      b, t = bad[0]
      raise ValueError(f'{where}: mask[{b}, {t}] is {values[b, t]}, but row {b} has '
                       f'{int(lengths[b])} real steps: a mask must be True on its first steps '
                       f'and False after them (right padding)')
  elif _CHECKING.get():
    checkify.debug_check(jnp.all(right_padded), f'{where}: a mask must be right-padded')
  check_lengths(lengths, batch, num_steps, where)
  return lengths


def check_lengths(lengths_b, batch, num_steps, where):
  """`lengths_b`: integers [batch], each in [1, num_steps] (a sequence has at least one
  real step and no more than the time axis holds)."""
  lengths_b = jnp.asarray(lengths_b) if not isinstance(lengths_b, jax.Array) else lengths_b
  if not jnp.issubdtype(lengths_b.dtype, jnp.integer):
    raise TypeError(f'{where}: lengths has dtype {lengths_b.dtype}; expected integers (the '
                    f'number of real steps of each sequence)')
  if lengths_b.shape != (batch,):
    raise ValueError(f'{where}: lengths has shape {lengths_b.shape}; expected ({batch},), one '
                     f'per sequence of the batch')
  if not batch:
    return  # an empty batch: the train step's guard refuses it
  values = _concrete(lengths_b)
  if values is None:
    if _CHECKING.get():
      checkify.debug_check(jnp.all((lengths_b >= 1) & (lengths_b <= num_steps)),
                           f'{where}: lengths must be in [1, {num_steps}] (the time axis); '
                           f'found one in [{{}}, {{}}]', lengths_b.min(), lengths_b.max())
    return
  bad = np.flatnonzero((values < 1) | (values > num_steps))
  if len(bad):
    raise ValueError(f'{where}: lengths[{bad[0]}] is {values[bad[0]]}; every length must be in '
                     f'[1, {num_steps}] (the time axis of the inputs; is the input time-major?)'
                     if values[bad[0]] > num_steps else
                     f'{where}: lengths[{bad[0]}] is {values[bad[0]]}; every length must be in '
                     f'[1, {num_steps}]: a sequence has at least one real step')


def check_segments(segments_bt, lengths_b, where):
  """`segments_bt` [batch, time]: 1, 2, ... along each packed row's real steps (non-decreasing,
  from 1, by steps of 0 or 1), 0 exactly at its padding (past `lengths`)."""
  if not jnp.issubdtype(jnp.asarray(segments_bt).dtype, jnp.integer):
    raise TypeError(f'{where}: segments has dtype {jnp.asarray(segments_bt).dtype}; expected '
                    f'integers')
  seg, lengths = _concrete(segments_bt), _concrete(lengths_b)
  if seg is None or lengths is None:
    return
  real = np.arange(seg.shape[1])[None, :] < lengths[:, None]
  step = np.diff(seg, axis=1)
  bad = (real != (seg > 0)) | np.concatenate(
      [(seg[:, :1] != 1) & real[:, :1], ((step < 0) | (step > 1)) & real[:, 1:]], axis=1)
  if bad.any():
    b, t = np.argwhere(bad)[0]
    raise ValueError(f'{where}: segments[{b}, {t}] is {seg[b, t]} with lengths[{b}]='
                     f'{lengths[b]}; segments count 1, 2, ... along a row\'s real steps (from 1, '
                     f'by steps of 0 or 1) and are 0 exactly past its length')


def check_rate(value, name, where):
  """A probability in [0, 1), where it is a number (an array, one per model under vmap,
  is the caller's)."""
  if isinstance(value, (int, float)) and not 0.0 <= value < 1.0:
    raise ValueError(f'{where}: {name}={value!r} must be in [0, 1)')


def check_positive(value, name, where):
  """An integer >= 1 (a count: units, layers, steps)."""
  if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
    raise ValueError(f'{where}: {name}={value!r} must be an integer >= 1')


def warn_changing(message):
  """A FutureWarning pointing at the researcher's line: the first frame outside
  seqrnn, Flax and JAX (a module's call goes through several of theirs)."""
  level, frame = 2, sys._getframe(1)
  while frame is not None and frame.f_globals.get('__name__', '').split('.')[0] in (
      'seqrnn', 'flax', 'jax', 'contextlib', 'functools'):
    level, frame = level + 1, frame.f_back
  warnings.warn(message, FutureWarning, stacklevel=level)
