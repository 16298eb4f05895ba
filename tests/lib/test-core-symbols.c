/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: libblkio.so.1 exports exactly the 43 public functions of
 * libblkio 1.x, unversioned, and nothing else; its soname is libblkio.so.1.
 * Reads the dynamic symbol table with nm(1) (binutils), so the check sees
 * what the dynamic linker sees.  Usage: test-core-symbols path/to/lib.so
 */
#include "core-util.h"

static const char *const expected[] = {
    "blkio_add_poll_queue", "blkio_add_queue", "blkio_alloc_mem_region",
    "blkio_connect", "blkio_create", "blkio_destroy",
    "blkio_free_mem_region", "blkio_get_bool", "blkio_get_error_msg",
    "blkio_get_int", "blkio_get_poll_queue", "blkio_get_queue",
    "blkio_get_str", "blkio_get_uint64", "blkio_map_mem_region",
    "blkio_remove_poll_queue", "blkio_remove_queue", "blkio_set_bool",
    "blkio_set_int", "blkio_set_str", "blkio_set_uint64", "blkio_start",
    "blkio_unmap_mem_region", "blkioq_close_all_zones", "blkioq_close_zone",
    "blkioq_discard", "blkioq_do_io", "blkioq_do_io_interruptible",
    "blkioq_finish_all_zones", "blkioq_finish_zone", "blkioq_flush",
    "blkioq_get_completion_fd", "blkioq_open_all_zones", "blkioq_open_zone",
    "blkioq_read", "blkioq_readv", "blkioq_report_zones",
    "blkioq_reset_all_zones", "blkioq_reset_zone",
    "blkioq_set_completion_fd_enabled", "blkioq_write",
    "blkioq_write_zeroes", "blkioq_writev",
};
#define NEXPECTED (sizeof(expected) / sizeof(expected[0]))

static int find(const char *name)
{
    for (size_t i = 0; i < NEXPECTED; i++)
        if (strcmp(expected[i], name) == 0)
            return (int)i;
    return -1;
}

int main(int argc, char **argv)
{
    bool seen[NEXPECTED] = { false };
    char cmd[1200], line[1024], soname[256] = "";
    int bad = 0, nseen = 0;
    FILE *p;

    if (argc != 2)
        T_FAIL("usage: %s path/to/libblkio.so", argv[0]);
    if (access(argv[1], R_OK) < 0)
        T_FAIL("%s: %s", argv[1], strerror(errno));
    if (system("nm --version >/dev/null 2>&1") != 0)
        t_skip("nm (binutils) is not installed");
    if (NEXPECTED != 43)
        T_FAIL("internal: %zu names listed", NEXPECTED);

    snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s'", argv[1]);
    p = popen(cmd, "r");
    CHECK(p != NULL);
    while (fgets(line, sizeof(line), p)) {
        char addr[64], type[8], name[512];
        int i;

        if (sscanf(line, "%63s %7s %511s", addr, type, name) != 3) {
            fprintf(stderr, "unexpected nm line: %s", line);
            bad++;
            continue;
        }
        if (strchr(name, '@')) {
            fprintf(stderr, "versioned symbol: %s\n", name);
            bad++;
            continue;
        }
        i = find(name);
        if (i < 0) {
            fprintf(stderr, "extra exported symbol: %s (%s)\n", name, type);
            bad++;
            continue;
        }
        if (strcmp(type, "T") != 0) {
            fprintf(stderr, "%s is type %s, not a function (T)\n", name,
                    type);
            bad++;
        }
        if (!seen[i]) {
            seen[i] = true;
            nseen++;
        }
    }
    if (pclose(p) != 0)
        T_FAIL("%s failed", cmd);
    for (size_t i = 0; i < NEXPECTED; i++) {
        if (!seen[i]) {
            fprintf(stderr, "missing symbol: %s\n", expected[i]);
            bad++;
        }
    }

    snprintf(cmd, sizeof(cmd), "objdump -p '%s' 2>/dev/null", argv[1]);
    p = popen(cmd, "r");
    CHECK(p != NULL);
    while (fgets(line, sizeof(line), p)) {
        char key[64], val[256];

        if (sscanf(line, "%63s %255s", key, val) == 2 &&
            strcmp(key, "SONAME") == 0)
            snprintf(soname, sizeof(soname), "%s", val);
        if (strstr(line, "Version definitions:")) {
            fprintf(stderr, "the library defines symbol versions\n");
            bad++;
        }
    }
    pclose(p);
    if (strcmp(soname, "libblkio.so.1") != 0) {
        fprintf(stderr, "soname is '%s', expected libblkio.so.1\n", soname);
        bad++;
    }

    if (bad)
        T_FAIL("%d problem(s) with the exported ABI", bad);
    printf("exactly the %d public functions are exported, unversioned\n",
           nseen);
    return T_EXIT_PASS;
}
