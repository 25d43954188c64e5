"""The model fuzzer for dtmm convert / inspect / verify, for about a minute, must find
nothing (fuzz_cli.py; the long run uses --mutants 5000). The summary table of any
finding is printed, and the reproducers are kept in the test's output directory."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_model_fuzzer_finds_nothing_in_a_minute(tmp_path):
    out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or str(tmp_path / "out")
    p = subprocess.run([sys.executable, os.path.join(HERE, "fuzz_cli.py"), "--budget", "60",
                        "--seed", "0", "--fail-on-findings", "--out", out,
                        "--work", str(tmp_path / "work")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(p.stdout[-20000:])
    assert p.returncode == 0, f"fuzz_cli.py exit {p.returncode}: findings in {out}"
