/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: run the example programs as an outside user would.
 * blkio-copy copies a random 8 MiB file to another (buffered; then
 * O_DIRECT with a 2-entry ring, depth 3 and an odd chunk size) and the
 * copies compare equal; a new empty file grows into a copy (can-grow, as
 * with libblkio 1.5); a destination that cannot grow (/dev/null is not a
 * block device or regular file: refused at connect) fails.  blkio-info
 * reports the right capacity and the properties it was given, and fails
 * for unknown properties and drivers.  Under valgrind the examples run
 * under valgrind too.
 *
 *   test-examples BLKIO-INFO BLKIO-COPY
 */
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../lib/util.h"     /* also RUNNING_ON_VALGRIND */

#define SIZE (8u << 20)

extern char **environ;

/* Run argv (NULL-terminated), stdout to out_path if not NULL; returns the
 * exit status. */
static int run(char **argv, const char *out_path)
{
    char *vg[32];
    char **av = argv;
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status, n = 0;

    if (RUNNING_ON_VALGRIND) {
        vg[n++] = "valgrind";
        vg[n++] = "-q";
        vg[n++] = "--error-exitcode=99";
        vg[n++] = "--leak-check=full";
        for (int i = 0; argv[i] && n < 31; i++)
            vg[n++] = argv[i];
        vg[n] = NULL;
        av = vg;
    }
    for (int i = 0; av[i]; i++)
        printf("%s%s", i ? " " : "+ ", av[i]);
    printf("\n");
    fflush(stdout);
    posix_spawn_file_actions_init(&fa);
    if (out_path)
        posix_spawn_file_actions_addopen(&fa, 1, out_path,
                                         O_WRONLY | O_CREAT | O_TRUNC, 0600);
    check(posix_spawnp(&pid, av[0], &fa, NULL, av, environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    check(waitpid(pid, &status, 0) == pid);
    check(WIFEXITED(status));
    check(WEXITSTATUS(status) != 99);      /* valgrind found errors */
    return WEXITSTATUS(status);
}

static void same(const char *a, const char *b, size_t len)
{
    unsigned char *x = malloc(len), *y = malloc(len);

    ut_pread_file(a, x, len, 0);
    ut_pread_file(b, y, len, 0);
    check(memcmp(x, y, len) == 0);
    free(x);
    free(y);
}

static bool has_line(const char *path, const char *line)
{
    char buf[4096];
    FILE *f = fopen(path, "r");
    bool found = false;

    check(f != NULL);
    while (!found && fgets(buf, sizeof(buf), f)) {
        buf[strcspn(buf, "\n")] = '\0';
        found = strcmp(buf, line) == 0;
    }
    fclose(f);
    return found;
}

int main(int argc, char **argv)
{
    const char *src, *dst, *empty, *out;
    char *info, *copy, s1[512], s2[512], s3[512];
    unsigned char *data = malloc(SIZE);

    check(argc == 3);
    info = argv[1];
    copy = argv[2];
    src = ut_temp_file(SIZE);
    dst = ut_temp_file(SIZE);
    empty = ut_temp_file(0);
    out = ut_temp_file(0);
    t_fill_random(data, SIZE, (uint64_t)time(NULL));
    ut_pwrite_file(src, data, SIZE, 0);

    snprintf(s1, sizeof(s1), "io_uring:path=%s", src);
    snprintf(s2, sizeof(s2), "io_uring:path=%s", dst);
    check(run((char *[]){ copy, s1, s2, NULL }, NULL) == 0);
    same(src, dst, SIZE);

    check(truncate(dst, 0) == 0 && truncate(dst, SIZE + (1u << 20)) == 0);
    snprintf(s1, sizeof(s1), "io_uring:path=%s,direct=true,read-only=true",
             src);
    snprintf(s2, sizeof(s2), "io_uring:path=%s,direct=true,num-entries=2",
             dst);
    if (run((char *[]){ copy, "-d", "3", "-s", "12288", s1, s2, NULL },
            NULL) != 0) {
        printf("note: O_DIRECT copy failed (no O_DIRECT here?), "
               "retrying buffered\n");
        snprintf(s1, sizeof(s1), "io_uring:path=%s", src);
        snprintf(s2, sizeof(s2), "io_uring:path=%s,num-entries=2", dst);
        check(run((char *[]){ copy, "-d", "3", "-s", "12288", s1, s2, NULL },
                  NULL) == 0);
    }
    same(src, dst, SIZE);

    snprintf(s1, sizeof(s1), "io_uring:path=%s", src);
    snprintf(s2, sizeof(s2), "io_uring:path=%s", empty);
    check(run((char *[]){ copy, s1, s2, NULL }, NULL) == 0);
    same(src, empty, SIZE);
    {
        struct stat st;

        check(stat(empty, &st) == 0 && st.st_size == SIZE);
    }
    check(run((char *[]){ copy, s1, "io_uring:path=/dev/null", NULL },
              NULL) != 0);

    snprintf(s1, sizeof(s1), "path=%s", src);
    check(run((char *[]){ info, "io_uring", s1, "num-entries=64",
                          "read-only=true", NULL }, out) == 0);
    check(has_line(out, "capacity: 8388608"));
    check(has_line(out, "num-entries: 64"));
    check(has_line(out, "read-only: true"));
    check(has_line(out, "driver: io_uring"));
    check(has_line(out, "request-alignment: 1"));
    snprintf(s3, sizeof(s3), "path: %s", src);
    check(has_line(out, s3));
    check(run((char *[]){ info, "io_uring", s1, "no-such-property=1", NULL },
              NULL) != 0);
    check(run((char *[]){ info, "no-such-driver", NULL }, NULL) != 0);
    free(data);
    return 0;
}
