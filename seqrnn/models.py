"""Whole models: inputs -> RNN stack -> a softmax layer (logits)."""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from seqrnn.stack import RNNStack


class Encoder(nn.Module):
  """Float features `[batch, time, features]`, or int tokens `[batch, time]`
  through an embedding of `embed_dim` (when `vocab_size` is set), then the stack.
  """
  stack: RNNStack
  vocab_size: Optional[int] = None
  embed_dim: int = 64

  @nn.compact
  def __call__(self, inputs, lengths_b, *, train):
    if self.vocab_size is not None:
      inputs = nn.Embed(self.vocab_size, self.embed_dim, name='embed')(inputs)
    outputs_bth, _ = self.stack(inputs, lengths_b, train=train)
    return outputs_bth


class Classifier(nn.Module):
  """One label per sequence, from the top layer's last real output (`lengths-1`).

  Returns logits `[batch, num_classes]`.
  """
  encoder: Encoder
  num_classes: int

  @nn.compact
  def __call__(self, inputs, lengths_b, *, train=False):
    outputs_bth = self.encoder(inputs, lengths_b, train=train)
    last_bh = jnp.take_along_axis(outputs_bth, (lengths_b - 1)[:, None, None], axis=1)[:, 0]
    return nn.Dense(self.num_classes, name='head')(last_bh.astype(jnp.float32))


class Labeller(nn.Module):
  """One label per timestep, one dense layer shared across time.

  Returns logits `[batch, time, num_classes]`.
  """
  encoder: Encoder
  num_classes: int

  @nn.compact
  def __call__(self, inputs, lengths_b, *, train=False):
    outputs_bth = self.encoder(inputs, lengths_b, train=train)
    return nn.Dense(self.num_classes, name='head')(outputs_bth.astype(jnp.float32))


MODELS = {'classification': Classifier, 'labelling': Labeller}


def build_model(task, model_config, *, num_classes, vocab_size=None):
  """The model for `task` ('classification' | 'labelling') from `config.model`."""
  stack = RNNStack(cell=model_config.cell, hidden_size=model_config.hidden_size,
                   num_layers=model_config.num_layers,
                   dropout_rate=model_config.dropout_rate,
                   dtype=jnp.dtype(model_config.dtype), unroll=model_config.unroll)
  encoder = Encoder(stack, vocab_size=vocab_size, embed_dim=model_config.embed_dim)
  return MODELS[task](encoder, num_classes)
