/* Native ingest multiplexer: one thread owns the node's ingest ROUTER socket, decodes score
 * requests, scores them on the engine, replies, and hands risky decisions to the Python
 * control plane as fixed-layout records over an inproc socket. No Python runs per request.
 *
 * Threading and the engine handover
 * ---------------------------------
 * - Python creates, configures and binds the ROUTER and the alert socket, then passes
 *   their handles (pyzmq Socket.underlying) to gw_ingest_new. From gw_ingest_start until
 *   gw_ingest_stop returns, the ingest thread alone uses both sockets.
 * - While the thread runs it is the engine's only scorer (account state is single-writer).
 *   gw_ingest_pause(ing, timeout) asks it to stop scoring and returns once the thread has
 *   acknowledged that it is outside the engine; until gw_ingest_resume the caller may score
 *   on the engine itself. A paused thread keeps serving the socket: score requests get a
 *   busy reply (retry-after = busy_paused_ms), pings get a pong.
 * - Counters are private to the thread and published under a mutex after every burst;
 *   gw_ingest_stats copies the last published snapshot (any thread).
 *
 * Backpressure: a request is refused with busy (nothing applied) when the alert queue
 * cannot take all its possible alerts (queue of `alert_queue` records, flushed to the
 * alert socket whenever it accepts; the socket's HWM is the second stage), while paused,
 * or (max_backlog_ms > 0) while the thread has been saturated, a full burst queued at every
 * wake-up, for longer than max_backlog_ms: queued requests are then shed with busy until
 * the queue drains. The ROUTER's RCVHWM bounds what can queue at all. Replies are sent DONTWAIT: a peer at its HWM or gone is counted
 * (send_refused / unroutable), never waited for.
 *
 * Alert record layout (struct gw_alert_record, 496 bytes, host byte order, no padding
 * holes): one inproc message carries 1..256 whole records back to back; see the struct.
 * Bytes 0..431 are the decision; bytes 432..495 (appended) are the account's profile
 * (gw_engine_profile), read on this thread right after the request's transactions were
 * scored, with the velocity windows taken at the record's ts_ms; `has_profile` is 0 and
 * the profile fields are 0 when the account had no state.
 */
#ifndef GW_INGEST_H
#define GW_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "gw_core.h"
#include "gw_scoring.h"

#define GW_INGEST_MAX_BATCH 1024
#define GW_INGEST_MAX_FRAME (1u << 20)
#define GW_INGEST_LAT_BUCKETS 512
#define GW_INGEST_NCODES 16
#define GW_ALERT_FIRED 48
#define GW_ALERTS_PER_MSG 256

/* Wire error codes (gateway/errors.py ErrorCode). */
enum gw_wire_error {
    GW_WE_MALFORMED = 1, GW_WE_UNKNOWN_TYPE = 2, GW_WE_UNSUPPORTED_VERSION = 3,
    GW_WE_EMPTY_MESSAGE = 4, GW_WE_TOO_MANY_FRAMES = 5, GW_WE_TOO_LARGE = 6,
    GW_WE_WRONG_ENDPOINT = 7, GW_WE_INVALID = 8, GW_WE_INTERNAL = 12
};

enum gw_req_kind { GW_REQ_NONE = 0, GW_REQ_PING = 1, GW_REQ_SCORE = 2 };

struct gw_ingest_config {
    void *router;              /* ZeroMQ ROUTER handle, configured and bound by Python */
    void *alerts;              /* inproc PUSH/PAIR handle for alert records, or NULL */
    struct gw_engine *engine;
    const char *node_name;     /* copied */
    const char *region;        /* copied */
    const char *frozen_rule_id; /* fired id of a frozen account's decision; copied */
    int64_t alert_min_score;   /* also alert `allow` at or above this score; 0 = off */
    uint32_t alert_queue;      /* records buffered before busy; >= 2 * max batch */
    uint32_t busy_alerts_ms;   /* retry-after when the alert queue is full */
    uint32_t busy_paused_ms;   /* retry-after while paused for a handover */
    uint32_t burst;            /* messages handled per wake-up before counters publish */
    uint32_t max_backlog_ms;   /* busy (overload) once the thread has found a full burst
                                * queued at every wake-up for this long; 0 = never */
    uint32_t busy_overload_ms; /* retry-after of those replies */
};

