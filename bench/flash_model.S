/* bench/models' flash image: the model file in .rodata (DTMM_FLASH_MODEL: its path,
 * a quoted string, given with -D by bench/models). */
  .section .rodata.dtmm_flash_model, "a"
  .balign 16
  .global dtmm_flash_model
dtmm_flash_model:
  .incbin DTMM_FLASH_MODEL
