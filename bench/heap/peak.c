// Reads a heaptrack raw trace on stdin; prints, for each window of W ms (the argument), the
// largest live heap in it and the live heap at its end, in MB. Build and use as live.c:
//   gcc -O2 -o peak bench/heap/peak.c && zstd -dc trace.zst | ./peak 300000
// heaptrack's raw format: 'a size trace' defines an allocation info (in order), '+ idx' /
// '- idx' allocate / free with info idx, 'c ms' the clock (all hexadecimal).
#include <stdio.h>
#include <stdlib.h>
#define MAXI 50000000
static long long sizes[MAXI];
int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: peak WINDOW_MS < trace\n");
    return 2;
  }
  long long w = atoll(argv[1]), n = 0, live = 0, peak = 0, win = 0;
  char line[1 << 16];
  while (fgets(line, sizeof line, stdin)) {
    char c = line[0];
    if (c == 'a') {
      if (n < MAXI) sizes[n] = strtoll(line + 2, NULL, 16);
      n++;
    } else if (c == '+' || c == '-') {
      long long idx = strtoll(line + 2, NULL, 16);
      if (idx < n && idx < MAXI) {
        live += (c == '+') ? sizes[idx] : -sizes[idx];
        if (live > peak) peak = live;
      }
    } else if (c == 'c') {
      long long t = strtoll(line + 2, NULL, 16);
      while (t >= (win + 1) * w) {
        printf("%lld-%lld s: peak %.1f MB, live at end %.1f MB\n", win * w / 1000,
               (win + 1) * w / 1000, peak / 1e6, live / 1e6);
        win++;
        peak = live;
      }
    }
  }
  return 0;
}
