/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: a max-transfer read or write from a single buffer that
 * starts inside a page (buf-alignment is 4) succeeds even when the
 * buffer's pages are not physically contiguous.  Such a buffer spans one
 * page more than max-transfer has pages; the kernel maps each page that
 * does not physically follow the one before as a segment of its own, and
 * refuses a command with more segments than the queue's max_segments
 * (EINVAL).  A fresh process's buffer often sits on contiguous pages and
 * hides that; a long-running server's reused heap does not.  The buffer
 * here is built, by frame numbers from /proc/self/pagemap, so that no two
 * of its pages follow each other physically.  The same holds for an
 * iovec array whose first element starts inside a page and whose
 * elements meet without gaps.
 * Usage: test-nvme-segments [/dev/ngXnY] (default $BLKIO_VM_NVME).
 */

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nvme-util.h"

#define NS_PAGE 4096ul

/* The frame number of the page at p, from /proc/self/pagemap (only root
 * sees them); 0 if unknown. */
static uint64_t ns_pfn(int fd, const void *p)
{
    uint64_t e;
    off_t off = (off_t)((uintptr_t)p / NS_PAGE * 8);

    if (fd < 0 || pread(fd, &e, 8, off) != 8 || !(e >> 63))
        return 0;
    return e & ((1ull << 55) - 1);
}

/*
 * npages pages of anonymous memory, no page physically following the one
 * before it: each is moved (mremap keeps the frame) from a pool of pages
 * faulted in backwards (consecutive faults tend to get ascending frames),
 * skipping any whose frame follows the previous one's.  Returns the
 * number of pages that still follow their predecessor (0 unless the
 * frames are unknown: then -1).
 */
