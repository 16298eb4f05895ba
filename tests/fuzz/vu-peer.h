/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * vu-peer.h - a vhost-user-blk backend played by the fuzzer.
 *
 * It speaks the protocol well enough to get a libblkio instance through
 * connect and start, maps the memory the front-end sends with
 * SET_MEM_TABLE/ADD_MEM_REG, reads requests from the available ring and
 * completes them through the used ring.  Every reply, config byte, used
 * entry and status byte can be bent by the fuzzer input: 0 bytes keep the
 * peer correct.  What the front-end writes into shared memory is checked
 * (descriptor chains inside the mapped memory, a header and a status
 * byte): a library bug there aborts.
 */
#ifndef TESTS_FUZZ_VU_PEER_H
#define TESTS_FUZZ_VU_PEER_H

#include <stdbool.h>
#include <pthread.h>

#include "fuzz-input.h"

struct vu_peer_opts {
    bool bend_control;          /* fuzz control-plane replies */
    bool bend_config;           /* fuzz the virtio-blk config space */
    bool bend_rings;            /* fuzz used-ring completions */
};

struct vu_peer;

/* Listen on a fresh socket in a private temporary directory. */
int vu_peer_listen(void);
const char *vu_peer_path(void);

/* Start a peer thread that accepts one connection and plays the backend
 * with the input in `in` (copied; the bytes must outlive the peer). */
struct vu_peer *vu_peer_start(const struct fz *in,
                              const struct vu_peer_opts *opts);
/* Tell the peer to finish, wait for it and free it. */
void vu_peer_stop(struct vu_peer *p);

#endif /* TESTS_FUZZ_VU_PEER_H */
