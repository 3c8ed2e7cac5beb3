"""Amaranth hardware: frame streams, requantization, the MAC-unit engine and the top level."""

from .stream import frame_layout, StreamRegister, LaneConverter
from .requant import Requant, code_shape
from .mac_unit import MacUnit
from .accelerator import Accelerator

__all__ = ["frame_layout", "code_shape", "StreamRegister", "LaneConverter", "Requant", "MacUnit",
           "Accelerator"]
