"""Experiments: YAML schema and validation, sweep expansion, runner, results directory.

Names are imported on first use (``llmsim.lazy``): importing the package costs nothing."""

from typing import TYPE_CHECKING

from llmsim.lazy import lazy_exports

_EXPORTS = {"ExperimentConfig": "config", "json_schema": "config", "load_config": "config", "parse_config": "config",
            "Results": "results", "run_experiment": "runner"}
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = ["ExperimentConfig", "Results", "json_schema", "load_config", "parse_config", "run_experiment"]

if TYPE_CHECKING:
    from llmsim.experiment.config import ExperimentConfig, json_schema, load_config, parse_config
    from llmsim.experiment.results import Results
    from llmsim.experiment.runner import run_experiment
