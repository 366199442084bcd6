"""`tf-mtdet data-stats`: what TFRecord shards hold (instances per class,
boxes per image, box size and aspect-ratio histograms) and, with a config,
its anchor coverage."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Mapping, Optional, Sequence, TextIO

import numpy as np
import tensorflow as tf

from tf_mtdet.data import show
from tf_mtdet.data import verify
from tf_mtdet.tools.analysis import anchor_coverage
from tf_mtdet.tools.analysis import outputs
from tf_mtdet.utils import progress as progress_lib

_FEATURES = {
    'image/height': tf.io.FixedLenFeature((), tf.int64),
    'image/width': tf.io.FixedLenFeature((), tf.int64),
    'image/object/bbox/ymin': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/xmin': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/ymax': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/xmax': tf.io.VarLenFeature(tf.float32),
    'image/object/class/label': tf.io.VarLenFeature(tf.int64),
    'image/object/is_crowd': tf.io.VarLenFeature(tf.int64),
}


@dataclasses.dataclass
class ImageBoxes:
  """One record's ground truth: size, [G, 4] yxyx pixel boxes, classes,
  crowd flags."""
  height: int
  width: int
  boxes: np.ndarray
  classes: np.ndarray
  crowd: np.ndarray


def _parse(serialized):
  parsed = tf.io.parse_single_example(serialized, _FEATURES)
  dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
           for k, v in parsed.items()}
  boxes = tf.stack([dense[f'image/object/bbox/{c}']
                    for c in ('ymin', 'xmin', 'ymax', 'xmax')], axis=-1)
  return (dense['image/height'], dense['image/width'], boxes,
          dense['image/object/class/label'], dense['image/object/is_crowd'])


def read_boxes(shards: Sequence[str],
               progress: Optional[TextIO] = None) -> list[ImageBoxes]:
  """The boxes of every record (images are not decoded).

  Raises:
    ValueError: a record that cannot be parsed (names the shard and record).
  """
  line = progress_lib.ProgressLine('data-stats', progress, unit='records')
  images = []
  for shard in shards:
    iterator = iter(tf.data.TFRecordDataset(shard).map(_parse))
    index = 0
    while True:
      try:
        height, width, boxes, classes, crowd = next(iterator)
      except StopIteration:
        break
      except tf.errors.OpError as e:
        raise ValueError(f'{shard}: record {index}: cannot parse its boxes: '
                         f'{e.message.splitlines()[0]}') from None
      height, width = int(height), int(width)
      crowd = crowd.numpy().astype(bool)
      if crowd.size != classes.shape[0]:
        crowd = np.zeros([classes.shape[0]], bool)
      images.append(ImageBoxes(
          height, width,
          boxes.numpy().astype(np.float64) * [height, width, height, width],
          classes.numpy(), crowd))
      index += 1
      line.update()
  line.finish()
  return images


def _class_names(label_map: Optional[str]) -> dict[int, str]:
  if not label_map:
    return {}
  try:
    with open(label_map, encoding='utf-8') as f:
      data = json.load(f)
    return {int(c['id']): str(c['name']) for c in data.get('categories', [])}
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f'{label_map}: cannot read class names: {e}') from None


@dataclasses.dataclass
class DataStats:
  """Statistics of the non-crowd boxes (crowd ones are only counted)."""
  images: int
  instances_per_class: dict[str, int]
  crowd: int
  boxes_per_image: np.ndarray
  sizes: np.ndarray        # sqrt(area), original pixels
  aspect_ratios: np.ndarray  # width / height
  coverage: Optional[anchor_coverage.Coverage] = None

  def as_dict(self) -> dict:
    def summary(values):
      if not values.size:
        return None
      return {'min': float(values.min()), 'median': float(np.median(values)),
              'max': float(values.max()), 'mean': float(values.mean())}
    result = {
        'images': self.images, 'instances': int(self.sizes.size),
        'crowd': self.crowd, 'instances_per_class': self.instances_per_class,
        'boxes_per_image': summary(self.boxes_per_image.astype(np.float64)),
        'box_size_px': summary(self.sizes),
        'aspect_ratio_w_over_h': summary(self.aspect_ratios)}
    if self.coverage is not None:
      result['anchor_coverage'] = self.coverage.as_dict()
    return result

  def format(self) -> str:
    d = self.as_dict()
    lines = [f'{d["images"]} images, {d["instances"]} instances '
             f'({self.crowd} crowd left out)']
    width = max([len(n) for n in self.instances_per_class] + [5])
    lines.append('instances per class:')
    lines += [f'  {name.ljust(width)} {count}'
              for name, count in self.instances_per_class.items()]
    for title, key, fmt in (('boxes per image', 'boxes_per_image', '.1f'),
                            ('box size sqrt(area) px', 'box_size_px', '.1f'),
                            ('aspect ratio w/h', 'aspect_ratio_w_over_h',
                             '.2f')):
      s = d[key]
      if s:
        lines.append(f'{title}: min {s["min"]:{fmt}}, median '
                     f'{s["median"]:{fmt}}, mean {s["mean"]:{fmt}}, max '
                     f'{s["max"]:{fmt}}')
    if self.coverage is not None:
      lines.append(self.coverage.format())
    return '\n'.join(lines)


def compute(images: Sequence[ImageBoxes], class_names: Mapping[int, str],
            config=None) -> DataStats:
  """Statistics of the records, and the config's anchor coverage."""
  counts: dict[int, int] = {}
  sizes, ratios, per_image, crowd = [], [], [], 0
  kept = []
  for image in images:
    boxes = image.boxes[~image.crowd]
    crowd += int(image.crowd.sum())
    for c in image.classes[~image.crowd]:
      counts[int(c)] = counts.get(int(c), 0) + 1
    h = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    w = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    sizes.append(np.sqrt(h * w))
    ratios.append(w / np.maximum(h, 1e-9))
    per_image.append(len(boxes))
    kept.append((image.height, image.width, boxes))
  stats = DataStats(
      len(images),
      {class_names.get(c, str(c)): n for c, n in sorted(counts.items())},
      crowd, np.array(per_image, np.int64),
      np.concatenate(sizes) if sizes else np.zeros([0]),
      np.concatenate(ratios) if ratios else np.zeros([0]))
  if config is not None:
    anchors = anchor_coverage.anchor_set(config)
    stats.coverage = anchor_coverage.coverage(
        anchors, anchor_coverage.InputScaler(config), kept)
  return stats