/* One decision that needs people. 496 bytes (static_assert in gw_ingest.c). */
struct gw_alert_record {
    uint64_t rid;              /* request id of the score request */
    uint64_t account;
    uint64_t counterparty;
    int64_t amount;
    int64_t ts_ms;
    int64_t score;
    int64_t decided_unix_ns;   /* node wall clock when the decision was made */
    uint32_t version;          /* rule-set version */
    uint32_t currency;         /* 3 ASCII letters packed little-endian */
    uint16_t country;          /* 2 ASCII letters packed little-endian, 0 = none */
    uint16_t mcc;
    uint8_t channel;           /* 1..6 */
    uint8_t outcome;           /* enum gw_outcome */
    uint8_t method;            /* 0 or 1..4 */
    uint8_t path;              /* enum gw_path */
    uint8_t flags;             /* GW_DEC_* */
    uint8_t pad;
    uint16_t tx_id_len;        /* bytes in tx_id */
    uint16_t n_fired;          /* entries valid in fired[] (<= GW_ALERT_FIRED) */
    uint16_t n_fired_total;
    uint16_t fired[GW_ALERT_FIRED];
    char tx_id[256];           /* UTF-8 (<= 64 chars), not NUL-terminated */
    /* the account's profile (struct gw_profile) after the request was scored */
    int64_t vel_1m_count;      /* offset 432 */
    int64_t vel_1m_sum;
    int64_t vel_1h_count;
    int64_t vel_1h_sum;
    int64_t vel_24h_count;
    int64_t vel_24h_sum;
    int64_t baseline;
    uint32_t tx_count;
    uint8_t known_devices;
    uint8_t has_profile;       /* 1: the profile fields are set; 0: the account had no state */
    uint8_t pad2[2];
};

struct gw_ingest_stats {
    uint64_t messages;         /* messages received on the ROUTER */
    uint64_t score_requests;   /* served with a `scored` reply */
    uint64_t pings;
    uint64_t decisions;
    uint64_t outcome[4];
    uint64_t path[2];
    uint64_t errors[GW_INGEST_NCODES]; /* error replies by wire code */
    uint64_t busy;             /* busy replies (all causes) */
    uint64_t busy_alerts;
    uint64_t busy_paused;
    uint64_t busy_overload;
    uint64_t unroutable;       /* reply to a peer that has gone */
    uint64_t send_refused;     /* reply refused at the peer's HWM */
    uint64_t alerts;           /* alert records produced */
    uint64_t alert_msgs;       /* inproc messages sent */
    uint64_t alerts_unsent;    /* records produced with no alert socket configured */
    uint64_t alert_queue;      /* gauge: records waiting for the alert socket */
    uint64_t alert_queue_max;
    uint64_t last_burst;       /* gauge: messages handled in the last wake-up */
    uint64_t max_burst;
    uint64_t wakeups;
    uint64_t running;          /* gauge */
    uint64_t paused;           /* gauge */
    uint64_t engine_errors;    /* gw_engine_score_batch failed: INTERNAL replies */
    uint64_t lat_count;        /* service time, receive to reply sent, per request */
    uint64_t lat_sum_ns;
    uint64_t lat_max_ns;
    uint64_t lat_buckets[GW_INGEST_LAT_BUCKETS];
};

struct gw_ingest;

int gw_ingest_new(const struct gw_ingest_config *cfg, struct gw_ingest **out);
void gw_ingest_free(struct gw_ingest *ing); /* stops the thread first */
/* Rule ids of a rule-set version: n ids, id i is blob[offsets[i] .. offsets[i+1]). */
int gw_ingest_set_rule_ids(struct gw_ingest *ing, uint32_t version, const char *blob,
                           const uint32_t *offsets, uint32_t n);
int gw_ingest_start(struct gw_ingest *ing);
int gw_ingest_stop(struct gw_ingest *ing);
int gw_ingest_pause(struct gw_ingest *ing, int timeout_ms);
int gw_ingest_resume(struct gw_ingest *ing);
int gw_ingest_stats(struct gw_ingest *ing, struct gw_ingest_stats *out);
/* Like gw_ingest_stats, but waits (up to timeout_ms) for a snapshot taken after the
 * call: everything replied before the call is counted. GW_ERR_STATE on timeout. */
