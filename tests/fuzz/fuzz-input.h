/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * fuzz-input.h - the fuzzer's bytes as a stream of choices.
 *
 * Every reader returns 0 once the input is used up, and every choice is
 * written so that 0 means "behave correctly": an empty input is a
 * well-behaved peer, and the fuzzer mutates from there.
 */
#ifndef TESTS_FUZZ_INPUT_H
#define TESTS_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fz {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t fz_u8(struct fz *f)
{
    if (f->n == 0)
        return 0;
    f->n--;
    return *f->p++;
}

/* Up to len bytes into dst; the rest of dst is zeroed. */
static inline void fz_bytes(struct fz *f, void *dst, size_t len)
{
    size_t k = len < f->n ? len : f->n;

    memcpy(dst, f->p, k);
    memset((uint8_t *)dst + k, 0, len - k);
    f->p += k;
    f->n -= k;
}

static inline uint16_t fz_u16(struct fz *f)
{
    uint16_t v;
    fz_bytes(f, &v, sizeof(v));
    return v;
}

static inline uint32_t fz_u32(struct fz *f)
{
    uint32_t v;
    fz_bytes(f, &v, sizeof(v));
    return v;
}

static inline uint64_t fz_u64(struct fz *f)
{
    uint64_t v;
    fz_bytes(f, &v, sizeof(v));
    return v;
}

/* Flip some bytes of buf: a count, then (offset, xor) pairs; offsets
 * are one byte, or two when buf is longer than 256 bytes. */
static inline void fz_scribble(struct fz *f, void *buf, size_t len,
                               unsigned max_flips)
{
    unsigned n = fz_u8(f) % (max_flips + 1);

    for (unsigned i = 0; i < n && len > 0; i++) {
        size_t off = (len > 256 ? fz_u16(f) : fz_u8(f)) % len;
        ((uint8_t *)buf)[off] ^= fz_u8(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif /* TESTS_FUZZ_INPUT_H */
