"""bankgrowth: customer growth operations for banks' card and quick-payment business."""

__version__ = "0.1.0"
