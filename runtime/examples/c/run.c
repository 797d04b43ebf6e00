/* Runs a .tern artifact through the C ABI on seeded inputs: the C twin of examples/run_artifact.rs, which
 * prints the same output bits for the same artifact (scripts/test.sh checks that they agree).
 *
 *   cargo rustc --release -p tern --features ffi --crate-type staticlib
 *   cc -O2 -I runtime/include runtime/examples/c/run.c target/release/libtern.a -lm -lpthread -ldl -o tern_run
 *   ./tern_run model.tern [runs] [threads]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tern.h"

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t *buf = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc(n ? (size_t)n : 1)) != NULL) {
      if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
      } else {
        *len = (size_t)n;
      }
    }
  }
  fclose(f);
  return buf;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s model.tern [runs] [threads]\n", argv[0]);
    return 2;
  }
  const char *path = argv[1];
  int runs = argc > 2 ? atoi(argv[2]) : 1;
  size_t threads = argc > 3 ? (size_t)atoi(argv[3]) : 1;
  if (runs < 1) runs = 1;
  if (tern_abi_version() != TERN_ABI_VERSION) {
    fprintf(stderr, "libtern ABI %u, header %u\n", tern_abi_version(), TERN_ABI_VERSION);
    return 1;
  }
  size_t len = 0;
  uint8_t *bytes = read_file(path, &len);
  if (!bytes) {
    perror(path);
    return 1;
  }
  char err[512];
  TernModel *model = NULL;
  if (tern_model_load(bytes, len, &model, err, sizeof err) != TERN_STATUS_OK) {
    fprintf(stderr, "%s: %s\n", path, err);
    return 1;
  }
  TernSession *session = NULL;
  if (tern_session_new(model, threads, NULL, 0, &session, err, sizeof err) != TERN_STATUS_OK) {
    fprintf(stderr, "%s: %s\n", path, err);
    return 1;
  }
  /* the same seeded values as run_artifact (an LCG in [-1, 1)), kept to rewrite before every run */
  size_t n_in = tern_model_input_count(model), n_out = tern_model_output_count(model);
  float **inputs = calloc(n_in ? n_in : 1, sizeof *inputs);
  size_t *in_len = calloc(n_in ? n_in : 1, sizeof *in_len);
  uint64_t seed = 0x2545f4914f6cdd1dULL;
  for (size_t i = 0; i < n_in; i++) {
    TernTensorInfo info;
    tern_model_input_info(model, i, &info);
    in_len[i] = info.elements;
    inputs[i] = malloc((info.elements ? info.elements : 1) * sizeof(float));
    for (size_t k = 0; k < info.elements; k++) {
      seed = seed * 6364136223846793005ULL + 1;
      inputs[i][k] = (float)(seed >> 40) / 8388608.0f - 1.0f;
    }
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int r = 0; r < runs; r++) {
    for (size_t i = 0; i < n_in; i++) {
      if (tern_session_set_input(session, i, inputs[i], in_len[i]) != TERN_STATUS_OK) {
        fprintf(stderr, "%s\n", tern_session_error(session));
        return 1;
      }
    }
    if (tern_session_run(session) != TERN_STATUS_OK) {
      fprintf(stderr, "%s\n", tern_session_error(session));
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6) / runs;
  /* FNV-1a over the output bits, read in place in the arena */
  double sum = 0;
  uint64_t bits = 0xcbf29ce484222325ULL;
  for (size_t o = 0; o < n_out; o++) {
    size_t n = 0;
    const float *y = tern_session_output(session, o, &n);
    for (size_t k = 0; k < n; k++) {
      uint32_t u;
      memcpy(&u, &y[k], 4);
      sum += y[k];
      for (int b = 0; b < 4; b++) bits = (bits ^ ((u >> (8 * b)) & 0xff)) * 0x100000001b3ULL;
    }
  }
  printf("%s: %s path, %d run(s), %.3f ms/run, output sum %.6f, bits %016llx\n", path,
         tern_session_isa(session), runs, ms, sum, (unsigned long long)bits);
  for (size_t i = 0; i < n_in; i++) free(inputs[i]);
  free(inputs);
  free(in_len);
  tern_session_free(session);
  tern_model_free(model);
  free(bytes);
  return 0;
}
