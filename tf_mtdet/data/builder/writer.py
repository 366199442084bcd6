"""Writes a `DatasetSource` as TFRecord shards plus GT JSON, label map and summary.

All outputs are written into a temporary directory beside the destination and
renamed into place only when every one of them is complete, so an error (or
`--strict` stopping at a bad item) leaves no partial file behind. Images are
encoded in worker processes; results come back in input order and are dealt
round-robin to shards, so the same input gives byte-identical shards whatever
the number of workers.
"""

import dataclasses
import glob
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Iterator, Optional, TextIO

import tensorflow as tf

from tf_mtdet.data.builder import encode
from tf_mtdet.data.builder import records

_WORKER_OPTIONS: Optional[encode.EncodeOptions] = None


def shard_paths(prefix: str, num_shards: int) -> list[str]:
  """`PREFIX-00000-of-0000N.tfrecord` names, as Model Garden's tools write them."""
  return [f'{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord'
          for i in range(num_shards)]


def output_paths(prefix: str) -> dict[str, str]:
  return {'annotations': f'{prefix}-annotations.json',
          'label_map': f'{prefix}-label_map.json',
          'summary': f'{prefix}-summary.json'}


@dataclasses.dataclass
class BuildResult:
  shards: list[str]
  annotations: str
  label_map: str
  summary_path: str
  summary: dict[str, Any]


class _Progress:
  """One progress line on a terminal (rewritten in place), periodic lines otherwise."""

  def __init__(self, total: int, stream: Optional[TextIO]):
    self._total, self._stream = total, stream
    self._start = self._last = time.monotonic()
    self._tty = bool(stream is not None and hasattr(stream, 'isatty') and
                     stream.isatty())

  def update(self, done: int, skipped: int, final: bool = False) -> None:
    if self._stream is None:
      return
    now = time.monotonic()
    if not final and now - self._last < (0.5 if self._tty else 5.0):
      return
    self._last = now
    rate = done / max(now - self._start, 1e-9)
    line = (f'build-tfrecord: {done}/{self._total} images '
            f'({100.0 * done / max(self._total, 1):.0f}%), {rate:.1f} img/s, '
            f'{skipped} skipped')
    end = '\n' if final or not self._tty else ''
    print(('\r' if self._tty else '') + line, end=end, file=self._stream,
          flush=True)


def _init_worker(options: encode.EncodeOptions) -> None:
  global _WORKER_OPTIONS
  _WORKER_OPTIONS = options


def _encode_in_worker(record: records.ImageRecord):
  return encode.encode_image(record, _WORKER_OPTIONS)


def _encoded_stream(images: list[records.ImageRecord],
                    options: encode.EncodeOptions, num_workers: int,
                    pools: list) -> Iterator:
  if num_workers <= 1:
    return (encode.encode_image(r, options) for r in images)
  # fork: workers inherit the imported modules instead of re-importing them.
  pool = multiprocessing.get_context('fork').Pool(
      num_workers, initializer=_init_worker, initargs=(options,))
  pools.append(pool)
  return pool.imap(_encode_in_worker, images, chunksize=4)


def _write_json(path: str, obj: Any) -> None:
  # json.dumps takes the C encoder; json.dump(obj, f) streams through the pure
  # Python one, 5x slower on a COCO-sized ground truth.
  text = json.dumps(obj, sort_keys=True, separators=(',', ':'))
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)


def _make_temp_dir(prefix: str) -> str:
  out_dir = os.path.dirname(os.path.abspath(prefix))
  try:
    os.makedirs(out_dir, exist_ok=True)
    return tempfile.mkdtemp(prefix='.tf_mtdet-build-', dir=out_dir)
  except OSError as e:
    raise records.BuildError(
        f'{out_dir}: output directory is not writable: {e.strerror or e}'
    ) from e


