"""How far to trust a prediction: evidence grades per metric (``grades``), prediction intervals from real-run
residuals (``intervals``, ``residuals.json``), the summary fields of a run (``annotate``), parsers of real
benchmark results (``benchfiles``, ``realruns``), ``validate_run`` and ``sensitivity``."""
