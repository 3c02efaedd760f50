"""Pure verifiers: math exact and flexible match, code sandbox, Knights & Knaves,
instruction constraints (IFEval) and format rewards.

>>> from reasonrl import verifiers
>>> verifiers.get("gsm8k").verify("so the answer is 18.", "18").correct
True
"""
from reasonrl.types import Verdict
from reasonrl.verifiers.base import UnknownVerifierError, Verifier, get, names, register

__all__ = ["Verdict", "Verifier", "get", "names", "register", "UnknownVerifierError"]
