"""Ground truth of TFRecord shards drawn as PNGs (`tf-mtdet show-data`).

A look at a conversion before training on it (mmdetection's
`browse_dataset`): each example becomes `OUT/<source_id>.png` with its boxes,
class names and instance masks drawn by `serving.visualize` (the colours
predictions get), and, when the example has a semantic class map, the map
drawn beside it. Crowd and VOC difficult instances are labelled so.

With a config (`after_augmentation`), the examples go through that config's
training decoder and parser first and the picture shows what the model is fed:
the resized, flipped and padded image (de-normalised), the boxes it is
trained on, the mask targets pasted back from their crops, and the semantic
target.
"""

import dataclasses
import os
import re
import sys
from typing import (Any, Callable, Iterator, List, Mapping, Optional, Sequence,
                    TextIO)
import uuid

import numpy as np
from PIL import Image
import tensorflow as tf

from tf_mtdet.data import augment
from tf_mtdet.data import decoder as decoder_lib
from tf_mtdet.serving import export as export_lib
from tf_mtdet.serving import visualize

_SHARD_SUFFIX = re.compile(r'-\d{5}-of-\d{5}\.tfrecord$')
_SEPARATOR_PX = 4  # White gap between the instance and the semantic panel.


@dataclasses.dataclass
class Example:
  """What one picture shows.

  Attributes:
    source_id: The record's `image/source_id`.
    image: [H, W, 3] uint8 RGB.
    boxes: [n, 4] ymin, xmin, ymax, xmax in `image` pixels.
    classes: [n] class ids.
    masks: [n, H, W] 0/1 instance masks, or None.
    semantic: [H, W] class map, or None.
    tags: [n] text appended to the class name ('crowd', ...), '' for none.
    ignore_label: The semantic map's "not labelled" value.
  """
  source_id: str
  image: np.ndarray
  boxes: np.ndarray
  classes: np.ndarray
  masks: Optional[np.ndarray] = None
  semantic: Optional[np.ndarray] = None
  tags: Optional[List[str]] = None
  ignore_label: int = 255


def find_shards(pattern: str) -> List[str]:
  """Sorted TFRecord files matching `pattern` (comma-separated patterns ok).

  Raises:
    ValueError: nothing matches, or only the builder's JSON side files do.
  """
  files, json_files = [], []
  for part in (p.strip() for p in pattern.split(',')):
    if not part:
      continue
    for path in sorted(tf.io.gfile.glob(part)):
      (json_files if path.endswith('.json') else files).append(path)
  if not files:
    hint = (' (only JSON files: use PREFIX-*.tfrecord)' if json_files else '')
    raise ValueError(f'{pattern}: no TFRecord files match{hint}')
  return list(dict.fromkeys(files))


def find_label_map(shards: Sequence[str]) -> Optional[str]:
  """The builder's `PREFIX-label_map.json` beside the first shard having one."""
  for shard in shards:
    prefix = _SHARD_SUFFIX.sub('', shard)
    if prefix != shard and os.path.exists(prefix + '-label_map.json'):
      return prefix + '-label_map.json'
  return None


def _records(shards: Sequence[str], fn: Callable[[tf.Tensor], Any],
             num: Optional[int]) -> Iterator[Any]:
  """`fn(serialized)` of the first `num` records, as numpy, in file order.

  Raises:
    ValueError: a record cannot be read or decoded (names file and record).
  """
  count = 0
  for shard in shards:
    if num is not None and count >= num:
      return
    dataset = tf.data.TFRecordDataset(shard).map(fn)
    if num is not None:
      dataset = dataset.take(num - count)
    iterator = iter(dataset)
    index = 0
    while True:
      try:
        element = next(iterator)
      except StopIteration:
        break
      except tf.errors.OpError as e:
        message = (e.message or str(e)).strip().splitlines()[0]
        raise ValueError(f'{shard}: record {index}: cannot read or decode it: '
                         f'{message}') from e
      yield tf.nest.map_structure(lambda t: t.numpy(), element)
      index += 1
      count += 1


