/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: blkio_create() and blkio_destroy() argument rules, unknown
 * drivers, and what every driver offers right after creation (driver name,
 * can-add-queues, read-only, path) before anything is connected.
 */
#include "core-util.h"

static void check_created_instance(const char *driver)
{
    struct blkio *b = NULL;
    bool v;
    char *s = NULL;
    int ret;

    ret = blkio_create(driver, &b);
    if (ret == -ENOSYS) {
        printf("note: driver %s not available: %s\n", driver,
               blkio_get_error_msg());
        CHECK(b == NULL);
        return;
    }
    CHECK_RET(ret, 0);
    CHECK(b != NULL);

    CHECK_RET(blkio_get_str(b, "driver", &s), 0);
    CHECK(strcmp(s, driver) == 0);
    free(s);

    CHECK_RET(blkio_get_bool(b, "can-add-queues", &v), 0);
    CHECK_RET(blkio_get_bool(b, "read-only", &v), 0);
    CHECK(v == false);
    CHECK_RET(blkio_set_bool(b, "read-only", true), 0);
    CHECK_RET(blkio_get_bool(b, "read-only", &v), 0);
    CHECK(v == true);

    /* Every driver has a path property, writable before connect. */
    CHECK_RET(blkio_set_str(b, "path", "/nonexistent/blkio-test"), 0);
    CHECK_RET(blkio_get_str(b, "path", &s), 0);
    CHECK(strcmp(s, "/nonexistent/blkio-test") == 0);
    free(s);

    /* Connecting to something that does not exist fails and leaves the
     * instance in the created state. */
    ret = blkio_connect(b);
    CHECK(ret < 0);
    CHECK(blkio_get_error_msg()[0] != '\0');
    CHECK_RET(blkio_set_bool(b, "read-only", false), 0);

    blkio_destroy(&b);
    CHECK(b == NULL);
}

int main(void)
{
    struct blkio *b = (struct blkio *)(uintptr_t)1;

    /* Unknown driver: -ENOENT, *bp cleared, message names it. */
    CHECK_RET(blkio_create("no-such-driver", &b), -ENOENT);
    CHECK(b == NULL);
    CHECK_MSG("no-such-driver");

    CHECK_RET(blkio_create("", &b), -ENOENT);
    CHECK(b == NULL);
    /* Driver names are exact. */
    CHECK_RET(blkio_create("IO_URING", &b), -ENOENT);
    CHECK_RET(blkio_create("io_uring ", &b), -ENOENT);

    CHECK(blkio_create(NULL, &b) < 0);
    CHECK(b == NULL);
    CHECK(blkio_create("io_uring", NULL) < 0);

    /* Destroying nothing is harmless. */
    blkio_destroy(NULL);
    b = NULL;
    blkio_destroy(&b);

    check_created_instance("io_uring");
    check_created_instance("nvme-io_uring");
    check_created_instance("virtio-blk-vhost-user");

    /* The io_uring driver is the one every core test needs. */
    b = cu_create("io_uring");
    blkio_destroy(&b);
    return T_EXIT_PASS;
}
