"""What a batch is, and the checks that reject a bad one before any compile.

A batch (and a whole data set split) is a dict of numpy arrays:
  inputs   float [batch, time, features], or int tokens [batch, time];
           values at padded steps are ignored (they may even be NaN)
  lengths  int [batch], each in [1, time]
  labels   int [batch] (classification) or [batch, time] (labelling);
           values at padded steps are ignored; for CTC int [batch, max_labels],
           in [1, classes) (0 is the blank), with
  label_lengths int [batch] (CTC): each label sequence's length
  weights  optional float [batch]: 0 marks a padding example
  chars    optional int [batch, time, max_chars]: each token's character ids,
           0 past the word's end (token inputs only)
  segments optional int [batch, time], labelling only: a packed row holds
           several sequences end to end, numbered 1, 2, ... at their steps
           (0 at padding); each is read as if alone. `lengths` then counts a
           row's real steps, all its sequences together
"""

import jax.numpy as jnp
import numpy as np


def validate_batch(batch, *, task, num_classes, num_features=None, vocab_size=None,
                   num_chars=None, name='batch'):
  """Raises ValueError naming the array, the value found and what was expected."""
  for key in ('inputs', 'lengths', 'labels'):
    if key not in batch:
      raise ValueError(f'{name} has no {key!r} array (it has {sorted(batch)})')
  inputs = np.asarray(batch['inputs'])
  lengths = np.asarray(batch['lengths'])
  labels = np.asarray(batch['labels'])
  if inputs.shape[0] == 0:
    raise ValueError(f'{name} is empty: inputs has shape {inputs.shape}')
  tokens = vocab_size is not None
  want_rank = 2 if tokens else 3
  if inputs.ndim != want_rank:
    layout = '[batch, time] int tokens' if tokens else '[batch, time, features]'
    raise ValueError(f'{name}["inputs"] has shape {inputs.shape} (rank {inputs.ndim}); '
                     f'expected rank {want_rank}, {layout}')
  batch_size, num_steps = inputs.shape[:2]
  if tokens:
    if not np.issubdtype(inputs.dtype, np.integer):
      raise ValueError(f'{name}["inputs"] has dtype {inputs.dtype}; expected integer token ids')
    bad = (inputs < 0) | (inputs >= vocab_size)
    if bad.any():
      raise ValueError(f'{name}["inputs"] holds token id {inputs[bad][0]} at index '
                       f'{_where(bad)}; expected ids in [0, {vocab_size})')
  else:
    if not np.issubdtype(inputs.dtype, np.floating):
      raise ValueError(f'{name}["inputs"] has dtype {inputs.dtype}; expected floating features')
    if num_features is not None and inputs.shape[2] != num_features:
      raise ValueError(f'{name}["inputs"] has {inputs.shape[2]} features (shape {inputs.shape}); '
                       f'the model expects {num_features}')
  if lengths.shape != (batch_size,) or not np.issubdtype(lengths.dtype, np.integer):
    raise ValueError(f'{name}["lengths"] has shape {lengths.shape} and dtype {lengths.dtype}; '
                     f'expected int [{batch_size}]')
  bad = (lengths < 1) | (lengths > num_steps)
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f'{name}["lengths"][{i}] = {lengths[i]}; expected 1 <= length <= '
                     f'time = {num_steps}')
  real_bt = np.arange(num_steps)[None, :] < lengths[:, None]
  if not tokens:
    # Padded steps may hold anything (they change no result), real ones must be finite.
    bad = ~np.isfinite(inputs) & real_bt[..., None]
    if bad.any():
      raise ValueError(f'{name}["inputs"] holds {inputs[bad][0]} at index '
                       f'{_where(bad)}; expected finite values at real steps')
  if task == 'ctc':
    real, lowest = _validate_ctc_labels(batch, labels, lengths, name), 1
  else:
    want = (batch_size,) if task == 'classification' else (batch_size, num_steps)
    if labels.shape != want or not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f'{name}["labels"] has shape {labels.shape} and dtype {labels.dtype}; '
                       f'expected int {list(want)} for task {task!r}')
    real, lowest = (np.ones(want, bool) if task == 'classification' else real_bt), 0
  bad = real & ((labels < lowest) | (labels >= num_classes))
  if bad.any():
    raise ValueError(f'{name}["labels"] holds {labels[bad][0]} at index '
                     f'{_where(bad)}; expected labels in [{lowest}, {num_classes})'
                     f'{" (0 is the blank)" if lowest else ""}')
  if 'chars' in batch:
    chars = np.asarray(batch['chars'])
    if (chars.ndim != 3 or chars.shape[:2] != (batch_size, num_steps)
        or not np.issubdtype(chars.dtype, np.integer)):
      raise ValueError(f'{name}["chars"] has shape {chars.shape} and dtype {chars.dtype}; '
                       f'expected int [{batch_size}, {num_steps}, max_chars]')
    bad = (chars < 0) | (chars >= (num_chars or np.iinfo(chars.dtype).max))
    if bad.any():
      raise ValueError(f'{name}["chars"] holds character id {chars[bad][0]} at index '
                       f'{_where(bad)}; expected ids in [0, {num_chars})')
  if 'segments' in batch:
    _validate_segments(np.asarray(batch['segments']), real_bt, task, name)
  if 'weights' in batch and np.asarray(batch['weights']).shape != (batch_size,):
    raise ValueError(f'{name}["weights"] has shape {np.asarray(batch["weights"]).shape}; '
                     f'expected [{batch_size}]')


