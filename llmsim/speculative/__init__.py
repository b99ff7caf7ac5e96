"""Speculative decoding: proposers (draft model, EAGLE/Medusa heads, n-gram lookup, token trees) and
acceptance models, pure; the scheduler mixin that plans verification steps with vLLM v1 semantics; the
``speculative:`` config block. The simulator wires them in (``llmsim.sim.cluster``, ``llmsim.sim.spec_timer``)."""

from llmsim.speculative.acceptance import AcceptanceModel, draw_accepted
from llmsim.speculative.config import SpeculativeConfig, parse_speculative
from llmsim.speculative.defaults import DEFAULT_ACCEPTANCE
from llmsim.speculative.proposers import PROPOSERS, Proposer
from llmsim.speculative.scheduler import SpecPlan, speculative_scheduler
from llmsim.speculative.setup import attach_speculative
from llmsim.speculative.speculator import Speculator

__all__ = [
    "DEFAULT_ACCEPTANCE", "PROPOSERS", "AcceptanceModel", "Proposer", "SpecPlan", "SpeculativeConfig", "Speculator",
    "attach_speculative", "draw_accepted", "parse_speculative", "speculative_scheduler",
]
