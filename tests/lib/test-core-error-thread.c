/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the error message is per thread.  A failure in one thread is
 * not visible in another, and a thread that never failed sees "".
 */
#include <pthread.h>

#include "core-util.h"

static pthread_barrier_t barrier;
static char thread_saw_first[1024];
static char thread_saw_own[1024];

static void *thread_main(void *arg)
{
    struct blkio *b = NULL;

    (void)arg;
    /* The main thread has failed already; this thread has not. */
    pthread_barrier_wait(&barrier);
    snprintf(thread_saw_first, sizeof(thread_saw_first), "%s",
             blkio_get_error_msg());

    if (blkio_create("driver-from-thread", &b) != -ENOENT)
        return (void *)1;
    snprintf(thread_saw_own, sizeof(thread_saw_own), "%s",
             blkio_get_error_msg());
    /* Let the main thread check its message while ours is set. */
    pthread_barrier_wait(&barrier);
    pthread_barrier_wait(&barrier);
    return NULL;
}

int main(void)
{
    struct blkio *b = NULL;
    pthread_t th;
    void *res;

    CHECK(blkio_get_error_msg() != NULL);
    CHECK(strcmp(blkio_get_error_msg(), "") == 0);

    CHECK_RET(pthread_barrier_init(&barrier, NULL, 2), 0);
    CHECK_RET(pthread_create(&th, NULL, thread_main, NULL), 0);

    CHECK_RET(blkio_create("driver-from-main", &b), -ENOENT);
    CHECK_MSG("driver-from-main");
    pthread_barrier_wait(&barrier);

    /* The thread has set its own message now. */
    pthread_barrier_wait(&barrier);
    CHECK_MSG("driver-from-main");
    CHECK(strstr(blkio_get_error_msg(), "driver-from-thread") == NULL);
    pthread_barrier_wait(&barrier);

    CHECK_RET(pthread_join(th, &res), 0);
    CHECK(res == NULL);
    if (strcmp(thread_saw_first, "") != 0)
        T_FAIL("new thread saw \"%s\" instead of \"\"", thread_saw_first);
    if (!strstr(thread_saw_own, "driver-from-thread"))
        T_FAIL("thread's own message is \"%s\"", thread_saw_own);
    if (strstr(thread_saw_own, "driver-from-main"))
        T_FAIL("thread's message mentions the main thread's failure: %s",
               thread_saw_own);

    /* Still the main thread's message after the thread is gone. */
    CHECK_MSG("driver-from-main");
    pthread_barrier_destroy(&barrier);
    return T_EXIT_PASS;
}
