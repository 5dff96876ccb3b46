"""wsolbench: a harness for benchmarking weakly supervised object localization."""

from wsolbench.method import Localization, MethodOutput, WSOLMethod, create_method
from wsolbench.metrics.to_boxes import maps_to_boxes

__all__ = ["Localization", "MethodOutput", "WSOLMethod", "create_method", "maps_to_boxes"]
__version__ = "0.1.0"
