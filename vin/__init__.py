"""``vin``: a pure, standard-library-only VIN decoder (ISO 3779/3780, 49 CFR 565).

See docs/vin-library.md for the design, the problem codes and the data format.
"""

from .checkdigit import CheckDigitVerdict, check_digit
from .decode import NOTES, DecodedVIN, decode, normalize, parse
from .errors import (
    ERROR_CLASSES,
    CheckDigitMismatchError,
    InvalidCharacterError,
    InvalidModelYearError,
    LengthError,
    VINError,
    VINProblem,
)

__all__ = [
    "ERROR_CLASSES",
    "NOTES",
    "CheckDigitMismatchError",
    "CheckDigitVerdict",
    "DecodedVIN",
    "InvalidCharacterError",
    "InvalidModelYearError",
    "LengthError",
    "VINError",
    "VINProblem",
    "check_digit",
    "decode",
    "normalize",
    "parse",
]
