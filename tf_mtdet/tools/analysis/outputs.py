"""Files the analysis commands write: whole or not at all.

Each output goes to a hidden temporary file in its destination folder and is
renamed into place once complete, so a failure never leaves a partial file.
Pictures are drawn with matplotlib's Agg backend (no display needed).
"""

import csv
import io
import os
import tempfile
from typing import Any, Sequence

import matplotlib

matplotlib.use('Agg')
from matplotlib import pyplot  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import ticker  # pylint: disable=g-import-not-at-top,wrong-import-position


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` through a temporary file and a rename."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder,
                             prefix='.' + os.path.basename(path) + '.')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_csv(path: str, header: Sequence[str],
              rows: Sequence[Sequence[Any]]) -> None:
  """Writes a CSV table (header row first)."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator='\n')
  writer.writerow(header)
  writer.writerows(rows)
  write_bytes(path, buffer.getvalue().encode('utf-8'))


def new_figure(width: float, height: float):
  """A matplotlib figure of `width` x `height` inches (not shown anywhere)."""
  return pyplot.figure(figsize=(width, height))


def log_axis(axes, axis: str = 'x') -> None:
  """A log scale labelled with plain numbers (no overlapping minor labels)."""
  target = axes.xaxis if axis == 'x' else axes.yaxis
  (axes.set_xscale if axis == 'x' else axes.set_yscale)('log')
  target.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
  target.set_major_formatter(ticker.FormatStrFormatter('%g'))
  target.set_minor_formatter(ticker.NullFormatter())


def save_figure(figure, path: str, dpi: int = 100) -> None:
  """Writes `figure` as a PNG at `path` and closes it."""
  buffer = io.BytesIO()
  try:
    figure.savefig(buffer, format='png', dpi=dpi, bbox_inches='tight')
  finally:
    pyplot.close(figure)
  write_bytes(path, buffer.getvalue())


def check_png_path(path: str, option: str) -> None:
  """Refuses an output picture path that is not a `.png` file name."""
  if not path.lower().endswith('.png'):
    raise ValueError(f'{option} {path}: the picture is written as PNG; give '
                     'a path ending in .png')
  if os.path.isdir(path):
    raise ValueError(f'{option} {path}: is a folder; give a .png file name')
