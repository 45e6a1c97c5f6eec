/*
 * merge_iter_fixture.h: what the read-path iterator tests share (test_merge_iter.c,
 * test_merge_iter_db.c): a deterministic xorshift generator. Each test program has its own state.
 */
#ifndef KIWI_MERGE_ITER_FIXTURE_H
#define KIWI_MERGE_ITER_FIXTURE_H

#include <stdint.h>

static uint64_t rng_state = 88172645463325252ull;

/* A pseudo-random number in [0, n) (0 when n is 0). */
static inline uint64_t rnd(uint64_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return n ? rng_state % n : 0;
}

#endif /* KIWI_MERGE_ITER_FIXTURE_H */
