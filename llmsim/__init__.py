"""llmsim: a calibrated analytical model and discrete-event simulator of LLM serving."""

__version__ = "0.1.0"
