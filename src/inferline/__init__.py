"""inferline: LLM inference in production."""

from inferline import hot_path as _hot_path

__version__ = "0.1.0"

# Before any other inferline module: the compiled hot path is used only if current (see hot_path.py).
_hot_path.choose()
