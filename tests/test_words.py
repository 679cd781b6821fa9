"""Token inputs: the character-aware word encoder, word-type and word dropout,
and the treebank loader's character ids."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_model_config

from seqrnn import RNNStack
from seqrnn.config import default_config, validate_config
from seqrnn.data import conllu
from seqrnn.models import build_model
from seqrnn.words import SUFFIX_BUCKETS, CharConv, CharEncoder, WordEmbedding, suffix_ids

# Three sentences of words of 1-5 characters (ids 2..9); 0 pads words and characters.
CHARS = np.zeros((3, 4, 5), np.int32)
for (b, t), word in {(0, 0): [2, 3], (0, 1): [4, 5, 6, 7, 8], (0, 2): [9], (1, 0): [3, 3, 3],
                     (2, 0): [2], (2, 1): [8, 7], (2, 2): [6, 5, 4, 3], (2, 3): [9, 9]}.items():
  CHARS[b, t, :len(word)] = word


def _pad(chars, words=0, characters=0):
  return np.pad(chars, ((0, 0), (0, words), (0, characters)))


@pytest.mark.parametrize('kind', ['lstm', 'cnn'])
def test_padding_words_and_characters_changes_no_word_vector_or_gradient(kind):
  encoder = CharEncoder(num_chars=10, kind=kind, embed_dim=4, hidden_size=3)
  params = encoder.init(jax.random.key(0), CHARS)
  weights = np.random.default_rng(0).normal(size=(3, 4, 6 if kind == 'lstm' else 3))
  real = (CHARS > 0).any(-1)

  def loss(p, chars):
    out = encoder.apply(p, chars)[:, :4]
    return jnp.sum(jnp.where(real[..., None], out * weights, 0)), out

  (l1, out1), g1 = jax.value_and_grad(loss, has_aux=True)(params, CHARS)
  (l2, out2), g2 = jax.value_and_grad(loss, has_aux=True)(params, _pad(CHARS, 3, 6))
  np.testing.assert_allclose(out1[real], out2[real], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(l1, l2, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g2)


@pytest.mark.parametrize('kind', ['lstm', 'cnn'])
def test_a_words_vector_depends_on_its_own_characters_only(kind):
  encoder = CharEncoder(num_chars=10, kind=kind, embed_dim=4, hidden_size=3)
  params = encoder.init(jax.random.key(0), CHARS)
  neighbours = CHARS.copy()
  neighbours[2, [0, 1, 3]] = [[5, 5, 5, 5, 5], [2, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
  neighbours[[0, 1]] = neighbours[[1, 0]]  # and other sentences around it
  out1, out2 = encoder.apply(params, CHARS), encoder.apply(params, neighbours)
  np.testing.assert_allclose(out1[2, 2], out2[2, 2], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(out1[0, 1], out2[1, 1], rtol=1e-6, atol=1e-7)


def test_the_cnn_encoder_is_a_convolution_then_the_max_over_real_characters():
  encoder = CharEncoder(num_chars=10, kind='cnn', embed_dim=4, hidden_size=3)
  p = jax.tree.map(np.asarray, encoder.init(jax.random.key(0), CHARS)['params'])
  table, kernel, bias = (p['char_embed']['embedding'], p['char_conv']['kernel'],
                         p['char_conv']['bias'])  # kernel [3, in, out]
  out = encoder.apply({'params': p}, CHARS)
  for (b, t) in [(0, 0), (0, 1), (0, 2), (2, 2)]:
    ids = [c for c in CHARS[b, t] if c]
    x = np.pad(table[ids], ((1, 1), (0, 0)))  # the word alone, zero at both edges
    y = [np.maximum(sum(x[j + k] @ kernel[k] for k in range(3)) + bias, 0)
         for j in range(len(ids))]
    np.testing.assert_allclose(out[b, t], np.max(y, 0), rtol=1e-5, atol=1e-6)


def test_the_cnns_lookup_tables_are_flaxs_convolution_of_the_embedded_characters():
  class ConvOfEmbeddings(nn.Module):  # the textbook form, over every character slot
    @nn.compact
    def __call__(self, chars_nc):
      x = jnp.where((chars_nc > 0)[..., None], nn.Embed(10, 4, name='char_embed')(chars_nc), 0)
      return nn.Conv(3, (3,), padding='SAME', name='char_conv')(x)

  class Tables(nn.Module):
    @nn.compact
    def __call__(self, chars_nc):
      return CharConv(3, name='char_conv')(chars_nc, nn.Embed(10, 4, name='char_embed').embedding)

  chars = CHARS.reshape(-1, 5)
  reference, tables = ConvOfEmbeddings(), Tables()
  initial = reference.init(jax.random.key(0), chars)
  jax.tree.map(np.testing.assert_array_equal, tables.init(jax.random.key(0), chars), initial)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32), initial)
  weights = rng.normal(size=(len(chars), 5, 3))
  loss = lambda model: lambda p: jnp.sum(model.apply(p, chars) * weights)
  np.testing.assert_allclose(tables.apply(params, chars), reference.apply(params, chars),
                             rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               jax.grad(loss(tables))(params), jax.grad(loss(reference))(params))


def test_the_lstm_encoder_is_a_bidirectional_lstm_over_the_word_alone():
  encoder = CharEncoder(num_chars=10, kind='lstm', embed_dim=4, hidden_size=3)
  params = encoder.init(jax.random.key(0), CHARS)['params']
  out = encoder.apply({'params': params}, CHARS)
  stack = RNNStack(cell='lstm', hidden_size=3, bidirectional=True)
  table = params['char_embed']['embedding']
  for b, t in [(0, 1), (1, 0), (2, 0)]:
    ids = [c for c in CHARS[b, t] if c]
    x = table[np.array(ids)][None]
    ((forward, backward),), _ = stack.apply({'params': params['char_lstm']}, x,
                                            np.array([len(ids)]), return_carry=True)
    np.testing.assert_allclose(out[b, t], np.concatenate([forward.hidden[0], backward.hidden[0]]),
                               rtol=1e-5, atol=1e-6)


def test_word_type_dropout_drops_every_occurrence_of_a_type_together():
  embed = WordEmbedding(vocab_size=50, embed_dim=8, embed_dropout=0.5)
  tokens = np.tile(np.arange(2, 50), (3, 1)).astype(np.int32)  # each type once per row
  params = embed.init(jax.random.key(0), tokens, train=False)
  out = embed.apply(params, tokens, train=True, rngs={'dropout': jax.random.key(3)})
  plain = embed.apply(params, tokens, train=False)
  dropped = np.all(np.asarray(out) == 0, -1)  # [3, 48]
  assert np.all(dropped == dropped[0]) and 10 < dropped[0].sum() < 38
  np.testing.assert_allclose(np.asarray(out)[~dropped], 2 * np.asarray(plain)[~dropped], rtol=1e-6)


def test_word_dropout_replaces_words_by_the_unknown_word_independently_of_padding():
  embed = WordEmbedding(vocab_size=50, embed_dim=8, word_dropout=0.3, unk_id=1)
  tokens = np.random.default_rng(0).integers(2, 50, (16, 40)).astype(np.int32)
  params = embed.init(jax.random.key(0), tokens, train=False)
  table = np.asarray(params['params']['embed']['embedding'])
  key = {'dropout': jax.random.key(3)}
  out = np.asarray(embed.apply(params, tokens, train=True, rngs=key))
  unk = np.all(out == table[1], -1)
  assert np.all(out[~unk] == table[tokens[~unk]]) and 0.25 < unk.mean() < 0.35
  padded = np.pad(tokens, ((0, 0), (0, 9)))
  np.testing.assert_array_equal(embed.apply(params, padded, train=True, rngs=key)[:, :40], out)


def test_a_char_encoder_on_data_without_characters_is_refused_before_any_work():
  with pytest.raises(ValueError, match=r"char_encoder='cnn' reads the characters .* has none"):
    build_model('labelling', tiny_model_config(char_encoder='cnn'), num_classes=3, vocab_size=9)


def test_a_char_aware_tagger_joins_each_words_characters_to_its_embedding():
  model = build_model('labelling', tiny_model_config(char_encoder='cnn', char_hidden_size=5),
                      num_classes=3, vocab_size=11, num_chars=10)
  tokens = np.array([[3, 4, 1, 0], [2, 0, 0, 0], [5, 6, 7, 8]], np.int32)
  lengths = np.array([3, 1, 4], np.int32)
  params = model.init(jax.random.key(0), tokens, lengths, chars=CHARS)['params']
  kernel = params['encoder']['stack']['layer_0']['cell']['input_projection']['kernel']
  assert kernel.shape[0] == 6 + 5  # embed_dim + the character vector
  # An unknown word (id 1) with other spellings gets other vectors, and other tags.
  other = CHARS.copy()
  other[0, 2] = [7, 7, 2, 0, 0]
  logits1 = model.apply({'params': params}, tokens, lengths, chars=CHARS)
  logits2 = model.apply({'params': params}, tokens, lengths, chars=other)
  assert not np.allclose(logits1[0, 2], logits2[0, 2])


def _suffix_id(word, length):
  """The documented hash, written out: h = (257 h + c + 1) mod buckets over the last
  `length` characters from the last one back, c = 0 before the word's start."""
  h = 0
  for back in range(1, length + 1):
    c = word[-back] if back <= len(word) else 0
    h = (257 * h + c + 1) % SUFFIX_BUCKETS
  return h