def _source_id(value: Any) -> str:
  return value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(
      value)


def raw_examples(shards: Sequence[str],
                 num: Optional[int] = None) -> Iterator[Example]:
  """The ground truth of the records as written (the project's decoder)."""
  decoder = decoder_lib.TfExampleDecoder(include_mask=True,
                                         include_semantic=True)
  semantic_feature = {decoder_lib.SEMANTIC_KEY: tf.io.FixedLenFeature(
      (), tf.string, default_value='')}

  def decode(serialized):
    decoded = decoder.decode(serialized)
    has_semantic = tf.strings.length(tf.io.parse_single_example(
        serialized, semantic_feature)[decoder_lib.SEMANTIC_KEY]) > 0
    return decoded, has_semantic

  for decoded, has_semantic in _records(shards, decode, num):
    image = decoded['image']
    height, width = image.shape[:2]
    boxes = decoded['groundtruth_boxes'] * np.array(
        [height, width, height, width], np.float32)
    classes = decoded['groundtruth_classes']
    masks = decoded.get('groundtruth_instance_masks')
    # Records without masks decode to none, whatever the instance count.
    masks = ((masks > 0).astype(np.uint8)
             if masks is not None and len(masks) == len(classes) and len(
                 classes) else None)
    tags = []
    for i in range(len(classes)):
      flags = []
      if decoded['groundtruth_is_crowd'][i]:
        flags.append('crowd')
      if 'groundtruth_difficult' in decoded and (
          decoded['groundtruth_difficult'][i]):
        flags.append('difficult')
      tags.append(' '.join(flags))
    yield Example(
        source_id=_source_id(decoded['source_id']), image=image, boxes=boxes,
        classes=classes, masks=masks,
        semantic=decoded['groundtruth_semantic'] if has_semantic else None,
        tags=tags)


def _augmented_examples(config_path: str, overrides: Sequence[str],
                        pattern: str,
                        num: Optional[int]) -> Iterator[Example]:
  """What the training parser of an experiment feeds the model.

  The one place that knows the training input API (config, decoder, parser,
  label keys); the shards are `pattern`, not the config's input path.
  """
  # pylint: disable=g-import-not-at-top
  from tf_mtdet import families
  from tf_mtdet.config import experiment
  from tf_mtdet.data import pipeline
  # pylint: enable=g-import-not-at-top
  config = experiment.load_config(config_path, list(overrides))
  data_cfg = config.train_data
  parser = families.get(config).build_parser(data_cfg)
  decoder = pipeline.build_decoder(data_cfg, parser)
  parse = parser.parse_fn(is_training=True)

  def decode_and_parse(serialized):
    decoded = decoder.decode(serialized)
    image, labels = parse(decoded)
    return decoded['source_id'], tf.cast(image, tf.float32), labels

  for source_id, image, labels in _records(find_shards(pattern),
                                           decode_and_parse, num):
    pixels = np.clip(np.round(augment.denormalize(
        image, parser.augmenter.normalization)), 0, 255).astype(np.uint8)
    height, width = pixels.shape[:2]
    valid = labels['gt_classes'] >= 0
    masks = None
    if 'gt_masks' in labels:
      # The mask targets are crops of the outer boxes: paste them back.
      outer = labels['gt_outer_boxes'][valid]
      crops = labels['gt_masks'][valid]
      masks = visualize.full_image_masks({'boxes': outer, 'masks': crops},
                                         height, width)
    yield Example(
        source_id=_source_id(source_id), image=pixels,
        boxes=labels['gt_boxes'][valid], classes=labels['gt_classes'][valid],
        masks=masks, semantic=labels.get('gt_semantic'),
        tags=[''] * int(valid.sum()),
        ignore_label=data_cfg.parser.semantic_ignore_label)


