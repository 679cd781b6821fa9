"""The README and docs/: Python examples run as written, and every command, module, file and
link they name exists."""

import importlib.util
import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
DOCS = {p: p.read_text() for p in sorted((ROOT / 'docs').glob('*.md'))}
BLOCKS = re.findall(r'```python\n(.*?)```', README, re.S)
TEXTS = {ROOT / 'README.md': README, **DOCS}


def test_the_research_code_examples_run_as_written():
  assert len(BLOCKS) == 3
  assert not any('```python' in text for text in DOCS.values())  # the docs show none to run
  namespace = {}
  exec(compile(BLOCKS[0], 'README.md', 'exec'), namespace)  # noqa: S102
  ns = type('README', (), namespace)
  assert ns.logits.shape == (8, 20, 5) and ns.y.shape == (8, 5)
  assert ns.h.shape == ns.c.shape == (8, 64) and ns.h_n.shape == ns.c_n.shape == (2, 8, 64)
  evaluated = ns.stack.apply(ns.params, ns.x, ns.lengths, return_carry=False)
  np.testing.assert_allclose(ns.torch_stack.apply(ns.torch_variables, ns.x, ns.lengths,
                                                  return_carry=True)[1], evaluated, atol=1e-6)
  exec(compile('from typing import ClassVar\n' + BLOCKS[1], 'README.md', 'exec'), namespace)
  from experiments.custom_cell import ElmanCell
  import inspect
  assert inspect.getsource(ElmanCell) in BLOCKS[1]  # the README shows the real file


def test_the_sweep_file_shown_is_the_real_one():
  header, code = BLOCKS[2].split('\n', 1)
  assert header == '# experiments/sweeps/digits_cells.py'
  lines = lambda text: '\n'.join(l for l in text.splitlines() if l.strip())  # blank lines aside
  assert lines(code) in lines((ROOT / header[2:]).read_text())


def test_every_module_config_file_and_link_named_exists():
  for path, text in TEXTS.items():
    text = re.sub(r'\s+', ' ', text)  # commands are wrapped over lines
    for module in re.findall(r'python -m ([\w.]+)', text):
      if module.split('.')[0] in ('experiments', 'seqrnn'):
        assert importlib.util.find_spec(module), (path.name, module)
    for config in re.findall(r'--config=(experiments/configs/\w+\.py)', text):
      assert (ROOT / config).is_file(), (path.name, config)
    for link in re.findall(r'\]\(([\w/.]+\.md)\)', text):
      assert (path.parent / link).is_file(), (path.name, link)
  assert len(README.splitlines()) <= 250


def test_requirements_tpu_takes_every_version_range_from_pyproject():
  lines = [line.split('#')[0].strip() for line in (ROOT / 'requirements-tpu.txt').read_text()
           .splitlines()]
  assert [line for line in lines if line] == ['jax[tpu]', '-e .']
