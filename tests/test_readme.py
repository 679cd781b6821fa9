"""The README's Python examples run as written."""

import pathlib
import re

README = (pathlib.Path(__file__).resolve().parents[1] / 'README.md').read_text()
BLOCKS = re.findall(r'```python\n(.*?)```', README, re.S)


def test_the_research_code_examples_run_as_written():
  assert len(BLOCKS) == 3
  namespace = {}
  exec(compile(BLOCKS[0], 'README.md', 'exec'), namespace)  # noqa: S102
  assert namespace['logits'].shape == (8, 20, 5)
  exec(compile(BLOCKS[1], 'README.md', 'exec'), namespace)  # the custom cell, same imports
  from experiments.custom_cell import MinimalRNNCell
  import inspect
  assert inspect.getsource(MinimalRNNCell) in BLOCKS[1]  # the README shows the real file


def test_the_sweep_file_shown_is_the_real_one():
  root = pathlib.Path(__file__).resolve().parents[1]
  header, code = BLOCKS[2].split('\n', 1)
  assert header == '# experiments/sweeps/digits_cells.py'
  assert code in (root / header[2:]).read_text()