static long ns_scattered_pages(size_t npages, uint8_t **out)
{
    size_t pool_pages = 4 * npages, next = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY);
    uint8_t *pool, *dst;
    uint64_t prev = 0;
    long pairs = 0;

    pool = mmap(NULL, pool_pages * NS_PAGE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    dst = mmap(NULL, npages * NS_PAGE, PROT_NONE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(pool != MAP_FAILED && dst != MAP_FAILED);
    (void)madvise(pool, pool_pages * NS_PAGE, MADV_NOHUGEPAGE);
    for (size_t i = pool_pages; i-- > 0;)
        pool[i * NS_PAGE] = 1;
    for (size_t i = 0; i < npages; i++) {
        uint8_t *page;
        uint64_t pfn;

        /* even pool pages first, then odd ones; skip any whose frame
         * follows the previous page's */
        do {
            size_t half = pool_pages / 2;

            CHECK(next < pool_pages);
            page = pool + (2 * (next % half) + next / half) * NS_PAGE;
            pfn = ns_pfn(fd, page);
            next++;
        } while (pfn != 0 && prev != 0 && pfn == prev + 1);
        CHECK(mremap(page, NS_PAGE, NS_PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
                     dst + i * NS_PAGE) != MAP_FAILED);
        if (pfn == 0)
            pairs = -1;
        else if (pairs >= 0 && prev != 0 && pfn == prev + 1)
            pairs++;
        prev = pfn;
    }
    if (fd >= 0)
        close(fd);
    munmap(pool, pool_pages * NS_PAGE);     /* what was not moved */
    *out = dst;
    return pairs;
}

static void ns_write_read(struct blkioq *q, uint8_t *buf, size_t len,
                          uint64_t off, int seed)
{
    const char *msg = NULL;
    int ret;

    for (size_t k = 0; k < len; k++)
        buf[k] = (uint8_t)(k * 13 + (size_t)seed);
    blkioq_write(q, off, buf, len, NULL, BLKIO_REQ_FUA);
    ret = t_wait(q, &msg);
    if (ret != 0)
        T_FAIL("%zu byte write from page offset %zu: %d (%s)", len,
               (size_t)((uintptr_t)buf % NS_PAGE), ret, msg ? msg : "");
    memset(buf, 0, len);
    blkioq_read(q, off, buf, len, NULL, 0);
    ret = t_wait(q, &msg);
    if (ret != 0)
        T_FAIL("%zu byte read into page offset %zu: %d (%s)", len,
               (size_t)((uintptr_t)buf % NS_PAGE), ret, msg ? msg : "");
    for (size_t k = 0; k < len; k++)
        if (buf[k] != (uint8_t)(k * 13 + (size_t)seed))
            T_FAIL("byte %zu of a %zu byte read into page offset %zu is "
                   "wrong", k, len, (size_t)((uintptr_t)buf % NS_PAGE));
}

/*
 * The same through writev/readv: three elements that meet without gaps
 * (only the first starts and only the last ends inside a page, so the
 * kernel maps them in place rather than through a bounce buffer), the
 * first `off` bytes into a page: len bytes on len / NS_PAGE + 1 pages.
 */
static void ns_writev_readv(struct blkioq *q, uint8_t *buf, size_t len,
                            size_t off, uint64_t dev_off, int seed)
{
    size_t half = len / 2;
    struct iovec iov[3] = {
        { .iov_base = buf + off, .iov_len = half - off },
        { .iov_base = buf + half, .iov_len = half },
        { .iov_base = buf + len, .iov_len = off },
    };
    uint8_t *data = buf + off;
    const char *msg = NULL;
    int ret;

    for (size_t k = 0; k < len; k++)
        data[k] = (uint8_t)(k * 7 + (size_t)seed);
    blkioq_writev(q, dev_off, iov, 3, NULL, BLKIO_REQ_FUA);
    ret = t_wait(q, &msg);
    if (ret != 0)
        T_FAIL("writev of %zu bytes in 3 elements from page offset %zu: "
               "%d (%s)", len, off, ret, msg ? msg : "");
    memset(data, 0, len);
    blkioq_readv(q, dev_off, iov, 3, NULL, 0);
    ret = t_wait(q, &msg);
    if (ret != 0)
        T_FAIL("readv of %zu bytes in 3 elements into page offset %zu: "
               "%d (%s)", len, off, ret, msg ? msg : "");
    for (size_t k = 0; k < len; k++)
        if (data[k] != (uint8_t)(k * 7 + (size_t)seed))
            T_FAIL("byte %zu of a readv into page offset %zu is wrong", k,
                   off);
}

int main(int argc, char **argv)
{
    const char *dev = nt_device(argc, argv, "BLKIO_VM_NVME", "/dev/ng0n1");
    struct blkio *b;
    struct blkioq *q;
    size_t mt, npages;
    uint8_t *pages;
    long pairs;
    static const size_t offsets[] = { 4, 16, 512, 4092 };

    if (geteuid() != 0)
        t_skip("nvme-io_uring needs CAP_SYS_ADMIN (run as root)");
    b = nt_open(dev, false, 1, 0);
    q = blkio_get_queue(b, 0);
    mt = (size_t)t_get_int(b, "max-transfer");
    npages = mt / NS_PAGE + 2;
    pairs = ns_scattered_pages(npages, &pages);
    printf("max-transfer %zu, max-segments %d, %zu buffer pages, %ld of "
           "them physically follow the page before\n", mt,
           t_get_int(b, "max-segments"), npages, pairs);

    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        ns_write_read(q, pages + offsets[i], mt, 48ull << 20, (int)i);
        /* and a page-aligned one, which needs no more pages than usual */
        ns_write_read(q, pages, mt, 48ull << 20, (int)i + 7);
    }
    /* Elements cut where whole blocks end: offsets of whole blocks. */
    for (size_t off = 512; off < NS_PAGE; off *= 4)
        if (off % (size_t)t_get_int(b, "request-alignment") == 0)
            ns_writev_readv(q, pages, mt, off, 50ull << 20, (int)off);
    blkio_destroy(&b);
    munmap(pages, npages * NS_PAGE);
    return 0;
}
