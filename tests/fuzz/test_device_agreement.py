"""dtmm's own DTMM op checks (dtmm.core.ops.read_dtmm: what `inspect`, `verify` and
the converter's pre-write check run) against the device's (device_checks.py: the
TFLM op's Prepare restated plus the real dtmm_conv_s8_validate through ctypes), on
the converted seeds and a few hundred structured mutants of them: wherever the
device rejects an op, dtmm rejects it too (so the converter never writes it), and
wherever the device accepts one that meets the contract, dtmm accepts it."""

from __future__ import annotations

import random

import pytest

import device_checks as dc
import dtmm_clib
import fuzz_models
import mutate
from dtmm.core.errors import DtmmError
from dtmm.core.ops import is_dtmm, read_dtmm
from dtmm.core.tflite import Model

MUTANTS_PER_SEED = 150


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    paths = fuzz_models.build_corpus(str(tmp_path_factory.mktemp("corpus")),
                                     names=["tiny", "small_input_big_kernel", "stack"])
    out = []
    for name, path in sorted(paths.items()):
        if name.endswith(("_dtmm", "_dtmm_v1")):  # format versions 2 and 1
            with open(path, "rb") as f:
                out.append((name, f.read()))
    return out


def _verdicts(buf: bytes, lib):
    """[(op, dtmm's error or '', the device's error or '')] for each DTMM op of a
    model dtmm can read at all (None otherwise)."""
    try:
        model = Model.read(buf, "mutant")
    except DtmmError:
        return None  # not a model dtmm reads: nothing is written or accepted
    raw = mutate.load(buf)
    device = {(si, oi): msg for si, oi, msg in dc.contract_errors(raw, lib)}
    out = []
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators):
            if not is_dtmm(op):
                continue
            try:
                read_dtmm(model, si, oi)
                mine = ""
            except DtmmError as e:
                mine = str(e) or type(e).__name__
            out.append(((si, oi), mine, device.get((si, oi), "")))
    return out


def test_dtmm_checks_agree_with_the_device(seeds):
    lib = dtmm_clib.load()
    rng = random.Random(11)
    judged = accepted = rejected = 0
    disagreements = []
    for name, buf in seeds:
        cases = [("seed", buf)]
        for _ in range(MUTANTS_PER_SEED):
            try:
                cases.append(mutate.structured_mutation(buf, rng, rng.choice([1, 1, 2]))[::-1])
            except mutate.Skip:
                continue
        for what, data in cases:
            verdicts = _verdicts(data, lib)
            for where, mine, device in verdicts or []:
                judged += 1
                accepted += not mine
                rejected += bool(device)
                if bool(mine) != bool(device):
                    disagreements.append(f"{name} {what} op {where}: dtmm "
                                         f"{mine or 'accepts'}; device {device or 'accepts'}")
    assert judged > 300 and accepted > 20 and rejected > 50, (judged, accepted, rejected)
    assert not disagreements, "\n".join(disagreements[:20])
