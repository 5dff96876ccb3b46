"""wsolbench: a harness for benchmarking weakly supervised object localization."""

from wsolbench.method import Localization, MethodOutput, WSOLMethod, create_method

__all__ = ["Localization", "MethodOutput", "WSOLMethod", "create_method"]
__version__ = "0.1.0"
