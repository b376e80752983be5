"""An Open Inference Protocol infer request, as codec parses it and validation checks it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class InputTensor:
    """One input of an infer request, decoded into a numpy array."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict
    array: np.ndarray


@dataclass
class RequestedOutput:
    """One entry of an infer request's outputs list."""

    name: str
    parameters: dict = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        """Whether this output asks to be sent as binary data."""
        return self.parameters.get("binary_data") is True


@dataclass
class InferRequest:
    """A parsed infer request; outputs is None when the request names none (send all)."""

    id: str | None
    parameters: dict
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None

    @property
    def binary_data_output(self) -> bool:
        """Whether outputs that do not say otherwise should be sent as binary data."""
        return self.parameters.get("binary_data_output") is True
