// Reads a heaptrack raw trace on stdin; writes live allocation counts per allocation-info
// index at the times given (ms) as files live_<ms>.txt ("idx count" lines, nonzero only).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define MAXI 50000000
static long long counts[MAXI];
int main(int argc, char **argv) {
  int nt = argc - 1; long long *ts = malloc(sizeof(long long) * nt); int next = 0;
  for (int i = 0; i < nt; i++) ts[i] = atoll(argv[i + 1]);
  char line[1 << 16]; long long maxidx = 0;
  while (fgets(line, sizeof line, stdin)) {
    char c = line[0];
    if (c == '+' || c == '-') {
      long long idx = strtoll(line + 2, NULL, 16);
      if (idx >= MAXI) continue;
      if (idx > maxidx) maxidx = idx;
      counts[idx] += (c == '+') ? 1 : -1;
    } else if (c == 'c') {
      long long t = strtoll(line + 2, NULL, 16);
      while (next < nt && t >= ts[next]) {
        char name[64]; snprintf(name, sizeof name, "live_%lld.txt", ts[next]);
        FILE *f = fopen(name, "w");
        for (long long i = 0; i <= maxidx; i++) if (counts[i]) fprintf(f, "%lld %lld\n", i, counts[i]);
        fclose(f); fprintf(stderr, "snapshot at %lld ms\n", t); next++;
      }
    }
  }
  return 0;
}
