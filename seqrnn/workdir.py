"""A run's workdir: one process at a time, and a record of every start.

  WORKDIR/config.json           the config of the run's first start, never rewritten
  WORKDIR/config_history.jsonl  one line per later start: its step and the fields it changed
  WORKDIR/.lock                 held by the running process (`fcntl.flock`)

The lock is the kernel's: it goes with the process holding it, so a run that
was killed never blocks its restart, and a second process on the same workdir
is refused at once instead of rewriting the first one's files under it.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import tempfile
import time

LOCK = '.lock'  # the lock file's name in a workdir; it stays there after its run


class WorkdirInUse(RuntimeError):
  """Another live process holds the workdir's lock."""


def check_local(workdir):
  """Refuses a URL (gs://, s3://): a workdir is a path of the file system, locked with
  `flock` and written by renames; pathlib would make a local directory `gs:/...` of it."""
  if '://' in str(workdir):
    raise ValueError(f'workdir {workdir!r} is a URL; a workdir is a file-system path (seqrnn locks '
                     f'it and renames files in it). Mount the bucket with GCS FUSE and give the '
                     f'mounted path: see docs/accelerators.md')


@contextlib.contextmanager
def locked(workdir):
  """Holds an exclusive lock on `workdir` (created if needed) for the block. A block that
  fails leaving nothing but the lock (a run refused before it wrote anything: bad data, a
  bad config) takes the lock file away too, and the directory if it made it."""
  workdir = pathlib.Path(workdir)
  made = not workdir.exists()
  workdir.mkdir(parents=True, exist_ok=True)
  f = open(workdir / LOCK, 'a+')
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or 'unknown'
    f.close()
    raise WorkdirInUse(f'{workdir} is in use by another run (pid {holder}); wait for it to '
                       f'finish, stop it, or use another --workdir') from None
  try:
    f.seek(0)
    f.truncate()
    f.write(f'{os.getpid()}\n')
    f.flush()
    yield
  except BaseException:
    if [p.name for p in workdir.iterdir()] == [LOCK]:
      (workdir / LOCK).unlink()  # still held: no other process takes it in between
      if made:
        workdir.rmdir()
    raise
  finally:
    f.close()  # closing the file releases the lock


def held_elsewhere(workdir):
  """Whether another live process holds `workdir`'s lock now (a probe: takes and drops it)."""
  path = pathlib.Path(workdir) / LOCK
  if not path.exists():
    return False
  with open(path, 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      return True
  return False  # closing the file dropped the probe's lock


def check_writable(directory, field):
  """Raises OSError naming `field` unless files can be created in `directory`, or
  it can be created: a directory not there yet is not made (a run refused later,
  e.g. for its data, leaves no empty directories behind)."""
  directory = pathlib.Path(directory)
  probe = directory
  while not probe.exists() and probe != probe.parent:
    probe = probe.parent  # the nearest existing ancestor: where it would be made
  try:
    if not probe.is_dir():
      raise NotADirectoryError(20, 'a file is in the way')
    with tempfile.NamedTemporaryFile(dir=probe):
      pass
  except OSError as e:
    raise OSError(f'{field} {directory} is not a writable directory ({e.strerror or e}); '
                  f'nothing was written') from None


def keep_aside(path, label):
  """Renames `path` to NAME.LABEL (NAME.LABEL2, ... if taken); returns the new path."""
  path = pathlib.Path(path)
  new, n = path.with_name(f'{path.name}.{label}'), 1
  while new.exists():
    n += 1
    new = path.with_name(f'{path.name}.{label}{n}')
  path.rename(new)
  return new


def saved_config(workdir):
  """The flat config the run in `workdir` uses now (the first start's config with every
  later start's changes applied), or None for a new workdir. A field added to seqrnn
  after the run started holds its default, which is how that run behaved (a new field's
  default keeps the old behaviour): so an old workdir resumes, and says no change."""
  from seqrnn.config import default_config, to_flat_dict, upgrade  # names as they are now
  workdir = pathlib.Path(workdir)
  if not (workdir / 'config.json').exists():
    return None
  config = {**to_flat_dict(default_config()),
            **upgrade(json.loads((workdir / 'config.json').read_text()))}
  for record in _history(workdir):
    config.update(upgrade({k: new for k, (_, new) in record['changed'].items()}))
  return config


def record_start(workdir, flat_config, step):
  """Writes config.json on the first start; on a later one appends its step and changed
  fields to config_history.jsonl. Returns the changes {field: (saved, now)}."""
  workdir = pathlib.Path(workdir)
  saved = saved_config(workdir)
  if saved is None:
    tmp = workdir / 'config.json.tmp'
    tmp.write_text(json.dumps(flat_config, indent=2) + '\n')
    os.replace(tmp, workdir / 'config.json')
    return {}
  changed = {k: (saved.get(k), v) for k, v in flat_config.items() if saved.get(k) != v}
  with open(workdir / 'config_history.jsonl', 'a') as f:
    f.write(json.dumps({'step': int(step), 'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                        'changed': changed}) + '\n')
  return changed


def _history(workdir):
  path = workdir / 'config_history.jsonl'
  if not path.exists():
    return []
  records = []
  for line in path.read_text().splitlines():
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:  # cut short by a kill while it was written
      continue
  return records
