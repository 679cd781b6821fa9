"""PyTorch GRU/LSTM state dicts become seqrnn parameters with torch's outputs."""

import jax
import numpy as np
import pytest
from reference import torch_rnn_sequence

from seqrnn import RNNStack, from_torch, from_torch_states, to_torch, torch_states

X = np.random.default_rng(0).normal(size=(4, 7, 3)).astype(np.float32)
LENGTHS = np.array([7, 1, 4, 6], np.int32)


def _state_dict(gates, hidden, in_features, num_layers, bidirectional, seed=0):
  """Random weights in torch's layout and names (as `rnn.state_dict()` would hold them)."""
  rng = np.random.default_rng(seed)
  sd = {}
  for layer in range(num_layers):
    fan_in = in_features if layer == 0 else hidden * (2 if bidirectional else 1)
    for suffix in ('', '_reverse') if bidirectional else ('',):
      sd[f'weight_ih_l{layer}{suffix}'] = rng.normal(size=(gates * hidden, fan_in)) * 0.5
      sd[f'weight_hh_l{layer}{suffix}'] = rng.normal(size=(gates * hidden, hidden)) * 0.5
      sd[f'bias_ih_l{layer}{suffix}'] = rng.normal(size=gates * hidden) * 0.5
      sd[f'bias_hh_l{layer}{suffix}'] = rng.normal(size=gates * hidden) * 0.5
  return {k: v.astype(np.float32) for k, v in sd.items()}


@pytest.mark.parametrize('gates', [3, 4], ids=['gru', 'lstm'])
@pytest.mark.parametrize('num_layers, bidirectional', [(1, False), (2, False), (2, True)])
def test_from_torch_gives_the_outputs_of_torchs_equations(gates, num_layers, bidirectional):
  sd = _state_dict(gates, 5, 3, num_layers, bidirectional)
  stack, variables = from_torch(sd)
  assert (stack.cell, stack.num_layers, stack.bidirectional) == (
      {3: 'gru', 4: 'lstm'}[gates], num_layers, bidirectional)
  outputs = stack.apply(variables, X, LENGTHS, train=False, return_carry=False)
  for b, length in enumerate(LENGTHS):
    expected = torch_rnn_sequence(sd, X[b, :length].astype(np.float64))
    np.testing.assert_allclose(outputs[b, :length], expected, rtol=1e-5, atol=1e-5)


def test_from_torch_finds_the_rnn_inside_a_larger_state_dict_and_refuses_what_it_cannot_map():
  sd = {f'encoder.rnn.{k}': v for k, v in _state_dict(4, 5, 3, 1, False).items()}
  sd['head.weight'] = np.zeros((2, 5), np.float32)
  stack, variables = from_torch(sd, prefix='encoder.rnn.')
  assert jax.tree.map(np.shape, variables)['params']['layer_0']['cell']['recurrent_kernel'] == (5, 20)
  with pytest.raises(ValueError, match=r"no GRU/LSTM weights .* under prefix ''"):
    from_torch({'head.weight': np.zeros((2, 5))})
  with pytest.raises(ValueError, match='proj_size'):
    from_torch({**_state_dict(4, 5, 3, 1, False), 'weight_hr_l0': np.zeros((3, 5))})


def test_a_state_dict_missing_some_keys_is_refused_naming_them_while_bias_false_means_zeros():
  sd = _state_dict(3, 5, 3, 2, False)
  no_biases = {k: v for k, v in sd.items() if not k.startswith('bias')}  # torch's bias=False
  _, variables = from_torch(no_biases)
  assert not np.any(variables['params']['layer_1']['cell']['recurrent_bias'])
  for key in ('bias_hh_l1', 'weight_ih_l1'):
    with pytest.raises(ValueError, match=rf"lacks \['{key}'\]"):
      from_torch({k: v for k, v in sd.items() if k != key})
  bidirectional = _state_dict(4, 5, 3, 1, True)
  del bidirectional['bias_ih_l0_reverse'], bidirectional['weight_hh_l0_reverse']
  with pytest.raises(ValueError, match=r"lacks \['weight_hh_l0_reverse', 'bias_ih_l0_reverse'\]"):
    from_torch(bidirectional)


@pytest.mark.parametrize('gates', [3, 4], ids=['gru', 'lstm'])
@pytest.mark.parametrize('bidirectional', [False, True])
def test_to_torch_inverts_from_torch_and_final_states_come_in_torchs_layout(gates, bidirectional):
  sd = _state_dict(gates, 5, 3, 2, bidirectional)
  stack, variables = from_torch(sd)
  back = to_torch(variables, prefix='rnn.')
  assert sorted(back) == sorted(f'rnn.{k}' for k in sd)
  for key, value in sd.items():
    np.testing.assert_array_equal(back[f'rnn.{key}'], value)
  carries, _ = stack.apply(variables, X, LENGTHS, return_carry=True)
  states = torch_states(carries, bidirectional=bidirectional)
  h_n, c_n = states if gates == 4 else (states, None)
  assert h_n.shape == (2 * (2 if bidirectional else 1), 4, 5)
  for b, length in enumerate(LENGTHS):
    _, ref_h, ref_c = torch_rnn_sequence(sd, X[b, :length].astype(np.float64), final_states=True)
    np.testing.assert_allclose(h_n[:, b], ref_h, rtol=1e-5, atol=1e-5)
    if gates == 4:
      np.testing.assert_allclose(c_n[:, b], ref_c, rtol=1e-5, atol=1e-5)
  # torch's h_0 (and c_0) back as initial carries: the same carries again.
  again = from_torch_states(*((h_n, c_n) if gates == 4 else (h_n,)), bidirectional=bidirectional)
  jax.tree.map(np.testing.assert_array_equal, again, carries)


def test_weights_trained_here_give_torchs_equations_their_outputs():
  stack = RNNStack(cell='lstm', hidden_size=5, num_layers=2, bidirectional=True,
                   return_carry=False)
  variables = stack.init(jax.random.key(3), X, LENGTHS)
  variables = jax.tree.map(lambda a: a + 0.05, variables)  # biases away from their init
  outputs = stack.apply(variables, X, LENGTHS)
  sd = to_torch(variables)
  for b, length in enumerate(LENGTHS):
    np.testing.assert_allclose(outputs[b, :length],
                               torch_rnn_sequence(sd, X[b, :length].astype(np.float64)),
                               rtol=1e-5, atol=1e-5)


def test_to_torch_refuses_what_torch_has_no_weight_for():
  x = X[:, :3]
  learned = RNNStack(cell='gru', hidden_size=4, learned_initial_carry=True)
  with pytest.raises(ValueError, match=r"layer_0 has \['initial_carry_0'\], a learned initial "
                                       r"carry: torch takes it as h_0"):
    to_torch(learned.init(jax.random.key(0), x))
  layer_norm = RNNStack(cell='ln_lstm', hidden_size=4)
  with pytest.raises(ValueError, match=r"torch's GRU and LSTM are seqrnn's 'gru' and 'lstm'"):
    to_torch(layer_norm.init(jax.random.key(0), x))
