"""Reading data files, plain or gzipped, with errors that name the file and line.

A damaged file (a truncated `.gz`, bytes that are not UTF-8) surfaces as one
`DataFileError` saying which file, and which line where there is one, instead
of a decoder's traceback from deep inside a reader.
"""

import codecs
import gzip
import zlib

_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


class DataFileError(ValueError):
  """A data file that cannot be read as its format says."""


def _open(path):
  return (gzip.open if str(path).endswith('.gz') else open)(path, 'rb')


def read_bytes(path):
  """The whole (decompressed) content of `path`."""
  try:
    with _open(path) as f:
      return f.read()
  except _GZIP_ERRORS as e:
    raise DataFileError(f'{path}: damaged or truncated gzip file ({e})') from None


def read_lines(path):
  """Yields (line number from 1, line without its line break) of a UTF-8 text file.

  A UTF-8 byte-order mark at the start is accepted and dropped. Lines are decoded
  one at a time, so a bad byte is reported at its own line.
  """
  line_no = 0
  try:
    with _open(path) as f:
      for line_no, raw in enumerate(f, 1):
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
          raw = raw[len(codecs.BOM_UTF8):]
        try:
          line = raw.decode('utf-8')
        except UnicodeDecodeError as e:
          raise DataFileError(f'{path}:{line_no}: not UTF-8 text (byte '
                              f'{raw[e.start:e.start + 1]!r} at column {e.start + 1})') from None
        yield line_no, line.rstrip('\r\n')
  except _GZIP_ERRORS as e:
    raise DataFileError(f'{path}:{line_no + 1}: damaged or truncated gzip file ({e})') from None
