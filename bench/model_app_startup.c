/* Bare-metal start-up of bench/model_app.cc under qemu-system-arm (mps2-an386 for
 * Cortex-M4, mps3-an547 for Cortex-M55), linked with bench/model_app.ld.
 *
 * Vector table and reset handler: enable the FPU/MVE coprocessors, zero .bss, set up
 * newlib's semihosting stdio (librdimon, from TFLM's --specs=rdimon.specs), run the
 * C++ constructors, take argv from the semihosting command line (QEMU:
 * -semihosting-config enable=on,target=native,arg=...,arg=...), run main, exit.
 * Files (the model, the tensor dump) are read and written on the host through
 * librdimon's semihosting syscalls. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __stack_top, __bss_start__, __bss_end__;
extern int main(int argc, char** argv);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
void Reset_Handler(void);
void Fault_Handler(void);

/* What crti.o/crtbegin.o would give (left out by -nostartfiles): __libc_init_array
 * calls _init; __cxa_atexit (static C++ objects) takes __dso_handle. */
void _init(void) {}
void _fini(void) {}
void* __dso_handle = &__dso_handle;

#define SYS_WRITE0 0x04
#define SYS_GET_CMDLINE 0x15

static int semihost(int op, void* arg) {
  register int r0 __asm("r0") = op;
  register void* r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void Fault_Handler(void) {
  static char msg[] = "error: fault exception (bad memory access or undefined instruction)\n";
  semihost(SYS_WRITE0, msg);
  exit(1);
}

#define MAX_ARGS 16
static char cmdline[2048];
static char* argv_[MAX_ARGS + 1];

static int split_cmdline(void) {
  struct {
    char* buf;
    int len;
  } block = {cmdline, (int)sizeof(cmdline) - 1};
  int argc = 0;
  if (semihost(SYS_GET_CMDLINE, &block) != 0) return 0;
  cmdline[block.len] = 0;
  for (char* p = cmdline; *p && argc < MAX_ARGS;) {
    while (*p == ' ') *p++ = 0;
    if (!*p) break;
    argv_[argc++] = p;
    while (*p && *p != ' ') p++;
  }
  argv_[argc] = 0;
  return argc;
}

void Reset_Handler(void) {
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
  /* CPACR: full access to CP10/CP11 (FPU and MVE) before any such instruction. */
  *(volatile uint32_t*)0xE000ED88u |= 0xFu << 20;
  __asm volatile("dsb\n\tisb" ::: "memory");
#endif
  for (uint32_t* p = &__bss_start__; p < &__bss_end__; ++p) *p = 0;
  initialise_monitor_handles();
  __libc_init_array();
  int argc = split_cmdline();
  exit(main(argc, argv_));
}

__attribute__((section(".vectors"), used)) const void* const vector_table[16] = {
    &__stack_top,  (void*)Reset_Handler, (void*)Fault_Handler, (void*)Fault_Handler,
    (void*)Fault_Handler, (void*)Fault_Handler, (void*)Fault_Handler, 0, 0, 0, 0,
    (void*)Fault_Handler, (void*)Fault_Handler, 0, (void*)Fault_Handler,
    (void*)Fault_Handler};
