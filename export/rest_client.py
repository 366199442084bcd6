"""Sends an image file to TF Serving's REST API and prints the detections.

    python export/rest_client.py --image photo.jpg \
        --server http://localhost:8501 --model mtdet [--version 3]

Uses the `image_bytes` signature (the file's bytes, base64 in a `{"b64": ...}`
object), so any JPEG, PNG, GIF or BMP works and no image library is needed.
Standard library only.
"""

import argparse
import base64
import json
import sys
from typing import Any, Dict, List, Optional, Sequence
import urllib.error
import urllib.request

def build_request(image_bytes: bytes,
                  signature_name: str = 'image_bytes') -> Dict[str, Any]:
  """The row-format `:predict` body for one encoded image."""
  return {
      'signature_name': signature_name,
      'instances': [{'b64': base64.b64encode(image_bytes).decode('ascii')}],
  }


def predict_url(server: str, model: str, version: Optional[int] = None) -> str:
  """`<server>/v1/models/<model>[/versions/<version>]:predict`."""
  path = f'/v1/models/{model}'
  if version is not None:
    path += f'/versions/{int(version)}'
  return server.rstrip('/') + path + ':predict'


def parse_response(response: Dict[str, Any],
                   score_threshold: float = 0.0) -> List[Dict[str, Any]]:
  """The first image's detections from a row-format response.

  Args:
    response: The decoded JSON response.
    score_threshold: Detections below it are dropped.

  Returns:
    One dict per detection: `box` [ymin, xmin, ymax, xmax] in original image
    pixels, `score`, `class_id`, `class_name`.

  Raises:
    RuntimeError: the server answered with an error.
  """
  if 'error' in response:
    raise RuntimeError(f'server error: {response["error"]}')
  prediction = response['predictions'][0]
  detections = []
  for i in range(int(prediction['num_detections'])):
    score = float(prediction['detection_scores'][i])
    if score < score_threshold:
      continue
    detections.append({
        'box': [float(v) for v in prediction['detection_boxes'][i]],
        'score': score,
        'class_id': int(prediction['detection_classes'][i]),
        'class_name': prediction['detection_class_names'][i],
    })
  return detections


def format_detections(detections: Sequence[Dict[str, Any]]) -> str:
  lines = [f'{len(detections)} detection(s)']
  for d in detections:
    box = ', '.join(f'{v:.1f}' for v in d['box'])
    name = d['class_name'] or str(d['class_id'])
    lines.append(f'  {name:<20s} {d["score"]:.3f}  [{box}]')
  return '\n'.join(lines)


def send(url: str, body: Dict[str, Any], timeout: float) -> Dict[str, Any]:
  """POSTs the JSON body; returns the reply, or an HTTP error's `{"error"}`."""
  request = urllib.request.Request(
      url, data=json.dumps(body).encode('utf-8'),
      headers={'Content-Type': 'application/json'}, method='POST')
  try:
    with urllib.request.urlopen(request, timeout=timeout) as reply:
      return json.loads(reply.read())
  except urllib.error.HTTPError as e:
    text = e.read().decode('utf-8', 'replace')
    try:
      return json.loads(text)
    except json.JSONDecodeError:
      return {'error': f'HTTP {e.code}: {text}'}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--image', required=True, help='JPEG/PNG/GIF/BMP file')
  p.add_argument('--server', default='http://localhost:8501',
                 help='REST endpoint (default: %(default)s)')
  p.add_argument('--model', default='mtdet', help='model name in the config')
  p.add_argument('--version', type=int, help='version (default: latest)')
  p.add_argument('--signature', default='image_bytes')
  p.add_argument('--score-threshold', type=float, default=0.3)
  p.add_argument('--timeout', type=float, default=60.0, help='seconds')
  p.add_argument('--json', action='store_true',
                 help='print the detections as JSON')
  return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  try:
    with open(args.image, 'rb') as f:
      image_bytes = f.read()
  except OSError as e:
    print(f'{args.image}: {e.strerror or e}', file=sys.stderr)
    return 1
  url = predict_url(args.server, args.model, args.version)
  try:
    response = send(url, build_request(image_bytes, args.signature),
                    args.timeout)
    detections = parse_response(response, args.score_threshold)
  except (urllib.error.URLError, OSError, RuntimeError) as e:
    print(f'{url}: {e}', file=sys.stderr)
    return 1
  print(json.dumps(detections, indent=1) if args.json
        else format_detections(detections))
  return 0


if __name__ == '__main__':
  sys.exit(main())
