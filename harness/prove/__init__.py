"""The proof: a fix proven (or refuted) on a base kernel and the same kernel patched.

``driver`` is the state machine and the runs (Policy, Proof, Prover, the log),
``trials`` chooses how long its trials race and what a proof will cost,
``output`` the table, statement, mail block and JSON, ``record`` the proof on
real kernels (both sessions, NO_CHANGE, the proof folder's result.json).
"""

from harness.prove.driver import (
                                  BASE,
                                  LOG_FILE,
                                  PATCHED,
                                  SIDES,
                                  Decision,
                                  KernelInfo,
                                  PatchInfo,
                                  Policy,
                                  Proof,
                                  ProofInfo,
                                  ProofLog,
                                  ProofResult,
                                  ProofVerdict,
                                  Prover,
                                  Side,
                                  Tally,
                                  TrialSide,
                                  load,
                                  no_change,
                                  plan,
                                  prove,
                                  read_info,
                                  replay,
                                  resume,
)
from harness.prove.output import fraction_text, hazard, mail_block, statement, table, to_json
from harness.repro.trial import Observation, from_run_result, observation

__all__ = ["BASE", "LOG_FILE", "PATCHED", "SIDES", "Decision", "KernelInfo", "PatchInfo", "Policy", "Proof", "ProofInfo",
           "ProofLog", "ProofResult", "ProofVerdict", "Prover", "Side", "Tally", "TrialSide", "load", "no_change", "plan",
           "prove", "read_info", "replay", "resume", "fraction_text", "hazard", "mail_block", "statement", "table",
           "to_json", "Observation", "from_run_result", "observation"]
