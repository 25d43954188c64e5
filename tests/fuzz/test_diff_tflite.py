"""C kernel vs TFLite's reference CONV_2D, bit for bit, on 50 wide random
configurations (diff_tflite.py; the long run uses --configs 1500)."""

import diff_tflite


def test_c_kernel_matches_tflite_reference_conv(tmp_path):
    assert diff_tflite.main(["--configs", "50", "--per-model", "25", "--seed", "11",
                             "--out", str(tmp_path)]) == 0
    print((tmp_path / "summary.md").read_text())
