/* Native load generator for the ingest endpoint: DEALER sockets on its own ZeroMQ context,
 * pipelined score requests (a window per connection), paced at a fixed rate or unpaced,
 * round-trip latency into the same log histogram as the ingest counters.
 *
 * The caller supplies pre-encoded msgpack transactions (each a 12-element array); request
 * i carries `batch` consecutive ones (cycling) and rid = conn << 48 | sequence. Runs in
 * the calling thread plus libzmq's I/O thread; call it with the GIL released (cffi does).
 */
#ifndef GW_LOADGEN_H
#define GW_LOADGEN_H

#include <stddef.h>
#include <stdint.h>

#include "gw_core.h"

#define GW_LOADGEN_MAX_CONNS 64
#define GW_LOADGEN_LAT_BUCKETS 512

struct gw_loadgen_config {
    const char *url;
    const uint8_t *txs;        /* n_txs encoded transactions, back to back */
    const uint32_t *tx_offsets; /* n_txs + 1 offsets into txs */
    uint32_t n_txs;
    uint32_t batch;            /* transactions per request, 1..1024 */
    uint32_t connections;      /* DEALER sockets, 1..GW_LOADGEN_MAX_CONNS */
    uint32_t window;           /* requests in flight per connection, 1..65536 */
    uint64_t requests;         /* total requests to send */
    double rate;               /* requests per second over all connections; 0 = unpaced */
    uint32_t timeout_ms;       /* cap on the whole run (replies still missing then count) */
    uint32_t warmup;           /* first replies not recorded in the histogram */
    uint64_t cycle_advance_ms; /* added to ts_ms on each replay of the pool (a tx's
                                * last field, when encoded as uint64 0xcf) */
    uint64_t ts_offset_ms;     /* added to every ts_ms (continues an earlier run) */
};

struct gw_loadgen_result {
    uint64_t sent;
    uint64_t replies;
    uint64_t scored;           /* `scored` replies */
    uint64_t decisions;        /* decisions in them */
    uint64_t busy;
    uint64_t errors;           /* `error` replies */
    uint64_t other;            /* pong or undecodable */
    uint64_t missing;          /* sent but unanswered when the run ended */
    uint64_t elapsed_ns;       /* first send to last reply */
    uint64_t lat_count;
    uint64_t lat_sum_ns;
    uint64_t lat_max_ns;
    uint64_t lat_buckets[GW_LOADGEN_LAT_BUCKETS];
};

int gw_loadgen_run(const struct gw_loadgen_config *cfg, struct gw_loadgen_result *out);

#endif
