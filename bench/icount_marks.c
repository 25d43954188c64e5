/* icount_marks: exact executed-instruction counts at marker calls (QEMU TCG plugin).
 *
 * bench/models runs its TFLM app (bench/model_app.cc) bare metal under
 * qemu-system-arm with this plugin. The app calls one empty, non-inlined function,
 * dtmm_bench_mark(), at every point it wants a count: around each Invoke() and
 * around each operator's invoke. The plugin counts every executed guest instruction
 * (an inline add per instruction: exact and deterministic; instructions of IT blocks
 * whose condition fails count too, as QEMU instruments before the condition check)
 * and writes the running count each time the marker's first instruction executes,
 * so the difference of two lines is the exact number of instructions between the
 * two marker calls. The app logs what each marker call was; bench/models zips the two.
 *
 * Options: mark=0xADDR (PC of dtmm_bench_mark's first instruction, Thumb bit
 * ignored), out=FILE (default: the QEMU log, -d plugin).
 * Output: "MARK <count>" per marker call, then "TOTAL <count>" at exit.
 *
 * Build (host compiler, no QEMU headers needed): gcc -shared -fPIC -O2
 * -DQEMU_PLUGIN_API=1 (QEMU 7.x, 8.0, 8.1) or 2 (>= 8.2) icount_marks.c -o libicount_marks.so
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#ifndef QEMU_PLUGIN_API
#define QEMU_PLUGIN_API 2 /* QEMU >= 8.2: per-vCPU scoreboards */
#endif

/* The few declarations of QEMU's plugin API (include/qemu/qemu-plugin.h) used here. */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
extern void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *,
                                                   qemu_plugin_vcpu_udata_cb_t,
                                                   enum qemu_plugin_cb_flags, void *);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
extern uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);
extern void qemu_plugin_outs(const char *);
#if QEMU_PLUGIN_API >= 2
struct qemu_plugin_scoreboard;
typedef struct {
  struct qemu_plugin_scoreboard *score;
  size_t offset;
} qemu_plugin_u64;
extern struct qemu_plugin_scoreboard *qemu_plugin_scoreboard_new(size_t element_size);
extern void *qemu_plugin_scoreboard_find(struct qemu_plugin_scoreboard *, unsigned int vcpu_index);
extern void qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(struct qemu_plugin_insn *,
                                                                enum qemu_plugin_op,
                                                                qemu_plugin_u64, uint64_t);
#else
extern void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *,
                                                       enum qemu_plugin_op, void *, uint64_t);
#endif

EXPORT int qemu_plugin_version = QEMU_PLUGIN_API;

static uint64_t mark_pc = UINT64_MAX;
static FILE *out;
#if QEMU_PLUGIN_API >= 2
static struct qemu_plugin_scoreboard *board; /* one uint64 per vCPU */
static uint64_t count_of(unsigned int vcpu) {
  return *(uint64_t *)qemu_plugin_scoreboard_find(board, vcpu);
}
#else
static uint64_t counter; /* the app runs on one vCPU */
static uint64_t count_of(unsigned int vcpu) { (void)vcpu; return counter; }
#endif

static void emit(const char *line) {
  if (out) {
    fputs(line, out);
    fflush(out);
  } else {
    qemu_plugin_outs(line);
  }
}

static void on_mark(unsigned int vcpu, void *udata) {
  (void)udata;
  char line[64];
  snprintf(line, sizeof line, "MARK %" PRIu64 "\n", count_of(vcpu));
  emit(line);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; i++) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    if ((qemu_plugin_insn_vaddr(insn) & ~1ull) == mark_pc)
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
#if QEMU_PLUGIN_API >= 2
    qemu_plugin_u64 slot = {board, 0};
    qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(insn, QEMU_PLUGIN_INLINE_ADD_U64, slot, 1);
#else
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &counter, 1);
#endif
  }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *p) {
  (void)id;
  (void)p;
  char line[64];
  snprintf(line, sizeof line, "TOTAL %" PRIu64 "\n", count_of(0));
  emit(line);
  if (out) fclose(out);
  out = NULL;
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                               char **argv) {
  (void)info;
  for (int i = 0; i < argc; i++) {
    if (!strncmp(argv[i], "mark=", 5)) {
      mark_pc = strtoull(argv[i] + 5, NULL, 0) & ~1ull;
    } else if (!strncmp(argv[i], "out=", 4)) {
      out = fopen(argv[i] + 4, "w");
      if (!out) {
        fprintf(stderr, "icount_marks: cannot write %s\n", argv[i] + 4);
        return -1;
      }
    } else {
      fprintf(stderr, "icount_marks: unknown option %s\n", argv[i]);
      return -1;
    }
  }
  if (mark_pc == UINT64_MAX) {
    fprintf(stderr, "icount_marks: mark=0xADDR is required\n");
    return -1;
  }
#if QEMU_PLUGIN_API >= 2
  board = qemu_plugin_scoreboard_new(sizeof(uint64_t));
#endif
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
  return 0;
}
