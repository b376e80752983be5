"""Open Inference Protocol JSON for the baselines: decode a request, encode the answer."""

from __future__ import annotations

from typing import Any

import numpy as np

DATATYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT32": np.int32,
    "INT64": np.int64,
}
NAMES = {np.dtype(dtype): name for name, dtype in DATATYPES.items()}


class BadRequest(ValueError):
    """A request body that is not OIP JSON this server can run."""


def decode_inputs(body: Any) -> dict[str, np.ndarray]:
    """The input tensors of an OIP JSON request body, by name."""
    try:
        tensors = {}
        for item in body["inputs"]:
            dtype = DATATYPES[item["datatype"]]
            tensors[item["name"]] = np.asarray(item["data"], dtype=dtype).reshape(item["shape"])
        return tensors
    except (KeyError, TypeError, ValueError) as error:
        raise BadRequest(f"not an OIP JSON request with FP/INT inputs: {error!r}") from error


def encode_outputs(
    model: str, outputs: dict[str, np.ndarray], request_id: str | None = None
) -> dict[str, Any]:
    """An OIP JSON response body holding outputs, echoing the request id."""
    body: dict[str, Any] = {
        "model_name": model,
        "outputs": [
            {
                "name": name,
                "datatype": NAMES[array.dtype],
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
            for name, array in outputs.items()
        ],
    }
    if request_id is not None:
        body["id"] = request_id
    return body
