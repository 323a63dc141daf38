"""LitServe peer: LitServe's batching loop, the encoder in Python.

    PYTHONPATH=. python -m bench.peer_servers.litserve_server --encoder E.onnx --mode L --port 8000

`POST /predict` takes {"image": "<base64 PNG>"} and answers {"mean": [...], "log_var": [...]}.
LitServe gathers up to --max-batch requests (waiting at most 1 ms) into one `predict`; its
inference loop runs in a worker process of its own, behind one API server process.
"""

from __future__ import annotations

import base64

import litserve as ls
import numpy as np

from bench.peer_servers.common import encode, parse_args, session


class EncoderAPI(ls.LitAPI):
    def __init__(self, encoder: str, mode: str, max_batch: int) -> None:
        super().__init__(max_batch_size=max_batch, batch_timeout=0.001)
        self._encoder, self._mode = encoder, mode

    def setup(self, device: str) -> None:
        self._session = session(self._encoder)

    def decode_request(self, request):  # unannotated: LitServe then reads the JSON body
        return base64.b64decode(request["image"])

    def batch(self, inputs: list[bytes]) -> list[bytes]:
        return list(inputs)

    def predict(self, pngs: list[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
        mean, log_var = encode(self._session, pngs, self._mode)
        return list(zip(mean, log_var, strict=True))

    def unbatch(self, output: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        return output

    def encode_response(self, output: tuple[np.ndarray, np.ndarray]) -> dict[str, list[float]]:
        mean, log_var = output
        return {"mean": mean.tolist(), "log_var": log_var.tolist()}


def main() -> None:
    args = parse_args(__doc__.split("\n")[0])
    server = ls.LitServer(EncoderAPI(args.encoder, args.mode, args.max_batch), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
