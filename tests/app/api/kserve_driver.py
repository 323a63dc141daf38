"""Drives a live server with KServe's Python SDK; run by test_v2_kserve.py in a virtual
environment of its own (kserve's pins are not ours). Prints one JSON object of answers.

    python kserve_driver.py http://127.0.0.1:PORT images.npy
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest import v2_datamodels as v2


async def main(url: str, images_path: str) -> dict[str, object]:
    images = np.load(images_path)
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    out: dict[str, object] = {
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, "digits-encoder"),
        "unknown_model_ready": await client.is_model_ready(url, "nope-encoder"),
    }
    for binary in (False, True):
        tensor = InferInput("image", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images, binary_data=binary)
        request = InferRequest(model_name="digits-encoder", infer_inputs=[tensor], parameters={"seed": 2},
                               request_outputs=[RequestedOutput("mean"), RequestedOutput("z")])  # fmt: skip
        response = await client.infer(url, request, model_name="digits-encoder")
        out[f"encoder_binary_{binary}"] = {o.name: o.as_numpy().tolist() for o in response.outputs}
        out[f"encoder_id_{binary}"] = response.id
    # KServe's own v2 pydantic models, on the raw answers (a request without an id included).
    with httpx.Client(base_url=url, timeout=60) as raw:
        v2.ServerLiveResponse.model_validate(raw.get("/v2/health/live").json())
        v2.ServerReadyResponse.model_validate(raw.get("/v2/health/ready").json())
        v2.ModelReadyResponse.model_validate(raw.get("/v2/models/digits-scorer/ready").json())
        v2.ServerMetadataResponse.model_validate(raw.get("/v2").json())
        v2.ModelMetadataResponse.model_validate(raw.get("/v2/models/digits-scorer").json())
        body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(images.shape),
                            "data": images.ravel().tolist()}], "parameters": {"importance_samples": 8}}  # fmt: skip
        scored = v2.InferenceResponse.model_validate(raw.post("/v2/models/digits-scorer/infer", json=body).json())
        out["scorer_mse"] = next(o.data for o in scored.outputs if o.name == "mse")
    await client.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