@pytest.mark.parametrize('seed', [1, 2])
def test_suffix_ids_are_the_documented_hash_of_each_words_last_characters(seed):
  chars = np.random.default_rng(seed).integers(1, 5000, (6, 7, 9)).astype(np.int32)
  word_lengths = np.random.default_rng(0).integers(0, 10, (6, 7))
  chars[np.arange(9)[None, None, :] >= word_lengths[..., None]] = 0
  expected = [[[_suffix_id(list(chars[b, t, :word_lengths[b, t]]), k) for k in (1, 2, 3, 4)]
               for t in range(7)] for b in range(6)]
  np.testing.assert_array_equal(suffix_ids(jnp.asarray(chars), 4), expected)
  np.testing.assert_array_equal(suffix_ids(jnp.asarray(_pad(chars, 2, 3)), 4)[:, :7], expected)


def test_words_that_end_alike_share_their_suffix_vectors_and_no_other_part():
  embed = WordEmbedding(vocab_size=12, embed_dim=4, num_chars=10, char_encoder='cnn',
                        char_hidden_size=3, suffix_length=3, suffix_embed_dim=2)
  chars = np.zeros((1, 4, 5), np.int32)
  for t, word in enumerate([[2, 3, 4, 5, 6], [7, 4, 5, 6], [4, 5, 6], [5, 6]]):
    chars[0, t, :len(word)] = word
  tokens = np.array([[2, 3, 4, 5]], np.int32)
  params = embed.init(jax.random.key(0), tokens, chars, train=False)
  out = np.asarray(embed.apply(params, tokens, chars, train=False))[0]
  assert out.shape == (4, 4 + 3 + 3 * 2)  # word, characters, then suffixes of 1, 2 and 3
  s1, s2, s3 = out[:, 7:9], out[:, 9:11], out[:, 11:13]
  np.testing.assert_array_equal(s1, s1[[0]].repeat(4, 0))  # all end in 6
  np.testing.assert_array_equal(s2, s2[[0]].repeat(4, 0))  # and in 5 6
  np.testing.assert_array_equal(s3[:3], s3[[0]].repeat(3, 0))  # three in 4 5 6
  assert not np.allclose(s3[3], s3[0])  # a two-character word's own ending
  assert not np.allclose(out[0, :7], out[1, :7])