def plot(path: str, stats: DataStats) -> None:
  """Instances per class, boxes per image, box size and aspect-ratio
  histograms, and the anchor coverage per size when computed."""
  panels = 5 if stats.coverage is not None else 4
  cols = 3 if panels == 5 else 2
  rows = math.ceil(panels / cols)
  figure = outputs.new_figure(4.4 * cols, 3.2 * rows)
  axes = figure.add_subplot(rows, cols, 1)
  names = list(stats.instances_per_class)
  axes.bar(range(len(names)), list(stats.instances_per_class.values()))
  axes.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6
                  else 0, ha='right' if len(names) > 6 else 'center',
                  fontsize=7)
  axes.set_title('instances per class', fontsize=10)
  axes = figure.add_subplot(rows, cols, 2)
  top = int(stats.boxes_per_image.max()) if stats.boxes_per_image.size else 1
  axes.hist(stats.boxes_per_image, bins=np.arange(top + 2) - 0.5)
  axes.set_title('boxes per image', fontsize=10)
  axes = figure.add_subplot(rows, cols, 3)
  if stats.sizes.size:
    axes.hist(stats.sizes, bins=np.geomspace(max(stats.sizes.min(), 1.0),
                                             max(stats.sizes.max(), 2.0), 20))
    outputs.log_axis(axes)
  axes.set_title('box size sqrt(area), original px', fontsize=10)
  axes = figure.add_subplot(rows, cols, 4)
  if stats.aspect_ratios.size:
    ratios = np.clip(stats.aspect_ratios, 1e-2, 1e2)
    axes.hist(ratios, bins=np.geomspace(ratios.min(), max(ratios.max(),
                                                          ratios.min() * 2),
                                        20))
    outputs.log_axis(axes)
  axes.set_title('aspect ratio width / height', fontsize=10)
  if stats.coverage is not None:
    axes = figure.add_subplot(rows, cols, 5)
    coverage = stats.coverage
    buckets = coverage.per_bucket()
    x = np.arange(len(buckets))
    axes.bar(x - 0.2, [100 * share for _, _, share in buckets], 0.4,
             label=f'IoU >= {coverage.threshold:g} (positive)')
    axes.bar(x + 0.2, [100 * share for _, _, share in
                       coverage.per_bucket(coverage.negative_threshold)], 0.4,
             label=f'IoU >= {coverage.negative_threshold:g} (negative '
             'threshold)', alpha=0.6)
    axes.set_xticks(x, [f'{label}\n({n})' for label, n, _ in buckets],
                    fontsize=6)
    axes.set_ylim(0, 125)
    axes.set_ylabel('% of boxes: best anchor reaches', fontsize=8)
    axes.legend(fontsize=6, loc='upper center', ncol=2)
    axes.set_title(f'anchor coverage: {100 * coverage.covered:.1f}% at IoU '
                   f'>= {coverage.threshold:g}', fontsize=10)
    axes.set_xlabel('box size sqrt(area) at the input (boxes)', fontsize=8)
  for axes in figure.axes:
    axes.tick_params(labelsize=7)
  figure.tight_layout()
  outputs.save_figure(figure, path)


def data_stats(pattern: str, config=None, label_map: Optional[str] = None,
               progress: Optional[TextIO] = None) -> DataStats:
  """Reads the shards `pattern` matches and computes their statistics.

  Raises:
    ValueError: no shard matches, a file is not a whole detection TFRecord,
      or a record cannot be parsed.
  """
  shards = show.find_shards(pattern)
  verify.check_shards(','.join(shards), field='PATTERN')
  names = _class_names(label_map or show.find_label_map(shards))
  if config is not None:  # Unbuildable anchors fail before the reading.
    anchor_coverage.anchor_set(config).anchors(
        anchor_coverage.InputScaler(config).padded_size)
  return compute(read_boxes(shards, progress), names, config)
