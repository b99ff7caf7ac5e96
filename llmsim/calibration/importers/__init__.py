"""Importers of measured kernel databases (``llmsim calibrate --import FORMAT PATH``).

Each format is one module that registers a function ``(path, hardware) -> Imported`` under its name; the
rows it returns are llmsim ``Measurement`` objects and go through the same fit as ``--device cuda``. Shipped:
``aic`` (NVIDIA AIConfigurator's perf database) and ``csv`` (llmsim's plain kernel CSV, see ``csv.py``).
Another public format (e.g. Vidur's profiling CSVs) is one more small file here.
"""

from llmsim.calibration.importers import aic, plain_csv  # noqa: F401 (registers the formats)
from llmsim.calibration.importers.base import IMPORTERS, Imported, load_imports

__all__ = ["IMPORTERS", "Imported", "load_imports"]