def build_tfrecords(source: records.DatasetSource, output_prefix: str,
                    num_shards: int, options: encode.EncodeOptions,
                    log: records.ProblemLog, num_workers: int = 1,
                    progress_stream: Optional[TextIO] = sys.stderr
                    ) -> BuildResult:
  """Encodes and writes every image of `source`.

  Args:
    source: Checked dataset from a reader.
    output_prefix: Path prefix of every output file.
    num_shards: Number of TFRecord shards.
    options: What to write per image.
    log: Problem log (raises at the first problem in strict mode).
    num_workers: Encoding processes.
    progress_stream: Where the progress line goes (None for silence).

  Returns:
    The written paths and the summary.

  Raises:
    BuildError: Empty dataset, unwritable output, nothing left to write, or a
      bad item in strict mode. No output file is left behind in that case.
  """
  if num_shards < 1:
    raise records.BuildError(f'--num-shards must be >= 1, got {num_shards}')
  if not source.images:
    raise records.BuildError(
        f'{_describe(source)}: the dataset is empty (no usable images)')
  if options.semantic:
    too_big = [c.id for c in source.categories if c.id > 255]
    if too_big:
      raise records.BuildError(
          f'{_describe(source)}: --semantic stores class ids in an 8-bit PNG '
          f'but category ids {too_big[:5]} exceed 255')

  final_shards = shard_paths(output_prefix, num_shards)
  final_others = output_paths(output_prefix)
  stale = sorted(set(glob.glob(glob.escape(output_prefix) +
                               '-?????-of-?????.tfrecord')) - set(final_shards))
  tmp_dir = _make_temp_dir(output_prefix)
  pools: list = []
  try:
    tmp_shards = [os.path.join(tmp_dir, os.path.basename(p))
                  for p in final_shards]
    writers = [tf.io.TFRecordWriter(p) for p in tmp_shards]
    gt_images, gt_annotations = [], []
    shard_records = [0] * num_shards
    num_crowd = 0
    semantic_missing = 0
    progress = _Progress(len(source.images), progress_stream)
    results = _encoded_stream(source.images, options, num_workers, pools)
    for done, (record, result) in enumerate(zip(source.images, results), 1):
      if isinstance(result, records.Problem):
        log.report(result, dropped_annotations=len(record.instances))
      else:
        shard_records[len(gt_images) % num_shards] += 1
        writers[len(gt_images) % num_shards].write(result.serialized)
        gt_images.append(result.gt_image)
        gt_annotations.extend(result.gt_annotations)
        num_crowd += result.num_crowd
        semantic_missing += result.semantic_missing
      progress.update(done, sum(log.counts.values()))
    progress.update(len(source.images), sum(log.counts.values()), final=True)
    for w in writers:
      w.close()
    if not gt_images:
      raise records.BuildError(
          f'{_describe(source)}: no image could be written; all '
          f'{len(source.images)} were skipped')

    categories = [dataclasses.asdict(c) for c in source.categories]
    summary = {
        'images': len(gt_images),
        'instances': len(gt_annotations),
        'crowd': num_crowd,
        **log.summary(),
        'num_shards': num_shards,
        'shards': [os.path.basename(p) for p in final_shards],
        # What `tf_mtdet.data.verify` checks shards against before reading.
        'shard_files': [
            {'file': os.path.basename(p), 'records': n, **_file_stats(tmp)}
            for p, tmp, n in zip(final_shards, tmp_shards, shard_records)],
        'num_classes': max([c.id for c in source.categories], default=0) + 1,
        'source': source.description,
        'options': {'include_masks': options.include_masks,
                    'semantic': options.semantic,
                    'box_masks': options.box_masks},
    }
    if options.semantic_files:
      summary['options']['semantic_files'] = True
      # Written with an all-ignore semantic map.
      summary['images_without_semantic_labels'] = semantic_missing
    tmp_others = {k: os.path.join(tmp_dir, os.path.basename(p))
                  for k, p in final_others.items()}
    _write_json(tmp_others['annotations'], {
        'info': {'description': f'ground truth written by tf_mtdet '
                                f'build-tfrecord from {_describe(source)}'},
        'images': gt_images, 'annotations': gt_annotations,
        'categories': categories})
    _write_json(tmp_others['label_map'], {
        'num_classes': summary['num_classes'], 'categories': categories})
    _write_json(tmp_others['summary'], summary)
    for tmp, final in list(zip(tmp_shards, final_shards)) + [
        (tmp_others[k], final_others[k]) for k in final_others]:
      os.replace(tmp, final)
  except OSError as e:
    raise records.BuildError(
        f'{getattr(e, "filename", None) or output_prefix}: cannot write '
        f'output: {e.strerror or e}') from e
  finally:
    for pool in pools:
      pool.terminate()
      pool.join()
    shutil.rmtree(tmp_dir, ignore_errors=True)
  if stale:
    print(f'warning: {len(stale)} older shard(s) with this prefix but another '
          f'shard count remain, e.g. {stale[0]}; remove them before reading '
          f'{output_prefix}-*.tfrecord', file=sys.stderr)
  return BuildResult(shards=final_shards,
                     annotations=final_others['annotations'],
                     label_map=final_others['label_map'],
                     summary_path=final_others['summary'], summary=summary)


def _file_stats(path: str) -> dict[str, Any]:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return {'bytes': os.path.getsize(path), 'sha256': digest.hexdigest()}


def _describe(source: records.DatasetSource) -> str:
  d = source.description
  return str(d.get('annotations') or d.get('voc_root') or d.get('format'))
