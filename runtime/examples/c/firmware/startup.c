/* Cortex-M4 start-up for main.c on qemu's mps2-an386 board: vector table, FPU on, .bss zeroed, newlib's
 * semihosting console (librdimon) opened, main's status handed to exit (semihosting ends qemu with it). */
#include <stdint.h>
#include <stdlib.h>

extern int main(void);
extern void initialise_monitor_handles(void);
extern uint32_t __bss_start__[], __bss_end__[], __stack_top[];

/* newlib's exit runs the init/fini arrays through these (crti/crtn are not linked: -nostartfiles) */
void _init(void) {}
void _fini(void) {}

void Reset_Handler(void) {
  /* CPACR: full access to the FPU (coprocessors 10 and 11) */
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
  __asm volatile("dsb\n isb");
  for (uint32_t *p = __bss_start__; p < __bss_end__; p++) *p = 0;
  initialise_monitor_handles();
  exit(main());
}

/* any fault ends the run with status 3 */
void Fault_Handler(void) { _Exit(3); }

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler,    Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler,
    Fault_Handler,
};
