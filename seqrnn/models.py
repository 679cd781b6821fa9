"""Whole models: inputs -> RNN stack -> a softmax layer (logits)."""

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrnn import augment, checks, crf
from seqrnn.conv import ConvFrontEnd, pooled_lengths
from seqrnn.masks import time_mask
from seqrnn.stack import RNNStack
from seqrnn.words import WordEmbedding

POOLINGS = ('last', 'mean', 'max', 'attention')
HEADS = ('softmax', 'crf')


class Encoder(nn.Module):
  """Float features `[batch, time, features]`, through `conv` where there is one, or int
  tokens `[batch, time]` (with their characters `chars` [batch, time, max_chars] where the
  embedding reads them) through `words`, then the stack; `segments` [batch, time] for
  packed rows (`seqrnn.batch`).

  Returns the top layer's outputs [batch, time', width]: time' = ceil(time / conv.pool),
  time without a pooling front end.
  """
  stack: RNNStack
  words: Optional[WordEmbedding] = None
  conv: Optional[ConvFrontEnd] = None

  @nn.compact
  def __call__(self, inputs, lengths_b, *, train, chars=None, segments=None):
    if self.words is not None:
      inputs = self.words(inputs, chars, train=train)
    if self.conv is not None:
      if segments is not None:  # a convolution would read across a packed row's sequences
        raise ValueError('Encoder: a convolutional front end reads one sequence per row; '
                         'packed rows (segments) are not supported: set config.data.pack=False')
      inputs, lengths_b = self.conv(inputs, lengths_b)
    return self.stack(inputs, lengths_b, train=train, segments_bt=segments, return_carry=False)


def pool(outputs_bth, lengths_b, how='last', *, bidirectional=False):
  """One vector per sequence from its real steps: 'last' (the output at
  `lengths - 1`), 'mean' or 'max'. Returns [batch, hidden].

  `bidirectional`: the outputs are a bidirectional stack's, [forward | backward]
  concatenated; each half is pooled on its own, and the backward half's 'last'
  is its step 0 (reading backwards, a sequence ends there). `lengths_b` may also be
  a right-padded boolean mask [batch, time] or None (full length)."""
  lengths_b = checks.lengths_of(lengths_b, outputs_bth.shape[0], outputs_bth.shape[1], 'pool')
  if bidirectional:
    forward, backward = jnp.split(outputs_bth, 2, axis=-1)
    backward = backward[:, 0] if how == 'last' else pool(backward, lengths_b, how)
    return jnp.concatenate([pool(forward, lengths_b, how), backward], -1)
  if how == 'last':
    return jnp.take_along_axis(outputs_bth, (lengths_b - 1)[:, None, None], axis=1)[:, 0]
  real = time_mask(lengths_b, outputs_bth.shape[1]).transpose(1, 0, 2)  # [batch, time, 1]
  if how == 'mean':
    return (outputs_bth * real).sum(1) / lengths_b[:, None].astype(outputs_bth.dtype)
  if how == 'max':
    return jnp.where(real, outputs_bth, -jnp.inf).max(1)
  if how == 'attention':
    raise ValueError("pooling='attention' has a parameter (its query): use "
                     "seqrnn.AttentionPooling, or Classifier(pooling='attention')")
  raise ValueError(f'pooling={how!r} is not one of {list(POOLINGS)}')


class AttentionPooling(nn.Module):
  """One vector per sequence, its real steps weighted by a learned query q [width]:

    a_t = softmax over t < length of (o_t . q / sqrt(width)),   pooled = sum_t a_t o_t

  Padded steps get no weight, whatever they hold. q starts at zero, so a fresh model
  pools by the mean. outputs [batch, time, width], lengths [batch] (or a mask, or
  None) -> [batch, width], float32.
  """

  @nn.compact
  def __call__(self, outputs_bth, lengths_b=None):
    batch, num_steps, width = outputs_bth.shape
    lengths_b = checks.lengths_of(lengths_b, batch, num_steps, 'AttentionPooling')
    query = self.param('query', nn.initializers.zeros_init(), (width,), jnp.float32)
    real_bt = jnp.arange(num_steps)[None, :] < lengths_b[:, None]
    outputs = jnp.where(real_bt[..., None], outputs_bth.astype(jnp.float32), 0.0)
    weights_bt = jax.nn.softmax(outputs @ query / jnp.sqrt(width), axis=-1, where=real_bt)
    return jnp.einsum('bt,btw->bw', jnp.where(real_bt, weights_bt, 0.0), outputs)


