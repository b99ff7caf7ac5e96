"""Experiments: YAML schema and validation, sweep expansion, runner, results directory."""

from llmsim.experiment.config import ExperimentConfig, json_schema, load_config, parse_config
from llmsim.experiment.results import Results
from llmsim.experiment.runner import run_experiment

__all__ = ["ExperimentConfig", "Results", "json_schema", "load_config", "parse_config", "run_experiment"]
