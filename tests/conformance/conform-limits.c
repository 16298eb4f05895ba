/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * conform-limits - what a libblkio.so.1 does at the edge of a virtio-blk
 * device's limits, written against <blkio.h> only, so that the same
 * binary runs on our library and on libblkio 1.5 (LD_LIBRARY_PATH).
 *
 *   conform-limits qsize DRIVER N [NAME=VALUE...]
 *       connect, set queue-size N, start, then four rounds of 512 (or N,
 *       if smaller) 4 KiB writes in one batch, each round read back and
 *       compared.  Ends with "result = refused" (set or start failed),
 *       "result = ok" (all data came back), "result = io-error",
 *       "result = corrupt" or "result = timeout" (a batch did not complete
 *       within 10 s).
 *   conform-limits regions DRIVER N[xSIZE] [NAME=VALUE...]
 *       connect, start, blkio_alloc_mem_region() + blkio_map_mem_region()
 *       of N regions of SIZE bytes (4 KiB), then a write from the last region and a read
 *       back into it.  Ends with "mapped = M" and "result = ok" (data came
 *       back through the last region) or the failure.
 *
 * One "label = value" line per observation; a refusal's error message is
 * printed as "error = ...".  Exit status 0 whenever the program ran to a
 * result (the result line says what happened), 1 on a setup failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <blkio.h>

#define CL_BLOCK        4096u
#define CL_BATCH_MAX    512u
#define CL_ROUNDS       4

static void cl_die(const char *what, int ret)
{
    printf("setup %s = %d (%s)\n", what, ret, blkio_get_error_msg());
    exit(1);
}

static struct blkio *cl_connect(const char *driver, int argc, char **argv)
{
    struct blkio *b;
    int ret = blkio_create(driver, &b);

    if (ret < 0)
        cl_die("create", ret);
    for (int i = 0; i < argc; i++) {
        char *eq = strchr(argv[i], '=');

        if (!eq)
            cl_die("property without '='", -EINVAL);
        *eq = '\0';
        ret = blkio_set_str(b, argv[i], eq + 1);
        *eq = '=';
        if (ret < 0)
            cl_die(argv[i], ret);
    }
    ret = blkio_connect(b);
    if (ret < 0)
        cl_die("connect", ret);
    return b;
}

/* Wait for n completions, at most 10 s; returns how many failed, or -1 on
 * a timeout or a do_io error. */
static int cl_wait(struct blkioq *q, struct blkio_completion *c, int n)
{
    int got = 0, failed = 0;
    time_t end = time(NULL) + 10;

    while (got < n) {
        struct timespec ts = { .tv_sec = 1 };
        int ret = blkioq_do_io(q, c, 0, n - got, &ts);

        if (ret < 0 && ret != -ETIME) {
            printf("do_io = %d\n", ret);
            return -1;
        }
        for (int i = 0; i < (ret > 0 ? ret : 0); i++)
            if (c[i].ret != 0)
                failed++;
        got += ret > 0 ? ret : 0;
        if (got < n && time(NULL) >= end) {
            printf("completed = %d of %d\n", got, n);
            return -1;
        }
    }
    return failed;
}

