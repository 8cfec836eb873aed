"""Send images to an encoder served by TF Serving over REST (port 8501); print their embeddings.

Start the server first (see README.md in this folder), then:

    python examples/serving/client_rest.py --model simclr --data digits --count 4

The request is `POST http://<server>/v1/models/<model>:predict` with the JSON body
`{"signature_name": "serving_default", "instances": [image, ...]}`: each image a nested list of
uint8 pixel values `[H][W][C]`, which the server casts to the signature's uint8 input.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

import numpy as np

from keras_ssl import serving


def build_request_body(images, signature_name: str = "serving_default",
                       columnar: bool = False) -> bytes:
    """The JSON body (bytes) of a predict request for a batch of uint8 images."""
    body = serving.rest_request_body(np.asarray(images, dtype=np.uint8), signature_name,
                                     columnar=columnar)
    return json.dumps(body).encode("utf-8")


def predict_url(server: str, model: str, version: int | None = None) -> str:
    """`http://<server>/v1/models/<model>[/versions/<version>]:predict`."""
    base = server if server.startswith(("http://", "https://")) else f"http://{server}"
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "")
    return f"{base.rstrip('/')}{path}:predict"


def predict(url: str, body: bytes, timeout: float = 30.0) -> np.ndarray:
    """POST the body and return the embeddings `[N, D]` of the response."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return serving.rest_response_embeddings(json.loads(response.read()))


def load_images(source: str, count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `count` held-out images (and labels) of a keras_ssl data source."""
    from keras_ssl import data

    d = data.load(source)
    x, y = (d.x_test, d.y_test) if d.x_test is not None else (d.x_train, d.y_train)
    return x[:count], (None if y is None else y[:count])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="localhost:8501", help="host:port of the REST API")
    parser.add_argument("--model", default="simclr", help="MODEL_NAME the server serves")
    parser.add_argument("--version", type=int, default=None, help="a version (default: newest)")
    parser.add_argument("--data", default="digits", help="keras_ssl data source of the images")
    parser.add_argument("--count", type=int, default=4, help="images to send")
    parser.add_argument("--columnar", action="store_true",
                        help='send {"inputs": ...} (columnar) instead of {"instances": ...}')
    args = parser.parse_args(argv)

    images, labels = load_images(args.data, args.count)
    url = predict_url(args.server, args.model, args.version)
    try:
        embeddings = predict(url, build_request_body(images, columnar=args.columnar))
    except urllib.error.HTTPError as err:
        print(f"{url}: HTTP {err.code}: {err.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as err:
        print(f"No TF Serving REST API at {url} ({err.reason}). Start one with the docker command "
              "in examples/serving/README.md.", file=sys.stderr)
        return 1
    print(f"{len(images)} images {images.shape[1:]} -> embeddings {embeddings.shape}")
    for i, row in enumerate(embeddings):
        label = "" if labels is None else f" (label {labels[i]})"
        print(f"image {i}{label}: [{', '.join(f'{v:.4f}' for v in row[:6])}, ...]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
