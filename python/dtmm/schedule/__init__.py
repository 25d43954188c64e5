"""Per-layer filterlet/filter ratios under flash, SRAM, latency and accuracy budgets.

    from dtmm.schedule import graph, cost, search
    g = graph.analyze(int8_bytes)                       # convs, groups, lifetimes
    prob = search.Problem(g, importance, search.Budgets(flash=64 << 10, sram=32 << 10))
    plan = search.schedule(prob)                        # ours; search.anneal = original SA
    plan.alpha, plan.beta, plan.flash, plan.sram, plan.loss

Block ratios (`blocks`): FcBlockCosts prices a block ratio per FULLY_CONNECTED with
the converter's own FC plan; Problem(..., blocks=...) adds them to the search.

Cost models (`cost`): FlashModel (bytes of the converted DTMM .tflite), SramModel
(TFLM GreedyMemoryPlanner replay + persistent allocations), LatencyModel (TFLM
Invoke() instructions on Cortex-M4/M55: convs as the converter will write them, the
other ops, the interpreter; dtmm.core.latency's fitted models). See docs/scheduler.md.
"""
