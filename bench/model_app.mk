# bench/models' TFLM application, compiled by TFLM's own make so it gets exactly the
# library's flags, and linked as a bare-metal image for qemu-system-arm. Read after
# TFLM's Makefile (bench/models runs this from the TFLM root):
#   make -f tensorflow/lite/micro/tools/make/Makefile -f <repo>/bench/model_app.mk \
#     TARGET=cortex_m_qemu TARGET_ARCH=cortex-m4 OPTIMIZED_KERNEL_DIR=cmsis_nn \
#     EXTERNAL_DIR=<repo>/dtmm_ops GENDIR=<build dir>/ dtmm_model_app
# (Cortex-M55 also PLATFORM_FLAGS with -mfloat-abi=hard, see bench/models.)
# The image is $(GENDIR)bin/dtmm_model_app.

DTMM_BENCH_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
DTMM_APP_SRCS := $(DTMM_BENCH_DIR)/model_app.cc $(DTMM_BENCH_DIR)/model_app_startup.c
DTMM_APP_OBJS := $(addprefix $(CORE_OBJDIR), \
  $(patsubst %.cc,%.o,$(patsubst %.c,%.o,$(DTMM_APP_SRCS))))
DTMM_APP_BINARY := $(BINDIR)dtmm_model_app

# Memory of the QEMU machine the target runs on (code, RAM start, RAM end).
ifeq ($(TARGET_ARCH), cortex-m4)
  # mps2-an386: SSRAM1 (4 MiB) at 0 for code, PSRAM (16 MiB) at 0x21000000.
  DTMM_APP_MEMORY := DTMM_TEXT=0x400 DTMM_RAM=0x21000000 DTMM_RAM_END=0x22000000
else ifeq ($(TARGET_ARCH), cortex-m55)
  # mps3-an547: ITCM at 0 for the vectors, everything else in DDR at 0x60000000.
  DTMM_APP_MEMORY := DTMM_TEXT=0x60000000 DTMM_RAM=0x60000000 DTMM_RAM_END=0x70000000
endif

$(DTMM_APP_BINARY): $(DTMM_APP_OBJS) $(MICROLITE_LIB_PATH) $(DTMM_BENCH_DIR)/model_app.ld
	$(if $(DTMM_APP_MEMORY),,$(error bench/model_app.mk: no QEMU machine for TARGET_ARCH=$(TARGET_ARCH)))
	$(Q)$(MKDIR_P) $(dir $@)
	$(Q)$(CXX) $(CXXFLAGS) -nostartfiles -T$(DTMM_BENCH_DIR)/model_app.ld \
	  $(addprefix -Wl$(comma)--defsym$(comma),$(DTMM_APP_MEMORY)) -Wl,--no-warn-rwx-segments \
	  -o $@ $(DTMM_APP_OBJS) $(MICROLITE_LIB_PATH) $(LDFLAGS) $(MICROLITE_LIBS)

comma := ,
dtmm_model_app: $(DTMM_APP_BINARY)
.PHONY: dtmm_model_app

# bench/models' flash images (bench/flash_app.h): this builds the parts every image
# shares and writes the flags bench/models compiles and links each image's generated
# parts (its op list, its model) with, one NAME=VALUE per line, to
# $(GENDIR)flash_flags.txt.
DTMM_FLASH_OBJS := $(addprefix $(CORE_OBJDIR), \
  $(DTMM_BENCH_DIR)/flash_app.o $(DTMM_BENCH_DIR)/model_app_startup.o)
DTMM_FLASH_FLAGS := $(GENDIR)flash_flags.txt

dtmm_flash_parts: $(DTMM_FLASH_OBJS) $(MICROLITE_LIB_PATH)
	$(if $(DTMM_APP_MEMORY),,$(error bench/model_app.mk: no QEMU machine for TARGET_ARCH=$(TARGET_ARCH)))
	$(file >$(DTMM_FLASH_FLAGS),CXX=$(CXX))
	$(file >>$(DTMM_FLASH_FLAGS),CC=$(CC))
	$(file >>$(DTMM_FLASH_FLAGS),CXXFLAGS=$(CXXFLAGS) $(CORE_OPTIMIZATION_LEVEL))
	$(file >>$(DTMM_FLASH_FLAGS),CCFLAGS=$(CCFLAGS))
	$(file >>$(DTMM_FLASH_FLAGS),KERNEL_CCFLAGS=$(CCFLAGS) $(KERNEL_OPTIMIZATION_LEVEL))
	$(file >>$(DTMM_FLASH_FLAGS),INCLUDES=$(INCLUDES) -I$(DTMM_BENCH_DIR))
	$(file >>$(DTMM_FLASH_FLAGS),LINK=-nostartfiles -T$(DTMM_BENCH_DIR)/model_app.ld $(addprefix -Wl$(comma)--defsym$(comma),$(DTMM_APP_MEMORY)) -Wl$(comma)--no-warn-rwx-segments)
	$(file >>$(DTMM_FLASH_FLAGS),OBJS=$(DTMM_FLASH_OBJS))
	$(file >>$(DTMM_FLASH_FLAGS),LIBS=$(MICROLITE_LIB_PATH) $(LDFLAGS) $(MICROLITE_LIBS))

.PHONY: dtmm_flash_parts
