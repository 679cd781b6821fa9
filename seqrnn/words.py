"""Token inputs: a word embedding with word-type and word dropout, and a
character-aware word encoder (Plank et al. 2016; Lample et al. 2016).

Every random choice here is made per word type or per (sequence, step) with the
step's own key, `fold_in(key, t)`, so padding changes no mask a real word sees.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrnn import checks
from seqrnn.cells import hidden_state
from seqrnn.masks import per_step_bernoulli
from seqrnn.stack import RNNStack

CHAR_ENCODERS = ('none', 'lstm', 'cnn')
# Rows of each suffix table. Tamil-TTB's 2,637 training word types end in 642 distinct endings of
# 3 characters, Belarusian-HSE's 2,834 in 1,132: few of them share a row.
SUFFIX_BUCKETS = 2 ** 14


def suffix_ids(chars_btc, max_length):
  """Each word's last 1, ..., `max_length` characters as rows of tables of SUFFIX_BUCKETS:
  h = 0, then h = (257 h + c + 1) mod SUFFIX_BUCKETS for the characters c from the last
  one back (c = 0 before a word's first character, so a shorter word has its own
  ending); the k-th id is h after k characters. chars int [batch, time, chars], 0 past
  each word's end; returns int [batch, time, max_length]. Distinct endings can share a
  row (a hash, not a vocabulary)."""
  lengths = (chars_btc > 0).sum(-1)
  h, ids = jnp.zeros_like(lengths), []
  for back in range(max_length):
    at = lengths - 1 - back
    c = jnp.take_along_axis(chars_btc, jnp.maximum(at, 0)[..., None], -1)[..., 0]
    h = (h * 257 + jnp.where(at >= 0, c, 0) + 1) % SUFFIX_BUCKETS
    ids.append(h)
  return jnp.stack(ids, -1)


class CharEncoder(nn.Module):
  """One vector per word from its characters.

  'lstm': a bidirectional one-layer LSTM over each word's real characters, its
  forward carry after the last character and backward carry after the first,
  concatenated (2 * hidden_size). 'cnn': a width-3 convolution over the
  characters (padding characters are zero vectors, as is the convolution's own
  edge padding), then the max over the real characters (hidden_size).
  Either way a word's vector depends only on its own characters.
  """
  num_chars: int
  kind: str = 'lstm'
  embed_dim: int = 32
  hidden_size: int = 64

  @nn.compact
  def __call__(self, chars_btc):
    """chars: int [batch, time, chars], 0 past each word's end (a padded word is
    all zeros). Returns [batch, time, width]."""
    batch, time, width = chars_btc.shape
    chars_nc = chars_btc.reshape(batch * time, width)
    lengths_n = (chars_nc > 0).sum(-1)
    real_nc1 = (chars_nc > 0)[..., None]
    embed = nn.Embed(self.num_chars, self.embed_dim, name='char_embed')
    if self.kind == 'lstm':
      x_nce = jnp.where(real_nc1, embed(chars_nc), 0)
      # A padded word (no characters) reads one zero character; its vector is never used.
      stack = RNNStack(cell='lstm', hidden_size=self.hidden_size, bidirectional=True,
                       return_carry=True, name='char_lstm')
      ((forward, backward),), _ = stack(x_nce, jnp.maximum(lengths_n, 1))
      out = jnp.concatenate([hidden_state(forward), hidden_state(backward)], -1)
    elif self.kind == 'cnn':
      y = nn.relu(CharConv(self.hidden_size, name='char_conv')(chars_nc, embed.embedding))
      out = jnp.where(real_nc1, y, -jnp.inf).max(1)
      out = jnp.where(lengths_n[:, None] > 0, out, 0)
    else:
      raise ValueError(f'char_encoder={self.kind!r} is not one of {list(CHAR_ENCODERS[1:])}')
    return out.reshape(batch, time, -1)


class CharConv(nn.Module):
  """A width-3 convolution over embedded characters, zero-padded at both edges
  ('SAME'): ids [words, chars] and the embedding table [num_chars, embed_dim] ->
  [words, chars, features]. Id 0 (padding) embeds to the zero vector.

  It is `nn.Conv` (the same parameters, initialised alike) computed another way:
  what character c adds to the output at offset k is row c of the table
  `embedding @ kernel[k]`, so three lookups and a sum replace the convolution
  over every character slot, most of them padding (77% on the Turkish
  treebanks; the tagger's train step 5% faster on XLA:CPU, docs/speed.md).
  """
  features: int

  @nn.compact
  def __call__(self, chars_nc, embedding_ce):
    kernel_kef = self.param('kernel', nn.initializers.lecun_normal(),
                            (3, embedding_ce.shape[1], self.features))
    bias_f = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    tables_kcf = jnp.einsum('ce,kef->kcf', jnp.asarray(embedding_ce).at[0].set(0), kernel_kef)
    width = chars_nc.shape[1]
    padded = jnp.pad(chars_nc, ((0, 0), (1, 1)))  # id 0 past both edges
    return sum(tables_kcf[k][padded[:, k:k + width]] for k in range(3)) + bias_f


class WordEmbedding(nn.Module):
  """Token ids [batch, time] -> vectors [batch, time, embed_dim (+ char width)].

  In training, `embed_dropout` zeroes whole word types (one draw per type per
  batch, Gal & Ghahramani 2016, the kept ones scaled by 1/(1 - rate)) and
  `word_dropout` replaces each word by `unk_id` with that probability (so the
  unknown word's embedding is trained on real contexts). Where no training word
  is the unknown word (`data.treebank.min_count=1`, no `word_dropout`), its
  embedding keeps its initial value, which every word unseen in training reads
  (measured against zeros and against training it: docs/results.md). With
  `num_chars` and a `char_encoder`, each word's character vector is concatenated
  to its embedding; with `suffix_length` K too, an embedding (`suffix_embed_dim`)
  of each of its last 1, ..., K characters (`suffix_ids`), as feature-based
  taggers read suffixes: a word unseen in training mostly ends as seen ones do.
  """
  vocab_size: int
  embed_dim: int = 64
  embed_dropout: float = 0.0
  word_dropout: float = 0.0
  unk_id: int = 1
  num_chars: int = 0
  char_encoder: str = 'none'
  char_embed_dim: int = 32
  char_hidden_size: int = 64
  suffix_length: int = 0
  suffix_embed_dim: int = 32

  def __post_init__(self):
    """Attributes are checked when the embedding is made, naming the bad one."""
    for name in ('vocab_size', 'embed_dim', 'char_embed_dim', 'char_hidden_size',
                 'suffix_embed_dim'):
      checks.check_positive(getattr(self, name), name, 'WordEmbedding')
    for name in ('embed_dropout', 'word_dropout'):
      checks.check_rate(getattr(self, name), name, 'WordEmbedding')
    if self.char_encoder not in CHAR_ENCODERS:
      raise ValueError(f'WordEmbedding: char_encoder={self.char_encoder!r} is not one of '
                       f'{list(CHAR_ENCODERS)}')
    if self.char_encoder != 'none':
      checks.check_positive(self.num_chars, 'num_chars', f'WordEmbedding({self.char_encoder!r})')
    if self.suffix_length:
      checks.check_positive(self.suffix_length, 'suffix_length', 'WordEmbedding')
      if self.char_encoder == 'none':
        # Without a character encoder the model is called without characters: the
        # suffixes would be dropped silently.
        raise ValueError(f'WordEmbedding: suffix_length={self.suffix_length} reads the last '
                         f"characters of each word, which only a char_encoder's inputs carry; "
                         f"set char_encoder to 'lstm' or 'cnn', or suffix_length=0")
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens_bt, chars_btc=None, *, train):
    if train and self.word_dropout > 0:
      batch, time = tokens_bt.shape
      drop_tb = per_step_bernoulli(self.make_rng('dropout'), self.word_dropout, time, (batch,))
      tokens_bt = jnp.where(drop_tb.T, self.unk_id, tokens_bt)
    x = nn.Embed(self.vocab_size, self.embed_dim, name='embed')(tokens_bt)
    if train and self.embed_dropout > 0:
      keep = 1.0 - self.embed_dropout
      kept_v = jax.random.bernoulli(self.make_rng('dropout'), keep, (self.vocab_size,))
      x = jnp.where(kept_v[tokens_bt][..., None], x / keep, 0)
    if self.char_encoder == 'none':
      return x
    if chars_btc is None:
      raise ValueError(f"char_encoder={self.char_encoder!r} reads each word's characters: "
                       f"call the model with chars [batch, time, max_chars] (the data set's "
                       f"'chars' array)")
    chars = CharEncoder(self.num_chars, self.char_encoder, self.char_embed_dim,
                        self.char_hidden_size, name='chars')(chars_btc)
    parts = [x, chars.astype(x.dtype)]
    if self.suffix_length:
      ids = suffix_ids(chars_btc, self.suffix_length)
      parts += [nn.Embed(SUFFIX_BUCKETS, self.suffix_embed_dim, name=f'suffix_{k + 1}')(
          ids[..., k]) for k in range(self.suffix_length)]
    return jnp.concatenate(parts, -1)