class Classifier(nn.Module):
  """One label per sequence, from the top layer's outputs pooled over the real
  steps (`pooling`: 'last', 'mean', 'max' or 'attention', `AttentionPooling`).
  With a bidirectional stack 'last' is the forward direction's output at
  `lengths - 1` and the backward direction's at step 0 (its last), merged as the
  stack merges directions.

  `crop` > 0: in training, each sequence is cut to a random window of at least
  (1 - crop) of its real steps (`seqrnn.augment.random_crop`); evaluation reads it whole.

  Returns logits `[batch, num_classes]`.
  """
  encoder: Encoder
  num_classes: int
  pooling: str = 'last'
  crop: float = 0.0

  @nn.compact
  def __call__(self, inputs, lengths_b, *, train=False, chars=None, segments=None):
    if segments is not None:
      raise ValueError('a Classifier reads one sequence per row; packed rows (segments) '
                       'are for labelling: set config.data.pack=False')
    if not 0.0 <= self.crop < 1.0:
      raise ValueError(f'Classifier: crop={self.crop!r} is the largest fraction of a sequence '
                       f'cut away; it must be in [0, 1)')
    if train and self.crop > 0:
      lengths_b, inputs, *chars = augment.random_crop(
          self.make_rng('dropout'), self.crop,
          checks.lengths_of(lengths_b, *inputs.shape[:2], 'Classifier'), inputs,
          *([] if chars is None else [chars]))
      chars = chars[0] if chars else None
    outputs_bth = self.encoder(inputs, lengths_b, train=train, chars=chars)
    if self.encoder.conv is not None:  # the steps the stack read: the front end's windows
      lengths_b = pooled_lengths(checks.lengths_of(lengths_b, *inputs.shape[:2], 'Classifier'),
                                 self.encoder.conv.pool)
    stack = self.encoder.stack
    if stack.bidirectional and stack.merge == 'sum' and stack.merge_top:
      raise ValueError("a Classifier pools each direction of a bidirectional stack on its "
                       "own: with merge='sum' the stack needs merge_top=False (as "
                       "build_model sets it)")
    if self.pooling == 'attention':
      pooled = AttentionPooling(name='attention')(outputs_bth, lengths_b)
    else:
      pooled = pool(outputs_bth, lengths_b, self.pooling, bidirectional=stack.bidirectional)
    if stack.bidirectional and stack.merge == 'sum':
      forward, backward = jnp.split(pooled, 2, axis=-1)
      pooled = forward + backward
    return nn.Dense(self.num_classes, name='head')(pooled.astype(jnp.float32))


class Labeller(nn.Module):
  """One label per timestep, one dense layer shared across time; `head='crf'` puts a
  linear-chain CRF over its scores (`seqrnn.crf`).

  Returns logits `[batch, time, num_classes]`, or `crf.CRFScores` with the CRF.
  """
  encoder: Encoder
  num_classes: int
  head: str = 'softmax'

  @nn.compact
  def __call__(self, inputs, lengths_b, *, train=False, chars=None, segments=None):
    if self.encoder.conv is not None and self.encoder.conv.pool > 1:
      raise ValueError(f'Labeller: a front end with pool={self.encoder.conv.pool} shortens each '
                       f'sequence; a label a step needs an output a step (pool=1)')
    outputs_bth = self.encoder(inputs, lengths_b, train=train, chars=chars, segments=segments)
    logits = nn.Dense(self.num_classes, name='head')(outputs_bth.astype(jnp.float32))
    if self.head == 'crf':
      return crf.CRF(self.num_classes, name='crf')(logits)
    if self.head != 'softmax':
      raise ValueError(f'Labeller: head={self.head!r} is not one of {list(HEADS)}')
    return logits


def build_model(task, model_config, *, num_classes, vocab_size=None, num_chars=None):
  """The model for `task` ('classification' | 'labelling') from `config.model`: its
  fields named as RNNStack's attributes go to the stack, `config.model.words` to the
  WordEmbedding of token inputs (`vocab_size`), with their characters (`num_chars`
  ids) where `model.words.char_encoder` reads them."""
  m, w = model_config, model_config.words
  if w.char_encoder != 'none' and not num_chars:
    raise ValueError(f'config.model.words.char_encoder={w.char_encoder!r} reads the characters '
                     f'of each word, and this data set has none (only treebanks, data.name '
                     f"'conllu' or 'turkish_pos', do); set config.model.words.char_encoder='none'")
  words = conv = None
  if vocab_size is not None:
    words = WordEmbedding(vocab_size, num_chars=num_chars or 0, **w)
  if m.conv.channels:
    if words is not None:
      raise ValueError(f'config.model.conv.channels={m.conv.channels}: a convolutional front end '
                       f'reads float series; this data set has tokens (model.words embeds them)')
    conv = ConvFrontEnd(**m.conv, dtype=jnp.dtype(m.dtype))
  classify = task == 'classification'
  names = {f.name for f in dataclasses.fields(RNNStack)}
  stack = RNNStack(**{k: v for k, v in m.items() if k in names and k != 'dtype'},
                   dtype=jnp.dtype(m.dtype), merge_top=not classify,
                   learned_initial_carry=m.initial_carry == 'learned')
  encoder = Encoder(stack, words, conv)
  if classify:
    return Classifier(encoder, num_classes, pooling=m.pooling, crop=m.crop)
  return Labeller(encoder, num_classes, head=m.head)
