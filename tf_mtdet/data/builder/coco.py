"""Reads a COCO-format instances JSON into a `DatasetSource`, checking every entry."""

import json
import os
from typing import Any

from tf_mtdet.data.builder import records
from tf_mtdet.data.builder import validation


def _load_json(path: str) -> dict[str, Any]:
  try:
    with open(path, 'rb') as f:
      data = json.load(f)
  except OSError as e:
    raise records.BuildError(f'{path}: cannot read annotations: {e}') from e
  except ValueError as e:
    raise records.BuildError(f'{path}: not valid JSON: {e}') from e
  if not isinstance(data, dict):
    raise records.BuildError(f'{path}: top level is not a JSON object')
  for key in ('images', 'categories'):
    if not isinstance(data.get(key), list):
      raise records.BuildError(f'{path}: missing "{key}" list')
  if not isinstance(data.get('annotations', []), list):
    raise records.BuildError(f'{path}: "annotations" is not a list')
  return data


def _read_categories(path: str, entries: list[Any]) -> list[records.Category]:
  categories, seen = [], set()
  for i, c in enumerate(entries):
    try:
      cid, name = int(c['id']), str(c['name'])
    except (KeyError, TypeError, ValueError) as e:
      raise records.BuildError(
          f'{path}: categories[{i}] needs an integer "id" and a "name"') from e
    if cid in seen:
      raise records.BuildError(f'{path}: category id {cid} appears twice')
    if cid <= 0:
      raise records.BuildError(
          f'{path}: category id {cid} must be > 0 (0 is the background)')
    seen.add(cid)
    categories.append(
        records.Category(cid, name, str(c.get('supercategory', ''))))
  return categories


def read_coco(annotations_file: str, image_dir: str,
              log: records.ProblemLog, need_segmentation: bool,
              box_masks: bool = False) -> records.DatasetSource:
  """Reads and checks a COCO instances file.

  Args:
    annotations_file: Path of the COCO JSON.
    image_dir: Directory that `file_name` entries are relative to.
    log: Where bad entries are reported (raises in strict mode).
    need_segmentation: Whether masks will be written, so segmentations are
      checked (polygons need >= 3 points, RLE must match the image size).
    box_masks: Instances without a segmentation get their box as a mask instead
      of being reported.

  Returns:
    The dataset, images in file order, instances in file order per image.

  Raises:
    BuildError: The file cannot be read, is not COCO-shaped, or (strict) has a
      bad entry.
  """
  data = _load_json(annotations_file)
  name = os.path.basename(annotations_file)
  categories = _read_categories(annotations_file, data['categories'])
  category_ids = {c.id for c in categories}

  images: dict[int, records.ImageRecord] = {}
  for i, entry in enumerate(data['images']):
    where = f'{name}: images[{i}]'
    try:
      image_id = int(entry['id'])
      file_name = str(entry['file_name'])
      height, width = int(entry['height']), int(entry['width'])
    except (KeyError, TypeError, ValueError):
      log.report(records.Problem(
          'invalid_image_entry', where,
          'needs integer "id", "height", "width" and a "file_name"', 'image'))
      continue
    where = f'{name}: image id {image_id} ({file_name})'
    if image_id in images:
      log.report(records.Problem(
          'duplicate_image_id', where,
          f'image id {image_id} already used by '
          f'{images[image_id].file_name}; this entry is skipped', 'image'))
      continue
    if height <= 0 or width <= 0:
      log.report(records.Problem(
          'invalid_image_entry', where,
          f'height/width {height}x{width} must be > 0', 'image'))
      continue
    images[image_id] = records.ImageRecord(
        image_id=image_id, file_name=file_name,
        path=os.path.join(image_dir, file_name), height=height, width=width,
        source_entry=dict(entry))

  seen_annotation_ids = set()
  for i, ann in enumerate(data.get('annotations', [])):
    ann_id = ann.get('id', f'#{i}') if isinstance(ann, dict) else f'#{i}'
    where = f'{name}: annotation id {ann_id}'
    if not isinstance(ann, dict) or 'image_id' not in ann:
      log.report(records.Problem('invalid_annotation', where,
                                 'not an object with an "image_id"'))
      continue
    where += f' (image id {ann["image_id"]})'
    try:
      ann_id = int(ann['id'])
    except (KeyError, TypeError, ValueError):
      log.report(records.Problem('invalid_annotation', where,
                                 'needs an integer "id"'))
      continue
    if ann_id in seen_annotation_ids:
      log.report(records.Problem('duplicate_annotation_id', where,
                                 f'annotation id {ann_id} is used twice'))
      continue
    seen_annotation_ids.add(ann_id)
    image = images.get(ann['image_id'])
    if image is None:
      log.report(records.Problem(
          'annotation_for_missing_image', where,
          f'image id {ann["image_id"]} is not in "images"'))
      continue
    try:
      category_id = int(ann['category_id'])
    except (KeyError, TypeError, ValueError):
      log.report(records.Problem('invalid_annotation', where,
                                 'needs an integer "category_id"'))
      continue
    if category_id not in category_ids:
      log.report(records.Problem(
          'unknown_category_id', where,
          f'category id {category_id} is not in "categories"'))
      continue
    box = validation.check_box(ann.get('bbox'), image.width, image.height)
    if isinstance(box, str):
      reason, detail = validation.split_reason(box)
      log.report(records.Problem(reason, where, detail))
      continue
    segmentation = ann.get('segmentation')
    if need_segmentation:
      error = validation.check_segmentation(segmentation, image.width,
                                            image.height)
      if error is not None:
        reason, detail = validation.split_reason(error)
        if reason == 'missing_segmentation' and box_masks:
          segmentation = None
        else:
          log.report(records.Problem(reason, where, detail))
          continue
    is_crowd = bool(ann.get('iscrowd', 0))
    try:
      area = float(ann['area'])
    except (KeyError, TypeError, ValueError):
      area = box[2] * box[3]
    image.instances.append(records.Instance(
        annotation_id=ann_id, category_id=category_id, bbox=box, area=area,
        is_crowd=is_crowd, segmentation=segmentation))

  info = data.get('info') if isinstance(data.get('info'), dict) else {}
  return records.DatasetSource(
      images=list(images.values()), categories=categories,
      description={'format': 'coco', 'annotations': annotations_file,
                   'images': image_dir, 'info': info})
