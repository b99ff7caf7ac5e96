"""Shipped acceptance defaults per proposer, each with the published figure it comes from.

These are starting points, not measurements of a particular model pair: acceptance depends on the target,
the proposer's training data, the dataset and the sampling temperature, so set ``speculative.acceptance``
(per workload class if needed) from your own runs when you have them. The figures below are as the papers
report them for greedy decoding (temperature 0); they were taken from the papers' text and tables, not
re-measured here.

- ``draft_model``: Leviathan, Kalman, Matias, "Fast Inference from Transformers via Speculative Decoding"
  (ICML 2023), Table 3: T5-XXL target with a T5-small draft on WMT En-De at temperature 0, alpha = 0.75
  (T5-base 0.80, T5-large 0.82; CNN/DM 0.62-0.71).
- ``eagle``: Li, Wei, Zhang, Zhang, "EAGLE: Speculative Sampling Requires Rethinking Feature Uncertainty"
  (ICML 2024), acceptance rate of chain drafts on MT-bench, LLaMA2-Chat 7B, temperature 0: about 0.8 at
  the first position, about 0.75 after.
- ``eagle3``: Li et al., "EAGLE-3: Scaling up Inference Acceleration of Large Language Models via
  Training-Time Test" (2025): higher acceptance than EAGLE at every position, with the acceptance rate
  staying near 0.8-0.9 deep into the draft for LLaMA-3.1-8B-Instruct on MT-bench; modelled as a flat 0.85.
- ``medusa``: Cai et al., "Medusa: Simple LLM Inference Acceleration Framework with Multiple Decoding
  Heads" (ICML 2024): top-1 accuracy of the first head about 0.6 on Vicuna-7B, falling for later heads;
  the later positions here (0.45, 0.35, 0.3) are this project's guess at that fall, not published values.
- ``ngram``: no default. Prompt lookup accepts only what the output copies from the prompt, which depends
  entirely on the workload (summarisation and code editing copy a lot, chat little); give the rate.
"""

from __future__ import annotations

from llmsim.speculative.acceptance import AcceptanceModel

DEFAULT_ACCEPTANCE: dict[str, AcceptanceModel] = {
    "draft_model": AcceptanceModel((0.75,), "Leviathan et al. ICML 2023 Table 3 (T5-small -> T5-XXL, En-De, T=0)"),
    "eagle": AcceptanceModel((0.8, 0.75), "Li et al. ICML 2024 (EAGLE, LLaMA2-Chat 7B, MT-bench, T=0)"),
    "eagle3": AcceptanceModel((0.85,), "Li et al. 2025 (EAGLE-3, LLaMA-3.1-8B-Instruct, MT-bench, T=0)"),
    "medusa": AcceptanceModel((0.6, 0.45, 0.35, 0.3), "Cai et al. ICML 2024 (Medusa heads, Vicuna-7B)"),
}
