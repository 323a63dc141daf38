"""PyTriton peer: Triton's C++ HTTP front end and dynamic batcher, the encoder in Python.

    PYTHONPATH=. python -m bench.peer_servers.pytriton_server --encoder E.onnx --mode L --port 8000 --ports GRPC METRICS

Input `image`: one PNG per request as a BYTES tensor [1, 1] (the binary tensor extension);
outputs `mean` and `log_var` (FP32 [1, D]). Triton batches requests up to --max-batch
(max_queue_delay 0, Triton's default) and calls `infer` once per batch. Its metrics port
counts inferences and executions (nv_inference_count / nv_inference_exec_count).
"""

from __future__ import annotations

import signal
import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from bench.peer_servers.common import encode, parse_args, session


def main() -> None:
    args = parse_args(__doc__.split("\n")[0])
    sess = session(args.encoder)
    latent = sess.get_outputs()[0].shape[1]

    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        mean, log_var = encode(sess, [bytes(row[0]) for row in image], args.mode)
        return {"mean": mean, "log_var": log_var}

    grpc_port, metrics_port = args.ports
    config = TritonConfig(
        http_address="127.0.0.1", http_port=args.port, grpc_address="127.0.0.1", grpc_port=grpc_port,
        metrics_address="127.0.0.1", metrics_port=metrics_port, allow_metrics=True, allow_cpu_metrics=False,
        allow_gpu_metrics=False, exit_on_error=True,
    )  # fmt: skip
    # SIGTERM (how bench/harness.py stops a server) unwinds `with Triton`, which stops the
    # tritonserver process it started; Python's default would leave that process running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Triton(config=config) as triton:
        triton.bind(
            model_name="encoder",
            infer_func=infer,
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
            outputs=[
                Tensor(name="mean", dtype=np.float32, shape=(latent,)),
                Tensor(name="log_var", dtype=np.float32, shape=(latent,)),
            ],
            config=ModelConfig(max_batch_size=args.max_batch),
        )
        triton.serve()


if __name__ == "__main__":
    main()
