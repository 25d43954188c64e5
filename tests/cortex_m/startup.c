/* Minimal bare-metal runtime for the QEMU Cortex-M test and bench images (ours):
 * vector table, reset handler (zero .bss, enable the FPU/MVE coprocessors, run
 * main, exit) and the few newlib syscalls printf/exit need, over Arm semihosting
 * (QEMU: -semihosting-config enable=on,target=native). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

extern uint32_t __stack_top, __bss_start__, __bss_end__, __big_start__, __big_end__, end;
extern int main(int argc, char** argv);
void Reset_Handler(void);
void Fault_Handler(void);

#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUNTIME_ERROR 0x20023

static int semihost(int op, const void* arg) {
  register int r0 __asm("r0") = op;
  register const void* r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

/* AArch32 SYS_EXIT carries only a reason: QEMU exits 0 for ApplicationExit and 1
 * for anything else, which is all a test needs. */
void _exit(int code) {
  semihost(SYS_EXIT, (const void*)(uintptr_t)(code == 0 ? ADP_STOPPED_APPLICATION_EXIT
                                                          : ADP_STOPPED_RUNTIME_ERROR));
  for (;;) {
  }
}

int _write(int fd, const char* buf, int len) {
  char chunk[129];
  int done = 0;
  (void)fd;
  while (done < len) {
    int n = len - done > 128 ? 128 : len - done;
    memcpy(chunk, buf + done, (size_t)n);
    chunk[n] = 0;
    semihost(SYS_WRITE0, chunk);
    done += n;
  }
  return len;
}

void* _sbrk(int incr) {
  static char* brk = (char*)&end;
  char* prev = brk;
  brk += incr;
  return prev;
}
int _close(int fd) { (void)fd; return -1; }
int _fstat(int fd, struct stat* st) { (void)fd; st->st_mode = S_IFCHR; return 0; }
int _isatty(int fd) { (void)fd; return 1; }
int _lseek(int fd, int off, int whence) { (void)fd; (void)off; (void)whence; return 0; }
int _read(int fd, char* buf, int len) { (void)fd; (void)buf; (void)len; return 0; }
int _kill(int pid, int sig) { (void)pid; (void)sig; return -1; }
int _getpid(void) { return 1; }

void Fault_Handler(void) {
  static const char msg[] = "FATAL: fault exception\n";
  semihost(SYS_WRITE0, msg);
  _exit(1);
}

void Reset_Handler(void) {
  uint32_t* p;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
  /* CPACR: full access to CP10/CP11 (FPU and MVE) before any such instruction. */
  *(volatile uint32_t*)0xE000ED88u |= 0xFu << 20;
  __asm volatile("dsb\n\tisb" ::: "memory");
#endif
  for (p = &__bss_start__; p < &__bss_end__; ++p) *p = 0;
  for (p = &__big_start__; p < &__big_end__; ++p) *p = 0;
  exit(main(0, 0));
}

__attribute__((section(".vectors"), used)) const void* const vector_table[16] = {
    &__stack_top,  (void*)Reset_Handler, (void*)Fault_Handler, (void*)Fault_Handler,
    (void*)Fault_Handler, (void*)Fault_Handler, (void*)Fault_Handler, 0, 0, 0, 0,
    (void*)Fault_Handler, (void*)Fault_Handler, 0, (void*)Fault_Handler,
    (void*)Fault_Handler};
