"""Errors that mean "the user asked for something wrong or impossible".

The CLI turns these into one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LlmsimError(ValueError):
    """Base class: a user-facing problem with input or configuration."""


class ConfigError(LlmsimError):
    """A configuration value is malformed. The message names the file and/or field."""


class UnknownNameError(ConfigError):
    """A name (model, hardware, policy, ...) is not registered. The message lists the valid names."""


class InfeasibleError(LlmsimError):
    """The configuration is well formed but physically impossible (model does not fit, bad TP split)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, caught where there is something to say (what was kept, how to resume). The CLI prints the
    message as one line and exits with 130, as a shell does for SIGINT."""
