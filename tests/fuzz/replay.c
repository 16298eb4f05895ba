/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * replay.c - runs a fuzz target over files, without libFuzzer: the
 * normal (gcc, ASan, valgrind) builds use it to run the seed corpus and
 * every crash found so far as regression tests.
 *
 *   fuzz-TARGET FILE|DIR...
 *
 * Each file is one input; a directory stands for the files in it.  A
 * crash is the target's own (abort, sanitizer report); exit 0 otherwise.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz-input.h"

static unsigned replay_count;

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, r;

    if (!f) {
        perror(path);
        return -1;
    }
    do {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
            if (!buf) {
                fclose(f);
                return -1;
            }
        }
        r = fread(buf + len, 1, cap - len, f);
        len += r;
    } while (r > 0);
    fclose(f);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    replay_count++;
    return 0;
}

static int replay_path(const char *path)
{
    struct stat st;
    struct dirent **names;
    int n, ret = 0;

    if (stat(path, &st) < 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path);
    n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        perror(path);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char full[4096];

        if (names[i]->d_name[0] != '.') {
            snprintf(full, sizeof(full), "%s/%s", path, names[i]->d_name);
            if (replay_path(full) < 0)
                ret = -1;
        }
        free(names[i]);
    }
    free(names);
    return ret;
}

int main(int argc, char **argv)
{
    int ret = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++)
        if (replay_path(argv[i]) < 0)
            ret = 1;
    if (replay_count == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    printf("replay: %u inputs, no crash\n", replay_count);
    return ret;
}
