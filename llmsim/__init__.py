"""llmsim: a calibrated analytical model and discrete-event simulator of LLM serving."""

__version__ = "0.1.0"


def run(config, out_dir=None, **kwargs):
    """Run an experiment (a YAML path, a mapping or an ExperimentConfig) and return its Results
    (pandas tables). Without ``out_dir`` nothing is written. See ``llmsim.experiment.run_experiment``."""
    from llmsim.experiment.runner import run_experiment

    return run_experiment(config, out_dir, **kwargs)