static int cl_qsize(const char *driver, int n, int argc, char **argv)
{
    struct blkio *b = cl_connect(driver, argc, argv);
    struct blkio_mem_region r;
    struct blkio_completion *c;
    struct blkioq *q;
    unsigned batch = (unsigned)n < CL_BATCH_MAX ? (unsigned)n : CL_BATCH_MAX;
    int max = 0, ret;

    if (blkio_get_int(b, "max-queue-size", &max) == 0)
        printf("max-queue-size = %d\n", max);
    ret = blkio_set_int(b, "queue-size", n);
    printf("set queue-size %d = %d\n", n, ret);
    if (ret == 0)
        ret = blkio_start(b);
    if (ret < 0) {
        printf("error = %s\n", blkio_get_error_msg());
        printf("result = refused\n");
        blkio_destroy(&b);
        return 0;
    }
    printf("start = 0\n");
    ret = blkio_alloc_mem_region(b, &r, 2 * (size_t)batch * CL_BLOCK);
    if (ret == 0)
        ret = blkio_map_mem_region(b, &r);
    if (ret < 0)
        cl_die("memory region", ret);
    q = blkio_get_queue(b, 0);
    c = calloc(batch, sizeof(*c));
    if (!q || !c)
        cl_die("queue", -ENOMEM);

    for (int round = 0; round < CL_ROUNDS; round++) {
        uint8_t *wr = r.addr, *rd = (uint8_t *)r.addr + batch * CL_BLOCK;
        int failed;

        for (unsigned i = 0; i < batch; i++) {
            memset(wr + i * CL_BLOCK, (int)((round * 7 + i) % 251 + 1),
                   CL_BLOCK);
            blkioq_write(q, (uint64_t)i * CL_BLOCK, wr + i * CL_BLOCK,
                         CL_BLOCK, NULL, 0);
        }
        failed = cl_wait(q, c, (int)batch);
        if (failed == 0) {
            memset(rd, 0, batch * CL_BLOCK);
            for (unsigned i = 0; i < batch; i++)
                blkioq_read(q, (uint64_t)i * CL_BLOCK, rd + i * CL_BLOCK,
                            CL_BLOCK, NULL, 0);
            failed = cl_wait(q, c, (int)batch);
        }
        if (failed < 0) {
            printf("round %d = timeout\nresult = timeout\n", round);
            fflush(stdout);
            _exit(0);           /* requests in flight: no destroy */
        }
        if (failed > 0) {
            printf("round %d = %d requests failed\nresult = io-error\n",
                   round, failed);
            fflush(stdout);
            _exit(0);
        }
        if (memcmp(wr, rd, batch * CL_BLOCK) != 0) {
            printf("round %d = data differs\nresult = corrupt\n", round);
            fflush(stdout);
            _exit(0);
        }
        printf("round %d = ok\n", round);
    }
    printf("result = ok\n");
    free(c);
    blkio_destroy(&b);
    return 0;
}

static int cl_regions(const char *driver, const char *count, int argc,
                      char **argv)
{
    int n = atoi(count);
    size_t size = strchr(count, 'x') ? strtoul(strchr(count, 'x') + 1, NULL, 0)
                                     : CL_BLOCK;
    struct blkio *b = cl_connect(driver, argc, argv);
    struct blkio_mem_region *r = calloc((size_t)n + 1, sizeof(*r));
    struct blkio_completion c;
    struct blkioq *q;
    uint64_t maxr = 0;
    struct rlimit rl;
    int mapped = 0, ret;
    uint8_t *buf;

    /* Every region may hold a file descriptor (VDUSE needs them). */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (blkio_get_uint64(b, "max-mem-regions", &maxr) == 0)
        printf("max-mem-regions = %" PRIu64 "\n", maxr);
    ret = blkio_start(b);
    if (ret < 0 || !r)
        cl_die("start", ret);
    for (; mapped < n; mapped++) {
        ret = blkio_alloc_mem_region(b, &r[mapped], size);
        if (ret < 0) {
            printf("alloc %d = %d (%s)\n", mapped, ret,
                   blkio_get_error_msg());
            break;
        }
        ret = blkio_map_mem_region(b, &r[mapped]);
        if (ret < 0) {
            printf("map %d = %d (%s)\n", mapped, ret, blkio_get_error_msg());
            blkio_free_mem_region(b, &r[mapped]);
            break;
        }
    }
    printf("mapped = %d\n", mapped);
    if (mapped == 0) {
        printf("result = none mapped\n");
        return 0;
    }
    q = blkio_get_queue(b, 0);
    buf = r[mapped - 1].addr;
    memset(buf, 0x5a, CL_BLOCK);
    blkioq_write(q, 0, buf, CL_BLOCK, NULL, 0);
    ret = cl_wait(q, &c, 1);
    if (ret == 0) {
        memset(buf, 0, CL_BLOCK);
        blkioq_read(q, 0, buf, CL_BLOCK, NULL, 0);
        ret = cl_wait(q, &c, 1);
    }
    if (ret != 0) {
        printf("result = %s\n", ret < 0 ? "timeout" : "io-error");
        fflush(stdout);
        _exit(0);
    }
    for (unsigned i = 0; i < CL_BLOCK; i++)
        if (buf[i] != 0x5a) {
            printf("result = corrupt\n");
            return 0;
        }
    printf("result = ok\n");
    /* Exit without unmapping thousands of regions one by one: closing the
     * device drops them all. */
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s qsize|regions DRIVER N [NAME=VALUE...]\n",
                argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "qsize") == 0)
        return cl_qsize(argv[2], atoi(argv[3]), argc - 4, argv + 4);
    if (strcmp(argv[1], "regions") == 0)
        return cl_regions(argv[2], argv[3], argc - 4, argv + 4);
    fprintf(stderr, "%s: unknown mode %s\n", argv[0], argv[1]);
    return 2;
}