def test_suffixes_without_a_char_encoder_are_refused_by_the_config_and_by_the_module():
  config = default_config()
  config.model.words.suffix_length = 3
  with pytest.raises(ValueError, match=r"config.model.words.suffix_length=3 reads the last "
                                       r"characters .*config.model.words.char_encoder to 'lstm'"):
    validate_config(config)
  # Used directly the module would be called without characters and drop the suffixes.
  with pytest.raises(ValueError, match=r"WordEmbedding: suffix_length=3 reads the last characters "
                                       r".*char_encoder to 'lstm' or 'cnn'"):
    WordEmbedding(vocab_size=9, suffix_length=3)


@pytest.mark.parametrize('attributes, message', [
    ({'embed_dropout': 1.0}, r'WordEmbedding: embed_dropout=1.0 must be in \[0, 1\)'),
    ({'word_dropout': -0.1}, r'WordEmbedding: word_dropout=-0.1 must be in \[0, 1\)'),
    ({'embed_dim': 0}, r'WordEmbedding: embed_dim=0 must be an integer >= 1'),
    ({'char_encoder': 'gru', 'num_chars': 5}, r"char_encoder='gru' is not one of \['none', "),
    ({'char_encoder': 'lstm'}, r"WordEmbedding\('lstm'\): num_chars=0 must be an integer >= 1"),
    ({'char_encoder': 'cnn', 'num_chars': 5, 'suffix_length': 1.5}, r'suffix_length=1.5 must'),
])
def test_word_embedding_names_a_bad_attribute_when_it_is_made(attributes, message):
  with pytest.raises(ValueError, match=message):
    WordEmbedding(vocab_size=9, **attributes)


CONLLU = """# sent_id = 1
1-2\tAli'nin\t_\t_\t_\t_\t_\t_\t_\t_
1\tAli\tAli\tPROPN\tNP\t_\t3\tnmod\t_\t_
2\t'nin\t'nin\tADP\tPOSTP\t_\t1\tcase\t_\t_
2.1\tgizli\t_\tADJ\tJJ\t_\t_\t_\t_\t_
3\tKitaplarımızdan\tkitap\tNOUN\tNN\t_\t0\troot\t_\t_

# sent_id = 2
1\tEv\tev\tNOUN\tNN\t_\t0\troot\t_\t_
"""


def test_character_ids_round_trip_to_the_words_cut_at_the_cap(tmp_path):
  path = tmp_path / 'x.conllu'
  path.write_text(CONLLU)
  train = conllu.read_conllu(path)
  test = [(['Ağaç', 'Ev'], ['NOUN', 'NOUN'])]  # 'ğ' and 'ç' are unseen in training
  config = default_config().data
  config.treebank.lowercase, config.treebank.max_word_chars = True, 8
  data = conllu.make_dataset(train, test, test, config)
  chars = conllu.build_char_vocab(train)
  spell = {i: c for c, i in chars.items()}
  assert data.num_chars == len(chars) + 2

  def words(split):
    return [[''.join(spell.get(i, '?') for i in word if i) for word in sentence if word.any()]
            for sentence in data.splits[split]['chars']]

  # Case is kept for the characters, whatever data.treebank.lowercase does to the word ids;
  # multiword ranges and empty nodes stay skipped; 15 characters are cut to 8.
  assert words('train') == [['Ali', "'nin", 'Kitaplar'], ['Ev']]
  assert words('test') == [['A?a?', 'Ev']]
  assert data.splits['train']['chars'].shape == (2, 3, 8)
  assert data.splits['test']['chars'].shape == (1, 2, 8)
