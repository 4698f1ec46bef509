"""The ``vin`` command: ``vin decode`` and ``vin check-digit``."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import date
from typing import TextIO

from .checkdigit import check_digit
from .decode import NOTES, DecodedVIN, decode
from .errors import VINError

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_INVALID_VIN = 1
EXIT_USAGE = 2

_EPILOG = """\
exit status:
  0  success (vin decode: every VIN is valid)
  1  vin decode: at least one VIN is invalid (every input still gets its output line)
  2  usage error, or vin check-digit: the input is not 17 VIN characters
"""

_DECODE_HELP = """\
Decode VINs given as arguments, or one per line from standard input when there are none.
With --json, print exactly one compact JSON object (the API's `vehicle` object) per input
line, in input order; an invalid VIN (a blank line included) gives an object with
"valid": false.
"""


def _reference_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date as YYYY-MM-DD") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vin`` command."""
    parser = argparse.ArgumentParser(
        prog="vin",
        description="Decode Vehicle Identification Numbers (ISO 3779/3780, 49 CFR 565).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    decode_parser = commands.add_parser(
        "decode",
        help="decode VINs",
        description=_DECODE_HELP,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode_parser.add_argument(
        "--json", action="store_true", help="one compact JSON object per input line"
    )
    decode_parser.add_argument(
        "--reference-date",
        type=_reference_date,
        metavar="YYYY-MM-DD",
        help="date that bounds the model-year candidates (default: today)",
    )
    decode_parser.add_argument("vins", nargs="*", metavar="VIN", help="VINs (default: stdin)")
    check_parser = commands.add_parser(
        "check-digit",
        help="print the computed check digit of a VIN",
        description="Print the computed check digit (position 9) of a VIN: 0-9 or X.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check_parser.add_argument("vin", metavar="VIN")
    return parser


def _tolerant(stream: TextIO, errors: str) -> None:
    """Make a real text stream tolerate undecodable/unencodable characters."""
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors=errors)


def _lines(stream: TextIO) -> Iterable[str]:
    for line in stream:
        yield line.rstrip("\r\n")


def _human(decoded: DecodedVIN) -> str:
    def show(value: object) -> str:
        return "-" if value is None or value == () else str(value)

    verdict = decoded.check_digit
    rows = [
        ("vin", decoded.vin or "(empty)"),
        ("valid", "yes" if decoded.valid else "no"),
    ]
    rows += [("error", f"{p.code}: {p.message}") for p in decoded.errors]
    rows += [
        ("wmi", show(decoded.wmi)),
        ("vds", show(decoded.vds)),
        ("vis", show(decoded.vis)),
        ("manufacturer", show(decoded.manufacturer)),
        ("make", show(decoded.make)),
    ]
    if decoded.make_candidates:
        rows.append(("make candidates", ", ".join(decoded.make_candidates)))
    country = show(decoded.country)
    if decoded.country_code:
        country = f"{country} ({decoded.country_code})"
    rows += [
        ("country", country),
        ("region", show(decoded.region)),
        ("model year", show(decoded.model_year)),
        ("year candidates", ", ".join(map(str, decoded.model_year_candidates)) or "-"),
        ("plant code", show(decoded.plant_code)),
        ("serial number", show(decoded.serial_number)),
    ]
    if verdict.found is not None:
        state = "valid" if verdict.valid else "does not match"
        need = "required" if verdict.required else "not required"
        rows.append(
            (
                "check digit",
                f"{verdict.found} (expected {show(verdict.expected)}; {state}; {need})",
            )
        )
    rows += [("note", NOTES[note]) for note in decoded.notes]
    return "\n".join(f"{label + ':':<17}{value}" for label, value in rows)


def _decode(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    reference_date: date | None = args.reference_date
    texts: Iterable[str] = args.vins if args.vins else _lines(stdin)
    status = EXIT_OK
    first = True
    for text in texts:
        decoded = decode(text, reference_date=reference_date)
        if not decoded.valid:
            status = EXIT_INVALID_VIN
        if args.json:
            stdout.write(json.dumps(decoded.to_dict(), separators=(",", ":")) + "\n")
        else:
            stdout.write(("" if first else "\n") + _human(decoded) + "\n")
        first = False
    return status


def _check_digit(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    try:
        digit = check_digit(args.vin)
    except VINError as error:
        stderr.write(f"vin check-digit: error: {error.message}\n")
        for problem in error.errors[1:]:
            stderr.write(f"vin check-digit: error: {problem.message}\n")
        return EXIT_USAGE
    stdout.write(digit + "\n")
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the ``vin`` command; returns the exit status (see ``vin --help``)."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    _tolerant(stdin, "surrogateescape")
    _tolerant(stdout, "backslashreplace")
    args = build_parser().parse_args(argv)
    if args.command == "decode":
        return _decode(args, stdin, stdout)
    return _check_digit(args, stdout, stderr)
