"""MLServer peer: a custom runtime for the encoder, with MLServer's adaptive batching.

bench/peers.py writes settings.json and model-settings.json next to each other and runs
`mlserver start FOLDER` with the repository's root on PYTHONPATH. Input `image`: one PNG per request
as a BYTES tensor [1] of base64 text (the V2 JSON protocol has no binary payloads in
MLServer); outputs `mean` and `log_var` (FP32 [N, D]). MLServer merges concurrent
requests into one `predict` call of up to max_batch_size rows, waiting at most
max_batch_time; each call adds to the counters `peer_batches_total` and
`peer_batch_rows_total` on the metrics port (prometheus_client's own registry: with
parallel_workers 0 MLServer serves that one, not the registry of `mlserver.register`).
"""

from __future__ import annotations

import mlserver
from mlserver.codecs import Base64Codec, NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from prometheus_client import Counter

from bench.peer_servers.common import encode, session


class EncoderRuntime(mlserver.MLModel):
    async def load(self) -> bool:
        params = self.settings.parameters
        assert params is not None and params.uri is not None and params.extra is not None
        self._session = session(params.uri)
        self._mode = str(params.extra["mode"])
        self._batches = Counter("peer_batches", "predict calls")
        self._rows = Counter("peer_batch_rows", "rows over all predict calls")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        pngs = Base64Codec.decode_input(payload.inputs[0])
        mean, log_var = encode(self._session, pngs, self._mode)
        self._batches.inc()
        self._rows.inc(len(pngs))
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output("mean", mean), NumpyCodec.encode_output("log_var", log_var)],
        )
