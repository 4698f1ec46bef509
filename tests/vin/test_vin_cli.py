"""The ``vin`` command, run in-process (plus one subprocess smoke test)."""

from __future__ import annotations

import io
import json
import runpy
import subprocess
import sys

import pytest

from vin.cli import main

from .conftest import with_check_digit

VALID = "1M8GDM9AXKP042788"  # Wikipedia's check-digit example (valid everywhere)


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_decode_json_from_arguments() -> None:
    status, out, _ = run(["decode", "--json", "--reference-date", "2024-06-01", VALID, "bad"])
    assert status == 1  # one VIN is invalid
    lines = out.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["vin"] == VALID and first["valid"] is True
    assert first["model_year"] == 1989
    assert second == {**second, "vin": "BAD", "valid": False}
    assert all(line == json.dumps(json.loads(line), separators=(",", ":")) for line in lines)


def test_decode_json_from_stdin_keeps_order_and_blank_lines() -> None:
    status, out, _ = run(["decode", "--json"], stdin=f"{VALID}\n\n  {VALID.lower()} \nxyz")
    assert status == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["valid"] for row in rows] == [True, False, True, False]
    assert [row["vin"] for row in rows] == [VALID, "", VALID, "XYZ"]


def test_decode_all_valid_exits_0() -> None:
    status, out, _ = run(["decode", "--json"], stdin=f"{VALID}\r\n{VALID}\n")
    assert status == 0
    assert len(out.splitlines()) == 2


def test_decode_empty_stdin_prints_nothing() -> None:
    assert run(["decode", "--json"]) == (0, "", "")


def test_decode_human_output() -> None:
    status, out, _ = run(["decode", "--reference-date", "2024-06-01", f" {VALID.lower()}", "I"])
    assert status == 1
    first, second = out.split("\n\n")
    assert f"vin:             {VALID}" in first
    assert "valid:           yes" in first
    assert "model year:      1989" in first
    assert "check digit:     X (expected X; valid; required)" in first
    assert "note:            surrounding whitespace was removed" in first
    assert "note:            lower-case letters were upper-cased" in first
    assert "valid:           no" in second
    assert "error:           length:" in second
    assert "did you mean '1'" in second
    assert "check digit" not in second


def test_decode_human_output_details() -> None:
    # European VIN without a check digit: "does not match; not required"
    _, out, _ = run(["decode", "WP0ZZZ99ZTS392124", ""])
    assert "(expected 8; does not match; not required)" in out
    assert "vin:             (empty)" in out


def test_decode_human_output_make_candidates(synthetic: object) -> None:
    _, out, _ = run(["decode", with_check_digit("1ACEXX1Z0BP123456")])
    assert "make candidates: Alpha, Beta, Gamma" in out
    assert "country:         United States (US)" in out


def test_bad_reference_date_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        run(["decode", "--reference-date", "June 2024", VALID])
    assert caught.value.code == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        run(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "exit status" in out
    assert "at least one VIN is invalid" in out


def test_check_digit_command() -> None:
    assert run(["check-digit", "1m8gdm9a_kp042788"]) == (0, "X\n", "")


def test_check_digit_command_bad_input() -> None:
    status, out, err = run(["check-digit", "1M8GDM9AXKP0427I"])
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("vin check-digit: error: a VIN has 17 characters")
    assert "did you mean '1'" in lines[1]
    assert "1M8GDM9AXKP0427I" not in err


def test_check_digit_command_single_problem() -> None:
    status, _, err = run(["check-digit", "1M8GDM9AXKP04278"])
    assert status == 2
    assert len(err.splitlines()) == 1


def test_real_streams_tolerate_undecodable_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    raw_in = io.BytesIO(VALID.encode() + b"\n\xff\xfe\n")
    raw_out = io.BytesIO()
    stdin = io.TextIOWrapper(raw_in, encoding="utf-8")
    stdout = io.TextIOWrapper(raw_out, encoding="ascii")
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    status = main(["decode"])
    stdout.flush()
    assert status == 1
    text = raw_out.getvalue().decode("ascii")
    assert f"vin:             {VALID}" in text
    assert "\\udcff" in text  # shown, not a crash


def test_python_dash_m(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["vin", "check-digit", VALID])
    with pytest.raises(SystemExit) as caught:
        runpy.run_module("vin", run_name="__main__")
    assert caught.value.code == 0
    assert capsys.readouterr().out == "X\n"


def test_subprocess_smoke() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vin", "decode", "--json"],
        input=f"{VALID}\nnope\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert [json.loads(line)["valid"] for line in result.stdout.splitlines()] == [True, False]
