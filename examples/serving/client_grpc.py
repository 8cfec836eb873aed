"""Send images to an encoder served by TF Serving over gRPC (port 8500); print their embeddings.

Start the server first (see README.md in this folder), then:

    python examples/serving/client_grpc.py --model simclr --data digits --count 4

The request is a `tensorflow_serving.apis.predict_pb2.PredictRequest` whose `images` input is a
uint8 `TensorProto` `[N, H, W, C]`: binary, so 4x to 10x smaller than the REST JSON body.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from keras_ssl import serving


def build_request(images, model: str, signature_name: str = "serving_default",
                  version: int | None = None):
    """A PredictRequest for a batch of uint8 images."""
    return serving.predict_request(np.asarray(images, dtype=np.uint8), model_name=model,
                                   signature_name=signature_name, version=version)


def response_embeddings(response) -> np.ndarray:
    """Embeddings `[N, D]` (float32) from a PredictResponse."""
    import tensorflow as tf

    return tf.make_ndarray(response.outputs["embeddings"]).astype("float32")


def predict(server: str, request, timeout: float = 30.0) -> np.ndarray:
    """Send the request to `host:port` and return the embeddings."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    # Images are large messages: lift gRPC's 4 MB default for batches of big images.
    options = [("grpc.max_send_message_length", 256 << 20),
               ("grpc.max_receive_message_length", 256 << 20)]
    with grpc.insecure_channel(server, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return response_embeddings(stub.Predict(request, timeout=timeout))


def main(argv=None) -> int:
    import grpc
    from client_rest import load_images  # the same images as the REST client

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="localhost:8500", help="host:port of the gRPC API")
    parser.add_argument("--model", default="simclr", help="MODEL_NAME the server serves")
    parser.add_argument("--version", type=int, default=None, help="a version (default: newest)")
    parser.add_argument("--data", default="digits", help="keras_ssl data source of the images")
    parser.add_argument("--count", type=int, default=4, help="images to send")
    args = parser.parse_args(argv)

    images, labels = load_images(args.data, args.count)
    request = build_request(images, args.model, version=args.version)
    try:
        embeddings = predict(args.server, request)
    except grpc.RpcError as err:
        print(f"gRPC call to {args.server} failed: {err.code().name}: {err.details()}. Is TF "
              "Serving running (see examples/serving/README.md)?", file=sys.stderr)
        return 1
    print(f"{len(images)} images {images.shape[1:]} -> embeddings {embeddings.shape}")
    for i, row in enumerate(embeddings):
        label = "" if labels is None else f" (label {labels[i]})"
        print(f"image {i}{label}: [{', '.join(f'{v:.4f}' for v in row[:6])}, ...]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
