"""Calibration: torch microbenchmarks of real kernels, fitted into a hardware profile (``llmsim calibrate``).

The only torch importer in llmsim, and only lazily (inside the command): importing this package does not
import torch. The fitted profile is read by ``llmsim.cost.calibrated.CalibratedTimer`` (numpy only).
"""

from llmsim.calibration.commands import INSTALL_HINT, register

__all__ = ["INSTALL_HINT", "register"]
