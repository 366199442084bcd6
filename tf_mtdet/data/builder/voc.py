"""Reads a Pascal VOC-style folder (XML boxes) into a `DatasetSource`.

Layout: `<root>/Annotations/*.xml` and `<root>/JPEGImages/` (the VOC devkit), or
the lowercase `annotations/` and `images/` many exported data sets use. Boxes
follow detectron2's reading of the 1-based VOC pixel indices: `x0 = xmin - 1`,
`y0 = ymin - 1`, `x1 = xmax`, `y1 = ymax`, so a box covering a whole W-wide image
is `[0, W]`.
"""

import os
from typing import Optional, Sequence
import xml.etree.ElementTree as ET

from PIL import Image

from tf_mtdet.data.builder import records
from tf_mtdet.data.builder import validation

_ANNOTATION_DIRS = ('Annotations', 'annotations')
_IMAGE_DIRS = ('JPEGImages', 'images', 'Images')


def _find_dir(root: str, names: Sequence[str]) -> str:
  for n in names:
    if os.path.isdir(os.path.join(root, n)):
      return os.path.join(root, n)
  raise records.BuildError(
      f'{root}: none of {", ".join(names)} is a directory (is this a VOC root?)')


def _text(node: Optional[ET.Element], tag: str) -> Optional[str]:
  child = node.find(tag) if node is not None else None
  return child.text.strip() if child is not None and child.text else None


def _difficult(obj: ET.Element) -> Optional[bool]:
  """The object's `difficult` flag: absent is 0; exporters write '1', '1.0'
  or 'true'. None for anything else."""
  text = _text(obj, 'difficult')
  if text is None:
    return False
  if text.lower() in ('true', 'false'):
    return text.lower() == 'true'
  try:
    value = float(text)
  except ValueError:
    return None
  return bool(value) if value in (0.0, 1.0) else None


def _read_ids(root: str, annotation_dir: str,
              split_file: Optional[str]) -> list[str]:
  if split_file is None:
    return sorted(f[:-4] for f in os.listdir(annotation_dir)
                  if f.endswith('.xml'))
  path = split_file if os.path.exists(split_file) else os.path.join(
      root, split_file)
  try:
    with open(path, encoding='utf-8') as f:
      # VOC's per-class split files carry a second column (1/-1); the id is first.
      return [line.split()[0] for line in f if line.strip()]
  except OSError as e:
    raise records.BuildError(f'{split_file}: cannot read split file: {e}') from e


def discover_classes(voc_root: str, split_file: Optional[str] = None) -> list[str]:
  """Sorted object names found in the XML files (used when no class list is given)."""
  annotation_dir = _find_dir(voc_root, _ANNOTATION_DIRS)
  names = set()
  for stem in _read_ids(voc_root, annotation_dir, split_file):
    try:
      tree = ET.parse(os.path.join(annotation_dir, stem + '.xml'))
    except (OSError, ET.ParseError):
      continue  # reported when the file is read for real
    for obj in tree.getroot().iter('object'):
      name = _text(obj, 'name')
      if name:
        names.add(name)
  return sorted(names)


def read_voc(voc_root: str, log: records.ProblemLog,
             split_file: Optional[str] = None,
             class_names: Optional[Sequence[str]] = None) -> records.DatasetSource:
  """Reads and checks a VOC folder.

  Args:
    voc_root: Folder holding the annotation and image folders.
    log: Where bad entries are reported (raises in strict mode).
    split_file: Text file of image ids (VOC `ImageSets/Main/*.txt`), absolute
      or relative to `voc_root`; default: every XML file, sorted.
    class_names: Category names in id order (ids from 1); default: the sorted
      names found in the XML files. Objects of other names are reported as
      'unknown_category_id'.

  Returns:
    The dataset; image ids are 1..N in split (or sorted) order.
  """
  annotation_dir = _find_dir(voc_root, _ANNOTATION_DIRS)
  image_dir = _find_dir(voc_root, _IMAGE_DIRS)
  if class_names is None:
    class_names = discover_classes(voc_root, split_file)
  categories = [records.Category(i + 1, n) for i, n in enumerate(class_names)]
  name_to_id = {c.name: c.id for c in categories}

  images = []
  annotation_id = 0
  for stem in _read_ids(voc_root, annotation_dir, split_file):
    xml_path = os.path.join(annotation_dir, stem + '.xml')
    xml_name = os.path.relpath(xml_path, voc_root)
    try:
      root = ET.parse(xml_path).getroot()
    except OSError as e:
      log.report(records.Problem('missing_annotation_file', xml_name,
                                 f'cannot read: {e.strerror or e}', 'image'))
      continue
    except ET.ParseError as e:
      log.report(records.Problem('invalid_annotation_file', xml_name,
                                 f'not valid XML: {e}', 'image'))
      continue
    file_name = _text(root, 'filename') or stem + '.jpg'
    if not os.path.exists(os.path.join(image_dir, file_name)):
      # Exported sets often keep a stale <filename>; the id is authoritative.
      for ext in ('.jpg', '.jpeg', '.png', '.JPG'):
        if os.path.exists(os.path.join(image_dir, stem + ext)):
          file_name = stem + ext
          break
    size = root.find('size')
    try:
      width, height = int(_text(size, 'width') or 0), int(
          _text(size, 'height') or 0)
    except ValueError:
      width = height = 0
    if width <= 0 or height <= 0:
      # Some tools write <size> 0; the image header is cheap to read.
      image_path = os.path.join(image_dir, file_name)
      try:
        with Image.open(image_path) as im:
          width, height = im.size
      except OSError as e:
        missing = not os.path.exists(image_path)
        log.report(records.Problem(
            'missing_image_file' if missing else 'corrupt_image_file',
            os.path.relpath(image_path, voc_root),
            'file does not exist' if missing else f'cannot read image: {e}',
            'image'), dropped_annotations=len(root.findall('object')))
        continue
    image = records.ImageRecord(
        image_id=len(images) + 1, file_name=file_name,
        path=os.path.join(image_dir, file_name), height=height, width=width,
        source_entry={'file_name': file_name, 'height': height,
                      'width': width, 'voc_id': stem})
    for k, obj in enumerate(root.iter('object')):
      annotation_id += 1
      where = f'{xml_name}: object {k}'
      name = _text(obj, 'name')
      if name not in name_to_id:
        log.report(records.Problem(
            'unknown_category_id', where,
            f'class {name!r} is not one of {list(name_to_id)}'))
        continue
      box_node = obj.find('bndbox')
      try:
        xmin, ymin, xmax, ymax = (float(_text(box_node, t))
                                  for t in ('xmin', 'ymin', 'xmax', 'ymax'))
      except (TypeError, ValueError):
        log.report(records.Problem('invalid_annotation', where,
                                   'bndbox needs numeric xmin/ymin/xmax/ymax'))
        continue
      box = validation.check_box(
          [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1], width, height)
      if isinstance(box, str):
        reason, detail = validation.split_reason(box)
        log.report(records.Problem(reason, where, detail))
        continue
      difficult = _difficult(obj)
      if difficult is None:
        log.report(records.Problem(
            'invalid_annotation', where,
            f'difficult must be 0 or 1, got {_text(obj, "difficult")!r}'))
        continue
      image.instances.append(records.Instance(
          annotation_id=annotation_id, category_id=name_to_id[name], bbox=box,
          area=box[2] * box[3], difficult=difficult))
    images.append(image)

  return records.DatasetSource(
      images=images, categories=categories,
      description={'format': 'voc', 'voc_root': voc_root,
                   'split': split_file})