int gw_ingest_stats_fresh(struct gw_ingest *ing, struct gw_ingest_stats *out,
                          int timeout_ms);

/* Decode one request body as the ingest thread does (for tests and fuzzing). Returns 0
 * (kind, rid, n_txs set) or a wire error code > 0 (rid set for the error reply). */
int gw_ingest_decode(const uint8_t *body, size_t len, int *kind, uint64_t *rid,
                     uint32_t *n_txs, struct gw_tx *txs, uint32_t cap);
/* Process one request body exactly as the thread does, scoring on `engine` (caller owns
 * it), writing the reply body into out[0..cap). Returns the reply length, or -1 if cap is
 * too small. For tests without sockets. */
long gw_ingest_process_one(struct gw_ingest *ing, const uint8_t *body, size_t len,
                           uint8_t *out, size_t cap);

/* Latency histogram buckets (shared with the load generator): 8 per power of two. */
static inline uint32_t gw_lat_bucket(uint64_t v) {
    if (v < 16) return (uint32_t)v;
    uint32_t e = 63u - (uint32_t)__builtin_clzll(v);
    uint32_t idx = (e - 2) * 8 + (uint32_t)((v >> (e - 3)) & 7);
    return idx < GW_INGEST_LAT_BUCKETS ? idx : GW_INGEST_LAT_BUCKETS - 1;
}
uint64_t gw_lat_bucket_upper(uint32_t idx);

/* -- regional fabric ---------------------------------------------------------------------
 * With a directory attached (gw_ingest_attach_fabric, before gw_ingest_start), the thread
 * looks up the home region of every transaction of a score request. A request whose
 * accounts are all homed here is served as above. Otherwise nothing is scored yet: the
 * request goes to the control plane over the attached inproc PAIR socket, which forwards
 * the foreign transactions to their home nodes and answers with one of the messages below;
 * the local transactions are scored only when the forwarded ones have their decisions, so
 * a request refused on the way (busy, error) has applied nothing here. A request with an
 * account that has no home region is refused with INVALID.
 *
 * Frames on the PAIR (kind frame first, one byte; counts are u32 in host byte order):
 *   thread -> Python  F ident body homes(n x u8 region index) reserved(u32)
 *                     S token reply                       (answer to an S request)
 *   Python -> thread  R ident reply reserved              (send `reply` to the producer)
 *                     C ident body decisions lens reserved (complete: score the local
 *                        transactions, merge the forwarded decisions, encoded msgpack
 *                        Decision arrays back to back, lens[k] bytes each, in request
 *                        order of the foreign transactions, and reply)
 *                     S token body                        (score a request forwarded by a
 *                        peer node, as local, and answer with S token reply)
 * `reserved` is the alert-queue room the thread set aside at hand-off for the local
 * transactions (released by the R or C answer). While paused the thread does not read the
 * PAIR (messages wait there). */

struct gw_dir;

struct gw_ingest_fabric_stats {
    uint64_t handed_off;       /* score requests sent to the control plane for forwarding */
    uint64_t handed_off_txs;   /* their transactions homed elsewhere */
    uint64_t busy_handoff;     /* busy replies: the PAIR to the control plane was full */
    uint64_t no_home;          /* requests refused: an account without a home region */
    uint64_t completed;        /* forwarded requests completed here (C) */
    uint64_t completed_local;  /* local transactions scored on completion */
    uint64_t relayed;          /* control-plane replies relayed to producers (R) */
    uint64_t peer_requests;    /* requests from peer nodes scored here (S) */
    uint64_t bad_messages;     /* malformed PAIR messages (a control-plane bug): dropped */
    uint64_t reply_refused;    /* S answers refused at the PAIR's high-water mark */
    uint64_t reserved;         /* gauge: alert-queue records reserved for hand-offs */
};

/* Attach a directory (kept alive by the caller while the ingest exists), the index of this
 * node's region in it and the PAIR socket to the control plane. GW_ERR_STATE if running. */
int gw_ingest_attach_fabric(struct gw_ingest *ing, const struct gw_dir *dir,
                            int local_region, void *pair);
int gw_ingest_fabric_stats(struct gw_ingest *ing, struct gw_ingest_fabric_stats *out);

#endif
