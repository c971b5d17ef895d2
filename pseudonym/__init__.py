"""pseudonym: privacy-by-design pseudonymisation of learning traces.

A policy file says what happens to each field of a trace; ``anonymise`` applies it to one
trace or a stream of them; every run leaves a tamper-evident entry in an audit log.
"""

__version__ = "0.1.0"

from .audit import AuditLog
from .engine import Plan, anonymise, anonymise_block, anonymise_lines, compile_plan
from .errors import AuditError, KeyRingError, PolicyError, PseudonymError, RecordError
from .keys import KeyRing, MasterKey
from .policy import Policy
from .reidentify import reidentify

__all__ = [
    "AuditError", "AuditLog", "KeyRing", "KeyRingError", "MasterKey", "Plan", "Policy",
    "PolicyError", "PseudonymError", "RecordError", "__version__", "anonymise",
    "anonymise_block", "anonymise_lines",
    "compile_plan", "reidentify",
]
