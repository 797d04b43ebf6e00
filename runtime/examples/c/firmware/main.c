/* Runs the .tern artifact linked into the program (model.S includes its bytes) on seeded inputs and
 * prints every output value as its float bit pattern. The same C builds for a Cortex-M4 firmware image
 * (startup.c and mps2_an386.ld; libtern.a with --features c-alloc, no std) and for the host, so
 * scripts/firmware.sh can run both (the firmware on qemu-system-arm) and compare what they print. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern.h"

extern const uint8_t tern_model_start[], tern_model_end[];

int main(void) {
  char err[256];
  TernModel *model = NULL;
  size_t len = (size_t)(tern_model_end - tern_model_start);
  if (tern_model_load(tern_model_start, len, &model, err, sizeof err) != TERN_STATUS_OK) {
    printf("load: %s\n", err);
    return 1;
  }
  TernSession *session = NULL;
  if (tern_session_new(model, 1, NULL, 0, &session, err, sizeof err) != TERN_STATUS_OK) {
    printf("session: %s\n", err);
    return 1;
  }
  /* examples/c/run.c's seeded values (an LCG in [-1, 1)) */
  uint64_t seed = 0x2545f4914f6cdd1dULL;
  for (size_t i = 0; i < tern_model_input_count(model); i++) {
    TernTensorInfo info;
    tern_model_input_info(model, i, &info);
    float *x = malloc((info.elements ? info.elements : 1) * sizeof(float));
    if (!x) {
      printf("out of memory\n");
      return 1;
    }
    for (size_t k = 0; k < info.elements; k++) {
      seed = seed * 6364136223846793005ULL + 1;
      x[k] = (float)(seed >> 40) / 8388608.0f - 1.0f;
    }
    if (tern_session_set_input(session, i, x, info.elements) != TERN_STATUS_OK) {
      printf("input %u: %s\n", (unsigned)i, tern_session_error(session));
      return 1;
    }
    free(x);
  }
  if (tern_session_run(session) != TERN_STATUS_OK) {
    printf("run: %s\n", tern_session_error(session));
    return 1;
  }
  for (size_t o = 0; o < tern_model_output_count(model); o++) {
    size_t n = 0;
    const float *y = tern_session_output(session, o, &n);
    for (size_t k = 0; k < n; k++) {
      uint32_t u;
      memcpy(&u, &y[k], 4);
      printf("output %u %u %08lx\n", (unsigned)o, (unsigned)k, (unsigned long)u);
    }
  }
  printf("isa %s\n", tern_session_isa(session));
  tern_session_free(session);
  tern_model_free(model);
  return 0;
}