def _validate_segments(segments, real_bt, task, name):
  if task != 'labelling':
    raise ValueError(f'{name} has packed rows ("segments"); only the labelling task reads '
                     f'them (task {task!r} has one label per row)')
  if segments.shape != real_bt.shape or not np.issubdtype(segments.dtype, np.integer):
    raise ValueError(f'{name}["segments"] has shape {segments.shape} and dtype '
                     f'{segments.dtype}; expected int {list(real_bt.shape)}')
  step = np.diff(segments, axis=1, prepend=0)  # +1 where a sequence starts, 0 inside one
  bad = real_bt & (((step != 0) & (step != 1)) | (segments < 1)) | ~real_bt & (segments != 0)
  if bad.any():
    raise ValueError(f'{name}["segments"] holds {segments[bad][0]} at index {_where(bad)}; '
                     f'expected 1, 2, ... counting up by one at each new sequence of a row '
                     f'over its real steps (t < lengths), 0 past them')


def _validate_ctc_labels(batch, labels, lengths, name):
  """CTC's labels [batch, max_labels] and label_lengths: each label sequence fits in
  [1, max_labels] and its input is long enough to emit it (a label repeated next to
  itself needs a blank step between). Returns the real label positions."""
  if 'label_lengths' not in batch:
    raise ValueError(f'{name} has no "label_lengths" array: CTC labels are sequences of their '
                     f'own lengths (it has {sorted(batch)})')
  label_lengths = np.asarray(batch['label_lengths'])
  if (labels.ndim != 2 or labels.shape[0] != len(lengths)
      or not np.issubdtype(labels.dtype, np.integer)
      or label_lengths.shape != lengths.shape):
    raise ValueError(f'{name}["labels"] has shape {labels.shape} and dtype {labels.dtype}, '
                     f'"label_lengths" shape {label_lengths.shape}; expected int [batch, '
                     f'max_labels] and [batch] for task \'ctc\'')
  bad = (label_lengths < 1) | (label_lengths > labels.shape[1])
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f'{name}["label_lengths"][{i}] = {label_lengths[i]}; expected 1 <= length '
                     f'<= max_labels = {labels.shape[1]}')
  real = np.arange(labels.shape[1])[None, :] < label_lengths[:, None]
  repeats = (real[:, 1:] & (labels[:, 1:] == labels[:, :-1])).sum(1)
  short = lengths < label_lengths + repeats
  if short.any():
    i = int(np.argmax(short))
    raise ValueError(f'{name}: example {i} has {label_lengths[i]} labels ({repeats[i]} repeated '
                     f'next to itself, each needing a blank step between) in {lengths[i]} input '
                     f'steps: CTC needs at least {label_lengths[i] + repeats[i]} steps to emit '
                     f'them (read the input in smaller frames, or drop the example)')
  return real


def batch_is_valid(batch, num_classes):
  """The checks of `validate_batch` on values, as a traced scalar bool for use
  inside jit: a non-empty batch, lengths in [1, time], labels in
  [0, num_classes) at real steps. `train_step` applies no update where it is False.
  """
  lengths, labels = batch['lengths'], batch['labels']
  num_steps = batch['inputs'].shape[1]
  real = (jnp.ones(labels.shape, bool) if labels.ndim == 1
          else jnp.arange(labels.shape[1])[None, :] < batch.get('label_lengths', lengths)[:, None])
  labels_ok = (labels >= 0) & (labels < num_classes) | ~real
  return (jnp.asarray(lengths.size > 0) & jnp.all((lengths >= 1) & (lengths <= num_steps))
          & jnp.all(labels_ok))


def _where(bad):
  """The index of the first True of `bad`, as a tuple of ints."""
  return tuple(int(i) for i in np.argwhere(bad)[0])
