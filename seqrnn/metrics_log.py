"""Metrics to `WORKDIR/metrics.jsonl` (one JSON object a line) and TensorBoard."""

import json
import os
import pathlib
import shutil

from tensorboardX import SummaryWriter


class MetricLog:
  """Appends {'step', 'split', ...metrics} lines; resumes without duplicates.

  Opened at `start_step` (the step of the restored checkpoint), it first drops
  the lines a killed run wrote after that checkpoint, and the test lines (split
  'test', the last step's, and 'test_best', the best eval step's), since the
  resumed run writes them again.
  """

  def __init__(self, workdir, start_step):
    self.path = pathlib.Path(workdir) / 'metrics.jsonl'
    kept = []
    if self.path.exists():
      for line in self.path.read_text().splitlines():
        try:
          record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
          continue
        if record['step'] <= start_step and record['split'] not in ('test', 'test_best'):
          kept.append(line + '\n')
    tmp = self.path.with_suffix('.tmp')
    tmp.write_text(''.join(kept))
    os.replace(tmp, self.path)
    self._file = open(self.path, 'a')
    self._workdir = pathlib.Path(workdir)
    self._tb = SummaryWriter(str(workdir), purge_step=start_step + 1, flush_secs=30)

  def write(self, step, split, metrics):
    record = {'step': int(step), 'split': split, **{k: float(v) for k, v in metrics.items()}}
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()
    for name, value in metrics.items():
      self._tb.add_scalar(f'{split}/{name}', float(value), int(step))

  def write_hparams(self, flat_config, results):
    """The config and the final metrics for TensorBoard's HParams tab (which compares a
    sweep's runs), in WORKDIR/hparams (replaced: a resumed run's end writes it again)."""
    shutil.rmtree(self._workdir / 'hparams', ignore_errors=True)
    config = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
              for k, v in flat_config.items()}
    self._tb.add_hparams(config, {f'hparam/{k}': float(v) for k, v in results.items()},
                         name='hparams')

  def sync(self):
    """Forces everything written so far to disk (before a checkpoint)."""
    self._file.flush()
    os.fsync(self._file.fileno())
    self._tb.flush()

  def close(self):
    self.sync()
    self._file.close()
    self._tb.close()


class NoLog:
  """What processes other than 0 log: nothing (process 0 writes for all)."""

  def write(self, step, split, metrics):
    pass

  def write_hparams(self, flat_config, results):
    pass

  def sync(self):
    pass

  def close(self):
    pass