def draw(example: Example, names: Mapping[int, str]) -> np.ndarray:
  """The picture of one example: instances, and the semantic map beside."""
  tags = example.tags or [''] * len(example.classes)
  class_names = []
  for class_id, tag in zip(example.classes, tags):
    name = names.get(int(class_id), str(int(class_id)))
    class_names.append(f'{name} ({tag})' if tag else name)
  ground_truth = {'boxes': example.boxes, 'classes': example.classes,
                  'class_names': class_names}
  if example.masks is not None:
    ground_truth['full_masks'] = example.masks
  picture = visualize.draw_detections(example.image, ground_truth)
  if example.semantic is not None:
    semantic = visualize.draw_semantic(example.image, example.semantic,
                                       ignore_label=example.ignore_label)
    gap = np.full((picture.shape[0], _SEPARATOR_PX, 3), 255, np.uint8)
    picture = np.concatenate([picture, gap, semantic], axis=1)
  return picture


def write_png(path: str, image: np.ndarray) -> None:
  """Writes a PNG atomically (temporary file in the same folder, renamed)."""
  folder, name = os.path.split(path)
  # open(..., 'x') rather than mkstemp: the file gets the umask's mode.
  tmp = os.path.join(folder, f'.tmp-{uuid.uuid4().hex[:8]}-{name}')
  try:
    with open(tmp, 'xb') as f:
      Image.fromarray(image).save(f, format='PNG')
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _file_name(source_id: str, taken: set) -> str:
  stem = re.sub(r'[^A-Za-z0-9._-]+', '_', source_id).strip('.') or 'image'
  name, k = f'{stem}.png', 1
  while name in taken:
    k += 1
    name = f'{stem}-{k}.png'
  taken.add(name)
  return name


@dataclasses.dataclass
class ShowResult:
  pictures: List[str]
  label_map: Optional[str]


def show_data(pattern: str, out_dir: str, num: Optional[int] = 20,
              label_map: Optional[str] = None,
              after_augmentation: Optional[str] = None,
              overrides: Sequence[str] = (),
              log: Optional[TextIO] = sys.stderr) -> ShowResult:
  """Draws the first `num` examples of the shards into `out_dir`.

  Args:
    pattern: TFRecord file pattern(s), comma separated.
    out_dir: Output folder (created); pictures are `<source_id>.png`
      (`-2`, `-3`, ... appended to repeated ids).
    num: Examples to draw; None for all.
    label_map: Class names (`PREFIX-label_map.json` or `{id: name}` JSON);
      default: the builder's label map beside the shards.
    after_augmentation: Experiment YAML whose training parser the examples go
      through first.
    overrides: `key=value` config overrides (with `after_augmentation`).
    log: Where notes go (no label map found).

  Returns:
    The pictures written, and the label map used.

  Raises:
    ValueError: no matching shards, an unreadable record or label map, or a
      bad config (the message names it).
  """
  if num is not None and num < 1:
    raise ValueError(f'--num must be >= 1, got {num}')
  if overrides and not after_augmentation:
    raise ValueError('--set applies to the --after-augmentation config')
  shards = find_shards(pattern)
  if after_augmentation:
    examples = _augmented_examples(after_augmentation, overrides, pattern, num)
  else:
    examples = raw_examples(shards, num)
  label_map = label_map or find_label_map(shards)
  names = export_lib.read_label_map(label_map)
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise ValueError(f'{out_dir}: cannot create the output folder: '
                     f'{e.strerror or e}') from e
  pictures, taken = [], set()
  for example in examples:
    path = os.path.join(out_dir, _file_name(example.source_id, taken))
    write_png(path, draw(example, names))
    pictures.append(path)
  # After the records were read: a bad shard gets its one error line alone.
  if not names and log is not None:
    print('show-data: no PREFIX-label_map.json beside the shards; labels are '
          'class ids (give --label-map)', file=log)
  return ShowResult(pictures=pictures, label_map=label_map or None)
