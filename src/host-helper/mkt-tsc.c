/*
 * mkt-tsc: print the host's TSC frequency in kHz, measured against
 * CLOCK_MONOTONIC_RAW over about 20 ms.
 *
 * Under TCG the guest's TSC is the host's own counter, so its frequency is
 * the host's. The guest kernel otherwise calibrates it against the emulated
 * PIT at every boot, and on a busy host (several runs at once) that
 * calibration fails: the kernel marks the TSC unstable and keeps time with
 * 4 ms jiffies. mkt measures it once per host boot and passes it as
 * tsc_early_khz.
 *
 * Exit status 1, printing nothing, where the host has no TSC to measure
 * (not x86-64) or the two clocks disagree from one try to the next.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#if defined(__x86_64__)
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static uint64_t ns(const struct timespec *t)
{
	return (uint64_t)t->tv_sec * 1000000000u + (uint64_t)t->tv_nsec;
}

/* One (clock, TSC) pair: the TSC read between two clock reads, from the tightest of a few tries. */
static void pair(uint64_t *clock_ns, uint64_t *tsc)
{
	uint64_t best = UINT64_MAX;
	for (int i = 0; i < 16; i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC_RAW, &a);
		uint64_t t = rdtsc();
		clock_gettime(CLOCK_MONOTONIC_RAW, &b);
		uint64_t gap = ns(&b) - ns(&a);
		if (gap < best) {
			best = gap;
			*clock_ns = ns(&a) + gap / 2;
			*tsc = t;
		}
	}
}

static uint64_t measure(long ms)
{
	uint64_t c0, t0, c1, t1;
	pair(&c0, &t0);
	struct timespec d = { 0, ms * 1000000L };
	while (nanosleep(&d, &d) != 0) {
	}
	pair(&c1, &t1);
	if (c1 <= c0 || t1 <= t0)
		return 0;
	/* kHz = ticks per ms */
	return (uint64_t)((double)(t1 - t0) * 1e6 / (double)(c1 - c0) + 0.5);
}

int main(void)
{
	uint64_t a = measure(10), b = measure(10);
	/* two measurements 1e-4 apart or more: a clock was stepped, or the TSC is not constant */
	if (!a || !b || (a > b ? a - b : b - a) * 10000 > a)
		return 1;
	printf("%llu\n", (unsigned long long)((a + b) / 2));
	return 0;
}
#else
int main(void)
{
	return 1;
}
#endif
