"""How far to trust a prediction: parsers of real benchmark results (``realruns``) to check predictions
against measurements."""
