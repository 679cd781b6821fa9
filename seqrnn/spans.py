"""Spans of BIO tags (IOB2: `B-TYPE` begins a span, `I-TYPE` continues it, `O` is outside)
and the span F1 of predicted tags against the gold ones, as CoNLL's evaluation counts it: a
span is right when its type, first and last step all are; an `I-TYPE` that follows a step of
another type (or begins a sequence) begins a span, as conlleval reads it.
"""

import jax
import jax.numpy as jnp


def bio_tags(class_names):
  """(type of each class [C] (0: outside), whether it begins a span [C]) as tuples, from tag
  names 'O', 'B-TYPE', 'I-TYPE'; any other name is refused."""
  types, begins, names = [], [], {}
  for name in class_names:
    if name == 'O':
      types.append(0)
      begins.append(False)
      continue
    prefix, _, kind = name.partition('-')
    if prefix not in ('B', 'I') or not kind:
      raise ValueError(f"data.tag_scheme='bio': tag {name!r} is not 'O', 'B-TYPE' or 'I-TYPE' "
                       f"(the tags are {list(class_names)[:12]})")
    types.append(names.setdefault(kind, len(names) + 1))
    begins.append(prefix == 'B')
  return tuple(types), tuple(begins)


def _spans(tags_bt, real_bt, first_bt, types, begins):
  """(type [batch, time] (0 outside a span), span starts, span ends) of tag ids."""
  kind = jnp.where(real_bt, jnp.asarray(types)[tags_bt], 0)
  before = jnp.pad(kind[:, :-1], ((0, 0), (1, 0)))
  start = (kind > 0) & (jnp.asarray(begins)[tags_bt] | first_bt | (before != kind))
  after_kind = jnp.pad(kind[:, 1:], ((0, 0), (0, 1)))
  after_start = jnp.pad(start[:, 1:], ((0, 0), (0, 1)))
  end = (kind > 0) & ((after_kind != kind) | after_start)
  return kind, start, end


def span_counts(predicted_bt, gold_bt, real_bt, first_bt, w_b, types, begins):
  """(right predicted spans, predicted spans, gold spans), each weighted by its row's w_b.
  `first_bt`: where a sequence begins (a packed row holds several)."""
  p_kind, p_start, p_end = _spans(predicted_bt, real_bt, first_bt, types, begins)
  g_kind, g_start, g_end = _spans(gold_bt, real_bt, first_bt, types, begins)
  # A gold span is right when every one of its steps has the predicted type and starts
  # exactly where it does, and the prediction ends where it ends.
  agree = (p_kind == g_kind) & (p_start == g_start) & (~g_end | p_end)
  ids = jnp.where(g_kind > 0, jnp.cumsum(g_start.reshape(-1)).reshape(g_start.shape), 0)
  num = ids.size + 1
  wrong = jax.ops.segment_max((~agree & (g_kind > 0)).reshape(-1).astype(jnp.int32),
                              ids.reshape(-1), num_segments=num)
  starts_w = (g_start * w_b[:, None]).reshape(-1)
  right = jax.ops.segment_sum(starts_w, ids.reshape(-1), num_segments=num)  # each span's weight
  return ((wrong == 0) * right)[1:].sum(), (p_start * w_b[:, None]).sum(), starts_w.sum()
