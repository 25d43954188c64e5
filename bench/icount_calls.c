/* icount_calls: per-call instruction counting TCG plugin for QEMU 7.2 (plugin API v1).
 *
 * DTMM bench copy: also builds for QEMU >= 8.2 (plugin API >= 2, where the inline
 * counters live in a per-vCPU scoreboard) with -DQEMU_PLUGIN_API=2; bench/kernels
 * picks the API from `qemu-system-arm --version`.
 *
 * Counts executed guest instructions (inline ADD_U64 per instruction, so exact
 * and deterministic; instructions in IT blocks whose condition fails are
 * counted, as QEMU instruments before the condition check).
 *
 * Options (repeatable ones marked *):
 *   entry=0xADDR*  PC of the first instruction of a function to measure
 *   ret=0xADDR*    PC of a return site (instruction after a 'bl fn' in the caller)
 *   syms=FILE      lines "start_hex end_hex name" -> per-name breakdown (ranges
 *                  may share a name: their counts are summed, e.g. every
 *                  instruction range of one inlined function)
 *   out=FILE       write results there (default: qemu_plugin_outs, i.e. -d plugin log)
 *   dump=1         at exit also print whole-run per-function totals ("TOTFN name count")
 *
 * A measurement starts when an entry PC is reached while no measurement is
 * active and ends at the next ret PC.  The count is the number of instructions
 * executed from the entry instruction (inclusive) up to the return-site
 * instruction (exclusive), i.e. everything executed inside the call incl. callees
 * and the final return instruction.  (Verified with a calibration function.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#define EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb; struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
#ifndef QEMU_PLUGIN_API
#define QEMU_PLUGIN_API 1
#endif
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
#if QEMU_PLUGIN_API >= 2
struct qemu_plugin_scoreboard;
typedef struct { struct qemu_plugin_scoreboard *score; size_t offset; } qemu_plugin_u64;
extern struct qemu_plugin_scoreboard *qemu_plugin_scoreboard_new(size_t element_size);
extern void *qemu_plugin_scoreboard_find(struct qemu_plugin_scoreboard *score, unsigned int vcpu_index);
extern void qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(struct qemu_plugin_insn *, enum qemu_plugin_op,
                                                                qemu_plugin_u64, uint64_t);
#else
extern void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *, enum qemu_plugin_op, void *, uint64_t);
#endif
extern void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *, qemu_plugin_vcpu_udata_cb_t,
                                                   enum qemu_plugin_cb_flags, void *);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);
extern void qemu_plugin_outs(const char *);
extern uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *);

EXPORT int qemu_plugin_version = QEMU_PLUGIN_API;

#define MAXPC 64
static uint64_t entries[MAXPC], rets[MAXPC];
static int n_entries, n_rets;

typedef struct { uint64_t start, end; int id; } sym_t;
static sym_t *syms; static int nsyms;           /* ranges, sorted by start */
static char **names; static int nnames;         /* distinct range names */
static uint64_t *fcnt, *snap;                   /* nnames+1 counters, last = unknown */
#if QEMU_PLUGIN_API >= 2
static struct qemu_plugin_scoreboard *board;    /* one vCPU: fcnt is refreshed from it */
static void sync_counts(void) { memcpy(fcnt, qemu_plugin_scoreboard_find(board, 0), sizeof(uint64_t) * (nnames + 1)); }
#else
static void sync_counts(void) {}
#endif
static int active, ncalls;
static uint64_t cur_entry;
static FILE *outf;
static int dump_totals;

static void emit(const char *s) {
  if (outf) { fputs(s, outf); fflush(outf); } else qemu_plugin_outs(s);
}
/* Counter slot (name id) of a PC; nnames = outside every range. */
static int sym_of(uint64_t pc) {
  int lo = 0, hi = nsyms - 1, r = -1;
  while (lo <= hi) { int m = (lo + hi) / 2; if (syms[m].start <= pc) { r = m; lo = m + 1; } else hi = m - 1; }
  if (r >= 0 && pc < syms[r].end) return syms[r].id;
  return nnames;
}
static const char *name_of_pc(uint64_t pc) { int i = sym_of(pc); return i < nnames ? names[i] : "?"; }

