"""TFRecord shard checks: before training, after a read error, and in full.

A shard cut short, or a TFRecord another tool wrote with other feature keys,
otherwise ends a run in a TensorFlow traceback that names no file. Three
levels of checking, each naming the shard and what is wrong:

* `check_shards` (before `train` / `evaluate` build the model; seconds even
  for COCO): every file the pattern matches is a TFRecord whose record
  framing is whole (lengths and their checksums, walked with seeks, no data
  read), agrees with the build summary beside it (`PREFIX-summary.json`:
  bytes and record count per shard) and whose first record is a detection
  `tf.train.Example`.
* `naming_bad_shard`: a context manager for `fit`; a read error in the input
  pipeline (bad record checksum, cut record, foreign record) is traced back
  to its shard and record and raised as one `ShardError` line.
* `verify_shard` (`tf-mtdet verify-tfrecord`): reads every record (data
  checksums), decodes every image and mask and checks the boxes, and the
  shard's SHA-256 against the summary.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import struct
from typing import Any, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf

from tf_mtdet import errors
from tf_mtdet.data import image_size

REQUIRED_KEYS = (
    'image/encoded',
    'image/object/bbox/xmin', 'image/object/bbox/ymin',
    'image/object/bbox/xmax', 'image/object/bbox/ymax',
    'image/object/class/label',
)
_SHARD_NAME = re.compile(r'^(?P<prefix>.*)-\d{5}-of-\d{5}\.tfrecord$')
_HEADER = 12  # uint64 length + uint32 masked CRC-32C of the length.
_FOOTER = 4   # uint32 masked CRC-32C of the data.


class ShardError(ValueError):
  """A damaged or foreign shard; the message names it."""


# CRC-32C (Castagnoli), as TFRecord frames use it -----------------------------

def _crc_table() -> List[int]:
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# Framing --------------------------------------------------------------------

def _open(path: str):
  return (tf.io.gfile.GFile(path, 'rb') if '://' in path else
          open(path, 'rb'))


def _size(path: str) -> int:
  return tf.io.gfile.stat(path).length


def scan_framing(path: str, keep_first: bool = False
                 ) -> Tuple[int, Optional[str], Optional[bytes]]:
  """Walks a TFRecord file's record headers (seeking over the data).

  Args:
    path: The file.
    keep_first: Also return the first record's data.

  Returns:
    (records whose frame is whole, the first problem or None, the first
    record's data or None).
  """
  size = _size(path)
  count, offset, first = 0, 0, None
  with _open(path) as f:
    while offset < size:
      f.seek(offset)
      header = f.read(_HEADER)
      if len(header) < _HEADER:
        return count, (f'truncated: record {count} at byte {offset} is cut '
                       f'off in its length header (the file ends at byte '
                       f'{size})'), first
      length, length_crc = struct.unpack('<QI', header)
      if masked_crc32c(header[:8]) != length_crc:
        if count == 0:
          return 0, ('not a TFRecord file (the first record header fails '
                     'its checksum)'), None
        return count, (f'corrupt: the length header of record {count} at '
                       f'byte {offset} fails its checksum'), first
      end = offset + _HEADER + length + _FOOTER
      if end > size:
        return count, (f'truncated: record {count} at byte {offset} needs '
                       f'{end - offset} bytes but the file ends at byte '
                       f'{size}'), first
      if keep_first and count == 0:
        first = f.read(length)
      offset = end
      count += 1
  return count, None, first


# Records --------------------------------------------------------------------

def check_example_keys(raw: bytes) -> Optional[str]:
  """None if `raw` is a `tf.train.Example` with the detection keys."""
  try:
    example = tf.train.Example.FromString(raw)
  except Exception:  # pylint: disable=broad-except
    # protobuf's DecodeError differs between its implementations.
    return 'not a serialized tf.train.Example'
  keys = set(example.features.feature)
  missing = [k for k in REQUIRED_KEYS if k not in keys]
  if not missing:
    return None
  shown = ', '.join(sorted(keys)[:6]) + (', ...' if len(keys) > 6 else '')
  return (f'not a detection example: it lacks {", ".join(missing)} '
          f'(its keys: {shown or "none"})')


def _missing_masks(raw: bytes) -> Optional[str]:
  feature = tf.train.Example.FromString(raw).features.feature
  labels = feature['image/object/class/label'].int64_list.value
  if labels and 'image/object/mask' not in feature:
    return ('record 0 has instances but no masks (image/object/mask), and '
            'the model trains a mask branch: build the shards with '
            '--include-masks (--box-masks for box-only data such as VOC), or '
            'turn the mask branch off')
  return None


def _missing_semantic(raw: bytes) -> Optional[str]:
  feature = tf.train.Example.FromString(raw).features.feature
  labels = feature['image/object/class/label'].int64_list.value
  if (labels and 'image/segmentation/class/encoded' not in feature and
      'image/object/mask' not in feature):
    return ('record 0 has instances but neither a semantic map '
            '(image/segmentation/class/encoded) nor instance masks to paint '
            'one from, and the model trains a semantic head: build the shards '
            'with --semantic or --include-masks (--box-masks for box-only '
            'data such as VOC), or turn the head off')
  return None


# Build summaries ------------------------------------------------------------

def summary_path_for(shard: str) -> Optional[str]:
  """`PREFIX-summary.json` for `PREFIX-NNNNN-of-NNNNN.tfrecord`, if it exists."""
  match = _SHARD_NAME.match(shard)
  if not match:
    return None
  path = match.group('prefix') + '-summary.json'
  return path if tf.io.gfile.exists(path) else None


def summary_for(shard: str) -> Optional[dict]:
  """The build summary beside a shard, if there is one."""
  path = summary_path_for(shard)
  return _read_summary(path) if path else None


def _read_summary(path: str) -> dict:
  try:
    with tf.io.gfile.GFile(path, 'r') as f:
      summary = json.loads(f.read())
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise ShardError(f'{path}: unreadable build summary: {e}') from e
  if not isinstance(summary, dict):
    raise ShardError(f'{path}: a build summary is a JSON object')
  return summary


def rebuild_hint(shard: str, summary: Optional[Mapping[str, Any]]) -> str:
  """'rebuild with tf-mtdet build-tfrecord ...', with the original source
  and options when the summary has them."""
  hint = 'rebuild with tf-mtdet build-tfrecord'
  if not summary:
    return hint
  source = summary.get('source') or {}
  match = _SHARD_NAME.match(shard)
  args = []
  if source.get('format') == 'coco':
    args += ['--format coco', f'--annotations {source.get("annotations")}',
             f'--images {source.get("images")}']
  elif source.get('format') == 'voc':
    args += ['--format voc', f'--voc-root {source.get("voc_root")}']
    if source.get('split'):
      args.append(f'--split {source["split"]}')
  else:
    return hint
  if match:
    args.append(f'--output {match.group("prefix")}')
  args.append(f'--num-shards {summary.get("num_shards", 1)}')
  options = summary.get('options') or {}
  args += [f'--{k.replace("_", "-")}' for k in ('include_masks', 'semantic',
                                                 'box_masks') if options.get(k)]
  return f'{hint} {" ".join(args)}'


@dataclasses.dataclass
class _Expected:
  summary_path: Optional[str]
  summary: Optional[dict]
  entry: Optional[dict]  # The shard's `shard_files` entry.


def _expected(shard: str, cache: dict) -> _Expected:
  path = summary_path_for(shard)
  if path is None:
    return _Expected(None, None, None)
  if path not in cache:
    cache[path] = _read_summary(path)
  summary = cache[path]
  entries = {e.get('file'): e for e in summary.get('shard_files') or []}
  return _Expected(path, summary, entries.get(os.path.basename(shard)))


def _against_summary(shard: str, expected: _Expected) -> Optional[str]:
  """Size check against the summary (None without a summary that lists
  shard files: summaries written before they did say nothing)."""
  summary = expected.summary
  if not summary or 'shard_files' not in summary:
    return None
  if expected.entry is None:
    return (f'not listed in {expected.summary_path} (a leftover of another '
            'build with another shard count?)')
  size, recorded = _size(shard), int(expected.entry['bytes'])
  if size != recorded:
    how = 'truncated' if size < recorded else 'changed'
    return (f'{size} bytes but {expected.summary_path} recorded {recorded} '
            f'({how} since it was built)')
  return None


# Checks ---------------------------------------------------------------------

def list_shards(input_path: str, field: str) -> List[str]:
  """The files of a comma separated list of patterns (as Model Garden's
  `InputReader` reads it)."""
  patterns = [p.strip() for p in (input_path or '').split(',') if p.strip()]
  if not patterns:
    raise ShardError(f'{field} is not set (the builder writes '
                     'PREFIX-*.tfrecord shards)')
  files = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise ShardError(f'{field}: {pattern!r} matches no file')
    files += matched
  return files


def _shard_error(field: str, shard: str, problem: str,
                 summary: Optional[dict]) -> ShardError:
  return ShardError(f'{field}: {shard}: {problem}; '
                    f'{rebuild_hint(shard, summary)}')


def check_shards(input_path: str, field: str = 'train_data.input_path',
                 needs_masks: bool = False,
                 needs_semantic: bool = False) -> List[str]:
  """Checks the shards an input path names, without reading their data.

  Args:
    input_path: File pattern(s), comma separated.
    field: The config field it came from, named in messages.
    needs_masks: The model trains on instance masks: a first record with
      instances but no `image/object/mask` is refused (the shards were built
      without `--include-masks`).

  Returns:
    The shard files.

  Raises:
    ShardError: a pattern matching nothing, a file that is not a TFRecord,
      a truncated or corrupt record frame, a size or record count differing
      from the build summary beside the shard, a first record that is not a
      detection example, or no record at all.
  """
  files = list_shards(input_path, field)
  cache: dict = {}
  total = 0
  firsts = []  # (shard, its first record, summary): the content check's.
  for shard in files:
    expected = _expected(shard, cache)
    problem = _against_summary(shard, expected)
    if problem is None:
      count, problem, first = scan_framing(shard, keep_first=True)
      total += count
      if (problem is None and expected.entry is not None and
          count != int(expected.entry['records'])):
        problem = (f'{count} records but {expected.summary_path} recorded '
                   f'{expected.entry["records"]}')
      if problem is None and first is not None:
        problem = check_example_keys(first)
        if problem:
          problem = f'record 0: {problem}'
        elif (needs_masks or needs_semantic) and not firsts:
          firsts.append((shard, first, expected.summary))
    if problem:
      raise _shard_error(field, shard, problem, expected.summary)
  if not total:
    raise ShardError(f'{field}: {input_path!r}: the {len(files)} shard(s) '
                     'hold no record')
  # What the records hold, once every file is known to be sound.
  for shard, first, summary in firsts:
    problem = ((needs_masks and _missing_masks(first)) or
               (needs_semantic and _missing_semantic(first)) or None)
    if problem:
      raise _shard_error(field, shard, problem, summary)
  return files


def find_read_error(shard: str, decode_images: bool = False
                    ) -> Optional[str]:
  """Reads a shard's records (data checksums included) and checks each is a
  detection example (and with `decode_images`, decodes it fully as
  `verify_shard` does); the first problem, or None."""
  _, problem, _ = scan_framing(shard)
  if problem:
    return problem
  index = 0
  iterator = iter(tf.data.TFRecordDataset(shard))
  while True:
    try:
      raw = next(iterator)
    except StopIteration:
      return None
    except tf.errors.OpError as e:
      return f'record {index}: {errors.tf_reason(e.message)}'
    problem = (_check_record(raw.numpy(), image_size.DEFAULT_MAX_IMAGE_PIXELS)
               if decode_images else
               check_example_keys(raw.numpy()))
    if problem:
      return f'record {index}: {problem}'
    index += 1


def experiment_inputs(config: Any, training: bool) -> dict:
  """`{field: input path}` of what `train` (training=True) or `evaluate`
  reads for an experiment config."""
  inputs = {}
  if training:
    inputs['train_data.input_path'] = config.train_data.input_path
    # Read by the evaluation callback inside `fit`.
    if not (config.runtime.eval_every_n_epochs and
            config.eval_data.annotation_file):
      return inputs
  if config.eval_data.input_path or not training:
    inputs['eval_data.input_path'] = config.eval_data.input_path
  return inputs


def check_experiment_inputs(config: Any, training: bool) -> None:
  """`check_shards` for every input of `experiment_inputs`."""
  from tf_mtdet import families  # pylint: disable=g-import-not-at-top
  from tf_mtdet.data import augment  # pylint: disable=g-import-not-at-top
  needs = families.get(config).augmentation_needs() if training else set()
  for field, input_path in experiment_inputs(config, training).items():
    train_input = field == 'train_data.input_path'
    check_shards(input_path, field,
                 needs_masks=train_input and augment.MASKS in needs,
                 needs_semantic=train_input and augment.SEMANTIC in needs)


# Words of the input pipeline's own InvalidArgumentErrors (parsing and
# decoding records); other InvalidArgumentErrors are the model's and pass
# through without a scan of the data.
_INPUT_ERROR_WORDS = ('Feature', 'Example', 'record', 'parse', 'decode',
                      'Decode', 'JPEG', 'PNG', 'GIF', 'BMP')
_IMAGE_ERROR_WORDS = ('decode', 'Decode', 'JPEG', 'PNG', 'GIF', 'BMP')


@contextlib.contextmanager
def naming_bad_shard(inputs: Mapping[str, str],
                     checkpoint_dir: Optional[str] = None) -> Iterator[None]:
  """Turns an input pipeline read error into a `ShardError` naming the shard.

  On a `DataLossError` (a record's checksum or length) or an input
  pipeline's `InvalidArgumentError` (a record that does not parse or whose
  image does not decode), the shards are read again, record by record, to
  find the bad one: cheap checks first (frames, checksums, keys), image
  decoding only if those find nothing and the error was a decoding one.

  Args:
    inputs: `{config field: input path}` of the datasets read inside.
    checkpoint_dir: Where checkpoints are written; the message names the
      latest (the last good state: nothing is saved after the error).

  Raises:
    ShardError: the error came from a bad record of a shard of `inputs`.
      Other errors, and read errors no shard explains, pass unchanged.
  """
  try:
    yield
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    if not isinstance(e, tf.errors.DataLossError) and not any(
        word in e.message for word in _INPUT_ERROR_WORDS):
      raise
    passes = [False]
    if any(word in e.message for word in _IMAGE_ERROR_WORDS):
      passes.append(True)
    cache: dict = {}
    for decode_images in passes:
      for field, input_path in inputs.items():
        try:
          files = list_shards(input_path, field) if input_path else []
        except ShardError:
          continue
        for shard in files:
          problem = find_read_error(shard, decode_images)
          if problem:
            kept = ''
            if checkpoint_dir is not None:
              latest = tf.train.latest_checkpoint(checkpoint_dir)
              kept = (f'; the last checkpoint, {latest}, is kept' if latest
                      else '; no checkpoint had been written')
            raise ShardError(
                f'{field}: {shard}: {problem} (read error during training: '
                f'{errors.tf_reason(e.message)}){kept}; '
                f'{rebuild_hint(shard, _expected(shard, cache).summary)}'
            ) from e
    raise


# Full verification ----------------------------------------------------------

@dataclasses.dataclass
class ShardReport:
  """What `verify_shard` found.

  Attributes:
    path: The shard.
    records: Records read.
    bytes: File size.
    problems: Problems found ('record N: ...' or about the whole shard);
      at most `max_problems` of them.
    summary_path: The build summary it was compared with, if any.
  """
  path: str
  records: int
  bytes: int
  problems: List[str]
  summary_path: Optional[str]

  @property
  def ok(self) -> bool:
    return not self.problems

  def line(self) -> str:
    against = (f', matches {os.path.basename(self.summary_path)}'
               if self.summary_path else '')
    if self.ok:
      return f'{self.path}: ok, {self.records} records, {self.bytes} bytes' \
             f'{against}'
    more = ''
    if len(self.problems) > 1:
      more = f' (and {len(self.problems) - 1} more problem(s))'
    return (f'{self.path}: BAD after {self.records} records: '
            f'{self.problems[0]}{more}')


def _check_record(raw: bytes, max_image_pixels: int) -> Optional[str]:
  """Decodes one record fully; the first problem, or None."""
  problem = check_example_keys(raw)
  if problem:
    return problem
  feature = tf.train.Example.FromString(raw).features.feature
  encoded = feature['image/encoded'].bytes_list.value
  if len(encoded) != 1 or not encoded[0]:
    return 'image/encoded is empty'
  try:
    image_size.check_image_size(encoded[0], max_image_pixels, 'image/encoded')
  except image_size.ImageTooLargeError as e:
    return str(e)
  try:
    image = tf.io.decode_image(encoded[0], channels=3,
                               expand_animations=False)
  except tf.errors.OpError as e:
    return f'image/encoded does not decode: {errors.tf_reason(e.message)}'
  height, width = image.shape[:2]
  declared = [feature[k].int64_list.value for k in ('image/height',
                                                     'image/width')]
  if all(len(v) == 1 for v in declared) and (declared[0][0], declared[1][0]
                                            ) != (height, width):
    return (f'image is {width}x{height} (w x h) but image/width, '
            f'image/height say {declared[1][0]}x{declared[0][0]}')
  coords = [list(feature[f'image/object/bbox/{k}'].float_list.value)
            for k in ('ymin', 'xmin', 'ymax', 'xmax')]
  labels = list(feature['image/object/class/label'].int64_list.value)
  if any(len(c) != len(labels) for c in coords):
    return (f'{len(labels)} class labels but box coordinate lists of '
            f'lengths {[len(c) for c in coords]} (ymin, xmin, ymax, xmax)')
  if labels:
    b = np.array(coords, np.float64)
    if (not np.isfinite(b).all() or (b < 0).any() or (b > 1).any() or
        (b[2] < b[0]).any() or (b[3] < b[1]).any()):
      return 'a box is outside [0, 1] or has max < min'
    if min(labels) < 0:
      return f'negative class label {min(labels)}'
  masks = feature['image/object/mask'].bytes_list.value if (
      'image/object/mask' in feature) else None
  if masks is not None and len(masks) != len(labels):
    return f'{len(masks)} masks for {len(labels)} instances'
  for i, mask in enumerate(masks or []):
    try:
      shape = tf.io.decode_png(mask, channels=1).shape
    except tf.errors.OpError as e:
      return f'mask {i} does not decode: {errors.tf_reason(e.message)}'
    if tuple(shape[:2]) != (height, width):
      return f'mask {i} is {shape[1]}x{shape[0]}, the image {width}x{height}'
  return None


def verify_shard(path: str, max_problems: int = 5,
                 max_image_pixels: int = image_size.DEFAULT_MAX_IMAGE_PIXELS,
                 _cache: Optional[dict] = None) -> ShardReport:
  """Reads and decodes every record of a shard.

  Args:
    path: The shard.
    max_problems: Stop collecting record problems after this many.
    max_image_pixels: Images declaring more pixels are reported, not
      decoded.

  Returns:
    The report; with a build summary beside the shard, its bytes, record
    count and SHA-256 are compared too.
  """
  expected = _expected(path, {} if _cache is None else _cache)
  size = _size(path)
  problems = []
  against = _against_summary(path, expected)
  if against:
    problems.append(against)
  _, framing, _ = scan_framing(path)
  count = 0
  iterator = iter(tf.data.TFRecordDataset(path))
  while len(problems) < max_problems:
    try:
      raw = next(iterator)
    except StopIteration:
      break
    except tf.errors.OpError as e:
      problems.append(framing or f'record {count}: {errors.tf_reason(e.message)}')
      break
    problem = _check_record(raw.numpy(), max_image_pixels)
    if problem:
      problems.append(f'record {count}: {problem}')
    count += 1
  entry = expected.entry
  if entry is not None and not problems:
    if count != int(entry['records']):
      problems.append(f'{count} records but {expected.summary_path} '
                      f'recorded {entry["records"]}')
    digest = hashlib.sha256()
    with _open(path) as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        digest.update(block)
    if digest.hexdigest() != entry.get('sha256', digest.hexdigest()):
      problems.append(f'SHA-256 differs from the one {expected.summary_path}'
                      ' recorded (the file changed since it was built)')
  return ShardReport(path, count, size, problems,
                     expected.summary_path if entry is not None else None)


def verify_tfrecords(pattern: str, **kwargs) -> List[ShardReport]:
  """`verify_shard` for every file of a (comma separated) pattern."""
  cache: dict = {}
  return [verify_shard(p, _cache=cache, **kwargs)
          for p in list_shards(pattern, 'PATTERN')]