static void entry_cb(unsigned int vcpu, void *ud) {
  (void)vcpu;
  if (active) return;
  active = 1; cur_entry = (uint64_t)(uintptr_t)ud;
  sync_counts();
  memcpy(snap, fcnt, sizeof(uint64_t) * (nnames + 1));
}
static int cmp_desc(const void *a, const void *b) {
  const uint64_t *x = a, *y = b; return x[0] < y[0] ? 1 : x[0] > y[0] ? -1 : 0;
}
static void ret_cb(unsigned int vcpu, void *ud) {
  (void)vcpu;
  if (!active) return;
  active = 0;
  sync_counts();
  uint64_t tot = 0;
  uint64_t (*rows)[2] = malloc(sizeof(uint64_t[2]) * (nnames + 1)); int nr = 0;
  for (int i = 0; i <= nnames; i++) {
    uint64_t d = fcnt[i] - snap[i];
    if (d) { rows[nr][0] = d; rows[nr][1] = i; nr++; tot += d; }
  }
  qsort(rows, nr, sizeof rows[0], cmp_desc);
  char buf[512];
  snprintf(buf, sizeof buf, "CALL %d entry=0x%" PRIx64 " fn=%s ret=0x%" PRIx64 " insns=%" PRIu64 "\n",
           ncalls, cur_entry, name_of_pc(cur_entry), (uint64_t)(uintptr_t)ud, tot);
  emit(buf);
  for (int k = 0; k < nr; k++) {
    int i = (int)rows[k][1];
    snprintf(buf, sizeof buf, "  FN %d %s %" PRIu64 "\n", ncalls, i < nnames ? names[i] : "?", rows[k][0]);
    emit(buf);
  }
  free(rows);
  ncalls++;
}
static int in_list(uint64_t pc, const uint64_t *l, int n) { for (int i = 0; i < n; i++) if (l[i] == pc) return 1; return 0; }

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; i++) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    uint64_t pc = qemu_plugin_insn_vaddr(insn);
    if (in_list(pc, entries, n_entries))
      qemu_plugin_register_vcpu_insn_exec_cb(insn, entry_cb, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)pc);
    if (in_list(pc, rets, n_rets))
      qemu_plugin_register_vcpu_insn_exec_cb(insn, ret_cb, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)pc);
#if QEMU_PLUGIN_API >= 2
    qemu_plugin_u64 slot = { board, sizeof(uint64_t) * (size_t)sym_of(pc) };
    qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(insn, QEMU_PLUGIN_INLINE_ADD_U64, slot, 1);
#else
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &fcnt[sym_of(pc)], 1);
#endif
  }
}
static void at_exit(qemu_plugin_id_t id, void *p) {
  (void)id; (void)p;
  sync_counts();
  uint64_t tot = 0; for (int i = 0; i <= nnames; i++) tot += fcnt[i];
  char buf[128];
  snprintf(buf, sizeof buf, "TOTAL insns=%" PRIu64 " calls=%d active_at_exit=%d\n", tot, ncalls, active);
  emit(buf);
  if (dump_totals)
    for (int i = 0; i <= nnames; i++)
      if (fcnt[i]) {
        char b2[512];
        snprintf(b2, sizeof b2, "TOTFN %s %" PRIu64 "\n", i < nnames ? names[i] : "?", fcnt[i]);
        emit(b2);
      }
  if (outf) fclose(outf);
}
static int cmp_sym(const void *a, const void *b) {
  const sym_t *x = a, *y = b; return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}
static void load_syms(const char *f) {
  FILE *fp = fopen(f, "r"); if (!fp) { fprintf(stderr, "icount_calls: cannot open %s\n", f); exit(1); }
  int cap = 1024, ncap = 256; syms = malloc(sizeof(sym_t) * cap); names = malloc(sizeof(char *) * ncap);
  char name[400]; unsigned long long s, e;
  while (fscanf(fp, "%llx %llx %399s", &s, &e, name) == 3) {
    int id = 0;
    while (id < nnames && strcmp(names[id], name)) id++;  /* few hundred names: linear is fine */
    if (id == nnames) {
      if (nnames == ncap) { ncap *= 2; names = realloc(names, sizeof(char *) * ncap); }
      names[nnames++] = strdup(name);
    }
    if (nsyms == cap) { cap *= 2; syms = realloc(syms, sizeof(sym_t) * cap); }
    syms[nsyms].start = s; syms[nsyms].end = e; syms[nsyms].id = id; nsyms++;
  }
  fclose(fp);
  qsort(syms, nsyms, sizeof(sym_t), cmp_sym);
}
EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info;
  for (int i = 0; i < argc; i++) {
    if (!strncmp(argv[i], "entry=", 6) && n_entries < MAXPC) entries[n_entries++] = strtoull(argv[i] + 6, NULL, 0) & ~1ull;
    else if (!strncmp(argv[i], "ret=", 4) && n_rets < MAXPC) rets[n_rets++] = strtoull(argv[i] + 4, NULL, 0) & ~1ull;
    else if (!strncmp(argv[i], "syms=", 5)) load_syms(argv[i] + 5);
    else if (!strncmp(argv[i], "out=", 4)) { outf = fopen(argv[i] + 4, "w"); }
    else if (!strcmp(argv[i], "dump=1")) dump_totals = 1;
    else { fprintf(stderr, "icount_calls: unknown option %s\n", argv[i]); return -1; }
  }
  fcnt = calloc(nnames + 1, sizeof(uint64_t)); snap = calloc(nnames + 1, sizeof(uint64_t));
#if QEMU_PLUGIN_API >= 2
  board = qemu_plugin_scoreboard_new(sizeof(uint64_t) * (nnames + 1));
#endif
  qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
  qemu_plugin_register_atexit_cb(id, at_exit, NULL);
  return 0;
}
