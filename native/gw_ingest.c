/* Native ingest multiplexer: see gw_ingest.h for the contract. */
#include "gw_ingest.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "gw_dir.h"
#include "gw_ingest_internal.h"
#include "gw_msgpack.h"
#include "gw_zmq.h"

static_assert(sizeof(struct gw_alert_record) == 496, "alert record layout");
static_assert(offsetof(struct gw_alert_record, vel_1m_count) == 432, "alert record layout");
static_assert(offsetof(struct gw_alert_record, pad2) == 494, "alert record layout");

#define MAX_RULE_TABLES 16

struct rule_table {
    uint32_t version;
    uint32_t n;
    uint32_t *offsets; /* n + 1 */
    char *blob;
};

struct gw_ingest {
    struct gw_ingest_config cfg;
    char node_name[65];
    char region[33];
    char frozen_id[65];
    const struct gw_zmq_api *z;
    int wake_fd;
    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_int pause_req;
    pthread_mutex_t lock; /* guards published stats, paused_ack */
    pthread_cond_t cond;
    int paused_ack;
    uint64_t pub_seq;        /* checkpoints so far (under lock) */
    struct gw_ingest_stats pub;
    /* thread-private */
    struct gw_ingest_stats st;
    struct gw_tx *txs;
    const char **tx_ids;
    uint16_t *tx_id_lens;
    struct gw_decision *dec;
    struct gw_mp_writer out;
    struct gw_alert_record *ring;
    uint32_t ring_cap, ring_head, ring_len;
    uint64_t saturated_since; /* mono ns of the first full burst of the current streak */
    int overloaded;           /* saturated for longer than max_backlog_ms */
    /* rule ids by version: tables are immutable once published, freed only at free() */
    pthread_mutex_t tables_lock;
    _Atomic(struct rule_table *) tables[MAX_RULE_TABLES];
    struct rule_table *retired[256];
    uint32_t n_retired;
    uint32_t next_table;
    char detail[160];
    /* regional fabric (gw_ingest_attach_fabric; block at the end of this file) */
    const struct gw_dir *dir;
    int local_region;
    void *fabric;            /* PAIR to the control plane, or NULL: no forwarding */
    uint8_t *homes;          /* home region per transaction of the current request */
    struct gw_tx *ltx;       /* local transactions of a completed forwarded request */
    struct gw_decision *ldec;
    uint32_t *lidx;
    uint32_t ring_reserved;  /* alert records set aside for handed-off requests */
    int no_forward;          /* serving a peer's request: everything is scored here */
    int handed;              /* process() handed the request off: no reply now */
    gwz_msg_t *cur_ident;    /* identity of the request process() is serving */
    struct gw_ingest_fabric_stats fst, fpub;
};

/* -- time ------------------------------------------------------------------------------ */

static inline uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t gw_lat_bucket_upper(uint32_t idx) {
    if (idx < 16) return idx + 1;
    uint32_t e = idx / 8 + 2, sub = idx % 8;
    if (e > 62) return UINT64_MAX;
    return (uint64_t)(9 + sub) << (e - 3);
}

/* -- replies ----------------------------------------------------------------------------- */

static const char *const ERROR_NAMES[GW_INGEST_NCODES] = {
    "", "MALFORMED", "UNKNOWN_TYPE", "UNSUPPORTED_VERSION", "EMPTY_MESSAGE",
    "TOO_MANY_FRAMES", "TOO_LARGE", "WRONG_ENDPOINT", "INVALID", "UNAUTHORIZED",
    "RULES_INVALID", "NOT_FOUND", "INTERNAL", "", "", ""};
static const char *const ERROR_TEXT[GW_INGEST_NCODES] = {
    "", "score: a field has the wrong type or is out of range",
    "unknown message type", "protocol version is not supported (this node speaks 1)",
    "message has no body", "more body frames than accepted (at most 1)",
    "batch of more than 1024 transactions, or frame over 1 MiB",
    "message type is not served on the ingest endpoint",
    "score request with no transaction", "", "", "",
    "the node failed to score the request; nothing was applied", "", "", ""};

static void put_lit(struct gw_mp_writer *w, const char *s) { gw_mp_put_str(w, s, strlen(s)); }

/* A short string known at compile time: header byte and bytes in one copy. */
struct lit { uint8_t len; char s[23]; };
#define LIT(x) {sizeof(x) - 1, x}
static const struct lit OUTCOME_LIT[4] = {LIT("allow"), LIT("step_up"), LIT("block"),
                                          LIT("block_and_freeze")};
static const struct lit METHOD_LIT[5] = {LIT(""), LIT("face"), LIT("sms_down"), LIT("sms_up"),
                                         LIT("old_device_confirm")};
static const struct lit PATH_LIT[2] = {LIT("full"), LIT("trusted")};

static inline void put_short(struct gw_mp_writer *w, const struct lit *l) {
    if (gw_mp_reserve(w, 24)) return;
    uint8_t *p = w->buf + w->len;
    p[0] = (uint8_t)(0xa0 | l->len);
    memcpy(p + 1, l->s, l->len);
    w->len += 1u + l->len;
}

static void reply_error(struct gw_mp_writer *w, uint64_t rid, int code, const char *detail) {
    gw_mp_put_array(w, 6);
    put_lit(w, "error");
    gw_mp_put_uint(w, 1);
    gw_mp_put_uint(w, rid);
    gw_mp_put_uint(w, (uint64_t)code);
    put_lit(w, ERROR_NAMES[code & 15]);
    put_lit(w, detail ? detail : ERROR_TEXT[code & 15]);
}

static void reply_busy(struct gw_mp_writer *w, uint64_t rid, uint32_t ms) {
    gw_mp_put_array(w, 4);
    put_lit(w, "busy");
    gw_mp_put_uint(w, 1);
    gw_mp_put_uint(w, rid);
    gw_mp_put_uint(w, ms);
}

static void reply_pong(struct gw_ingest *ing, struct gw_mp_writer *w, uint64_t rid) {
    gw_mp_put_array(w, 6);
    put_lit(w, "pong");
    gw_mp_put_uint(w, 1);
    gw_mp_put_uint(w, rid);
    put_lit(w, ing->node_name);
    put_lit(w, ing->region);
    gw_mp_put_int(w, wall_ns() / 1000000);
}

static const struct rule_table *find_table(struct gw_ingest *ing, uint32_t version) {
    for (int i = 0; i < MAX_RULE_TABLES; i++) {
        struct rule_table *t = atomic_load_explicit(&ing->tables[i], memory_order_acquire);
        if (t && t->version == version) return t;
    }
    return NULL;
}

/* Decision i of the current request; `tab` caches the rule table of its version. */
static void put_decision(struct gw_ingest *ing, struct gw_mp_writer *w, uint32_t i,
                         const struct rule_table **tab, uint32_t *tab_version) {
    const struct gw_decision *d = &ing->dec[i];
    gw_mp_put_array(w, 7);
    gw_mp_put_str(w, ing->tx_ids[i], ing->tx_id_lens[i]);
    put_short(w, &OUTCOME_LIT[d->outcome & 3]);
    if (d->method >= 1 && d->method <= 4) put_short(w, &METHOD_LIT[d->method]);
    else gw_mp_put_nil(w);
    gw_mp_put_int(w, d->score);
    put_short(w, &PATH_LIT[d->path & 1]);
    if (!*tab || *tab_version != d->version) {
        *tab = find_table(ing, d->version);
        *tab_version = d->version;
    }
    if (d->flags & GW_DEC_FROZEN) { /* no rule ran: the decision names the freeze */
        gw_mp_put_array(w, 1);
        put_lit(w, ing->frozen_id);
        gw_mp_put_uint(w, d->version);
        return;
    }
    uint32_t nf = d->n_fired > GW_MAX_FIRED ? GW_MAX_FIRED : d->n_fired;
    gw_mp_put_array(w, nf);
    for (uint32_t k = 0; k < nf; k++) {
        uint32_t idx = d->fired[k];
        if (*tab && idx < (*tab)->n) {
            gw_mp_put_str(w, (*tab)->blob + (*tab)->offsets[idx],
                          (*tab)->offsets[idx + 1] - (*tab)->offsets[idx]);
        } else { /* rule ids not registered for this version: "#<index>" */
            char tmp[16];
            int m = snprintf(tmp, sizeof tmp, "#%u", idx);
            gw_mp_put_str(w, tmp, (size_t)m);
        }
    }
    gw_mp_put_uint(w, d->version);
}

/* The head of a `scored` reply: [tag, version, rid, [n decisions follow]]. */
static void put_scored_head(struct gw_mp_writer *w, uint64_t rid, uint32_t n) {
    gw_mp_put_array(w, 4);
    put_lit(w, "scored");
    gw_mp_put_uint(w, 1);
    gw_mp_put_uint(w, rid);
    gw_mp_put_array(w, n);
}

static void put_decisions(struct gw_ingest *ing, struct gw_mp_writer *w, uint64_t rid,
                          uint32_t n) {
    put_scored_head(w, rid, n);
    const struct rule_table *tab = NULL;
    uint32_t tab_version = 0;
    for (uint32_t i = 0; i < n; i++) put_decision(ing, w, i, &tab, &tab_version);
}

/* -- alert queue ------------------------------------------------------------------------- */

static inline uint32_t ring_free(const struct gw_ingest *ing) {
    return ing->ring_cap - ing->ring_len - ing->ring_reserved;
}

static void push_alert(struct gw_ingest *ing, uint64_t rid, uint32_t i, int64_t now) {
    const struct gw_tx *tx = &ing->txs[i];
    const struct gw_decision *d = &ing->dec[i];
    uint32_t slot = (ing->ring_head + ing->ring_len) % ing->ring_cap;
    struct gw_alert_record *a = &ing->ring[slot];
    memset(a, 0, sizeof *a);
    a->rid = rid;
    a->account = tx->account;
    a->counterparty = tx->counterparty;
    a->amount = tx->amount;
    a->ts_ms = tx->ts_ms;
    a->score = d->score;
    a->decided_unix_ns = now;
    a->version = d->version;
    a->currency = tx->currency;
    a->country = tx->country;
    a->mcc = tx->mcc;
    a->channel = tx->channel;
    a->outcome = d->outcome;
    a->method = d->method;
    a->path = d->path;
    a->flags = d->flags;
    a->tx_id_len = ing->tx_id_lens[i] > sizeof a->tx_id ? sizeof a->tx_id : ing->tx_id_lens[i];
    memcpy(a->tx_id, ing->tx_ids[i], a->tx_id_len);
    uint32_t nf = d->n_fired > GW_ALERT_FIRED ? GW_ALERT_FIRED : d->n_fired;
    a->n_fired = (uint16_t)nf;
    a->n_fired_total = d->n_fired_total;
    memcpy(a->fired, d->fired, nf * sizeof a->fired[0]);
    /* we are the engine's scorer, so reading the account's state here is allowed */
    struct gw_profile p;
    if (gw_engine_profile(ing->cfg.engine, tx->account, tx->ts_ms, &p) == GW_OK) {
        a->vel_1m_count = p.vel_1m_count;
        a->vel_1m_sum = p.vel_1m_sum;
        a->vel_1h_count = p.vel_1h_count;
        a->vel_1h_sum = p.vel_1h_sum;
        a->vel_24h_count = p.vel_24h_count;
        a->vel_24h_sum = p.vel_24h_sum;
        a->baseline = p.baseline;
        a->tx_count = p.tx_count;
        a->known_devices = (uint8_t)p.known_devices;
        a->has_profile = 1;
    }
    ing->ring_len++;
    ing->st.alerts++;
}

/* Send queued records while the alert socket accepts them. */
static void flush_alerts(struct gw_ingest *ing) {
    const struct gw_zmq_api *z = ing->z;
    while (ing->ring_len) {
        if (!ing->cfg.alerts) {
            ing->st.alerts_unsent += ing->ring_len;
            ing->ring_head = (ing->ring_head + ing->ring_len) % ing->ring_cap;
            ing->ring_len = 0;
            break;
        }
        uint32_t n = ing->ring_len;
        if (n > ing->ring_cap - ing->ring_head) n = ing->ring_cap - ing->ring_head;
        if (n > GW_ALERTS_PER_MSG) n = GW_ALERTS_PER_MSG;
        if (z->send(ing->cfg.alerts, &ing->ring[ing->ring_head],
                    n * sizeof(struct gw_alert_record), GWZ_DONTWAIT) < 0)
            break; /* EAGAIN: at the HWM; keep them queued */
        ing->ring_head = (ing->ring_head + n) % ing->ring_cap;
        ing->ring_len -= n;
        ing->st.alert_msgs++;
    }
    ing->st.alert_queue = ing->ring_len;
}

/* -- one request -------------------------------------------------------------------------- */

static int fabric_route(struct gw_ingest *ing, uint64_t rid, const uint8_t *body, size_t len,
                        uint32_t n);

/* Decode, score and encode the reply for one body into ing->out. */
static void process(struct gw_ingest *ing, const uint8_t *body, size_t len, int paused) {
    struct gw_mp_writer *w = &ing->out;
    int kind;
    uint64_t rid;
    uint32_t n;
    w->len = 0;
    int err = gw_ingest_decode_request(body, len, &kind, &rid, &n, ing->txs, ing->tx_ids,
                             ing->tx_id_lens, GW_INGEST_MAX_BATCH);
    if (err) {
        ing->st.errors[err & 15]++;
        reply_error(w, rid, err, NULL);
        return;
    }
    if (kind == GW_REQ_PING) {
        ing->st.pings++;
        reply_pong(ing, w, rid);
        return;
    }
    if (paused) {
        ing->st.busy++;
        ing->st.busy_paused++;
        reply_busy(w, rid, ing->cfg.busy_paused_ms);
        return;
    }
    if (ing->overloaded) {
        ing->st.busy++;
        ing->st.busy_overload++;
        reply_busy(w, rid, ing->cfg.busy_overload_ms);
        return;
    }
    if (ring_free(ing) < n) {
        flush_alerts(ing);
        if (ring_free(ing) < n) {
            ing->st.busy++;
            ing->st.busy_alerts++;
            reply_busy(w, rid, ing->cfg.busy_alerts_ms);
            return;
        }
    }
    if (ing->fabric && !ing->no_forward && fabric_route(ing, rid, body, len, n))
        return; /* handed off to the control plane, or refused (reply in w) */
    if (gw_engine_score_batch(ing->cfg.engine, ing->txs, n, ing->dec) != GW_OK) {
        ing->st.engine_errors++;
        ing->st.errors[GW_WE_INTERNAL]++;
        reply_error(w, rid, GW_WE_INTERNAL, NULL);
        return;
    }
    ing->st.score_requests++;
    ing->st.decisions += n;
    int64_t now = 0;
    int64_t min_score = ing->cfg.alert_min_score;
    for (uint32_t i = 0; i < n; i++) {
        const struct gw_decision *d = &ing->dec[i];
        ing->st.outcome[d->outcome & 3]++;
        ing->st.path[d->path & 1]++;
        if (d->outcome != GW_ALLOW || (min_score > 0 && d->score >= min_score)) {
            if (!now) now = wall_ns();
            push_alert(ing, rid, i, now);
        }
    }
    put_decisions(ing, w, rid, n);
}

long gw_ingest_process_one(struct gw_ingest *ing, const uint8_t *body, size_t len,
                           uint8_t *out, size_t cap) {
    process(ing, body, len, atomic_load(&ing->pause_req));
    flush_alerts(ing);
    if (ing->out.oom) { ing->out.oom = 0; return -2; }
    if (ing->out.len > cap) return -1;
    memcpy(out, ing->out.buf, ing->out.len);
    return (long)ing->out.len;
}

/* -- the thread ----------------------------------------------------------------------------- */


static void record_latency(struct gw_ingest_stats *st, uint64_t ns) {
    st->lat_count++;
    st->lat_sum_ns += ns;
    if (ns > st->lat_max_ns) st->lat_max_ns = ns;
    st->lat_buckets[gw_lat_bucket(ns)]++;
}

/* Handle up to `burst` messages; returns how many were handled, -1 when the context ended. */
static int drain(struct gw_ingest *ing, int paused) {
    const struct gw_zmq_api *z = ing->z;
    void *router = ing->cfg.router;
    int handled = 0;
    gwz_msg_t ident, body, extra;
    while ((uint32_t)handled < ing->cfg.burst) {
        z->msg_init(&ident);
        if (z->msg_recv(&ident, router, GWZ_DONTWAIT) < 0) {
            int e = z->errno_();
            z->msg_close(&ident);
            return e == GWZ_ETERM ? -1 : handled;
        }
        uint64_t t0 = mono_ns();
        handled++;
        ing->st.messages++;
        z->msg_init(&body);
        int has_body = 0, frames = 0, more = z->msg_more(&ident);
        if (more) {
            if (z->msg_recv(&body, router, GWZ_DONTWAIT) >= 0) {
                has_body = 1;
                frames = 1;
                more = z->msg_more(&body);
            } else {
                more = 0;
            }
        }
        while (more) { /* frames past the cap are read and dropped */
            z->msg_init(&extra);
            if (z->msg_recv(&extra, router, GWZ_DONTWAIT) < 0) {
                z->msg_close(&extra);
                break;
            }
            frames++;
            more = z->msg_more(&extra);
            z->msg_close(&extra);
        }
        struct gw_mp_writer *w = &ing->out;
        if (frames > 1) {
            w->len = 0;
            ing->st.errors[GW_WE_TOO_MANY_FRAMES]++;
            reply_error(w, 0, GW_WE_TOO_MANY_FRAMES, NULL);
        } else {
            ing->cur_ident = &ident;
            process(ing, has_body ? z->msg_data(&body) : (const uint8_t *)"",
                    has_body ? z->msg_size(&body) : 0, paused);
            ing->cur_ident = NULL;
        }
        z->msg_close(&body);
        if (ing->handed) { /* the control plane answers later (regional fabric) */
            ing->handed = 0;
            z->msg_close(&ident);
            record_latency(&ing->st, mono_ns() - t0);
            continue;
        }
        if (w->oom) { /* could not grow the reply buffer: answer INTERNAL instead */
            w->oom = 0;
            w->len = 0;
            ing->st.errors[GW_WE_INTERNAL]++;
            reply_error(w, 0, GW_WE_INTERNAL, NULL);
        }
        if (z->msg_send(&ident, router, GWZ_SNDMORE | GWZ_DONTWAIT) < 0) {
            int e = z->errno_();
            z->msg_close(&ident);
            if (e == EHOSTUNREACH) ing->st.unroutable++;
            else if (e == EAGAIN) ing->st.send_refused++;
            else if (e == GWZ_ETERM) return -1;
            continue;
        }
        if (z->send(router, w->buf, w->len, GWZ_DONTWAIT) < 0) ing->st.send_refused++;
        record_latency(&ing->st, mono_ns() - t0);
    }
    return handled;
}

/* Publish counters and take the pause / resume decision, both under the lock, so that a
 * pause request is either seen now or acknowledged by a later pass, never missed. */
static int checkpoint(struct gw_ingest *ing, int paused) {
    pthread_mutex_lock(&ing->lock);
    int want = atomic_load_explicit(&ing->pause_req, memory_order_relaxed);
    if (want != paused) {
        paused = want;
        ing->paused_ack = want; /* here the thread is outside the engine */
        ing->st.paused = (uint64_t)want;
        pthread_cond_broadcast(&ing->cond);
    }
    ing->pub = ing->st;
    ing->fst.reserved = ing->ring_reserved;
    ing->fpub = ing->fst;
    ing->pub_seq++;
    pthread_cond_broadcast(&ing->cond);
    pthread_mutex_unlock(&ing->lock);
    return paused;
}

static int drain_fabric(struct gw_ingest *ing);

static void *run(void *arg) {
    struct gw_ingest *ing = arg;
    const struct gw_zmq_api *z = ing->z;
    gwz_pollitem_t items[4];
    int paused = -1; /* forces the first checkpoint to state the pause status */
    uint64_t last_pub = 0;
    int dirty = 0;
    ing->st.running = 1;
    paused = checkpoint(ing, paused);
    while (!atomic_load_explicit(&ing->stop, memory_order_acquire)) {
        if (ing->ring_len) flush_alerts(ing);
        int n = drain(ing, paused);
        if (n < 0) break;
        int nf = ing->fabric && !paused ? drain_fabric(ing) : 0;
        if (nf < 0) break;
        if (nf > 0) dirty = 1;
        ing->st.wakeups++;
        ing->st.last_burst = (uint64_t)n;
        if ((uint64_t)n > ing->st.max_burst) ing->st.max_burst = (uint64_t)n;
        if (ing->ring_len > ing->st.alert_queue_max) ing->st.alert_queue_max = ing->ring_len;
        ing->st.alert_queue = ing->ring_len;
        int full = (uint32_t)n == ing->cfg.burst;
        int fabric_full = (uint32_t)nf == ing->cfg.burst;
        if (n > 0) dirty = 1;
        /* publish at most once a millisecond while busy: a snapshot is ~4.5 KB */
        uint64_t now = mono_ns();
        if (!full) {
            ing->saturated_since = 0;
            ing->overloaded = 0;
        } else if (!ing->saturated_since) {
            ing->saturated_since = now;
        } else if (ing->cfg.max_backlog_ms &&
                   now - ing->saturated_since > (uint64_t)ing->cfg.max_backlog_ms * 1000000u) {
            ing->overloaded = 1;
        }
        if (dirty && now - last_pub >= 1000000u) {
            paused = checkpoint(ing, paused);
            last_pub = now;
            dirty = 0;
        }
        if (full || fabric_full) continue;
        int k = 0;
        items[k++] = (gwz_pollitem_t){ing->cfg.router, 0, GWZ_POLLIN, 0};
        items[k++] = (gwz_pollitem_t){NULL, ing->wake_fd, GWZ_POLLIN, 0};
        if (ing->ring_len && ing->cfg.alerts)
            items[k++] = (gwz_pollitem_t){ing->cfg.alerts, 0, GWZ_POLLOUT, 0};
        if (ing->fabric && !paused)
            items[k++] = (gwz_pollitem_t){ing->fabric, 0, GWZ_POLLIN, 0};
        int rc = z->poll(items, k, dirty || ing->ring_len ? 1 : 1000);
        if (rc < 0 && z->errno_() == GWZ_ETERM) break;
        if (rc > 0 && (items[1].revents & GWZ_POLLIN)) {
            uint64_t v;
            ssize_t got = read(ing->wake_fd, &v, sizeof v);
            (void)got;
            paused = checkpoint(ing, paused);
            last_pub = mono_ns();
            dirty = 0;
        }
    }
    pthread_mutex_lock(&ing->lock);
    ing->st.running = 0;
    ing->st.paused = 0;
    ing->paused_ack = 1; /* a stopped thread scores nothing */
    ing->pub = ing->st;
    pthread_cond_broadcast(&ing->cond);
    pthread_mutex_unlock(&ing->lock);
    return NULL;
}

static void wake(struct gw_ingest *ing) {
    uint64_t one = 1;
    ssize_t put = write(ing->wake_fd, &one, sizeof one);
    (void)put;
}

/* -- lifecycle ------------------------------------------------------------------------------ */

int gw_ingest_new(const struct gw_ingest_config *cfg, struct gw_ingest **out) {
    if (!cfg || !out || !cfg->router || !cfg->engine) return GW_ERR_INVALID;
    const struct gw_zmq_api *z = gw_zmq();
    if (!z) return GW_ERR_STATE; /* gw_zmq_load first */
    struct gw_ingest *ing = calloc(1, sizeof *ing);
    if (!ing) return GW_ERR_NOMEM;
    ing->cfg = *cfg;
    ing->z = z;
    snprintf(ing->node_name, sizeof ing->node_name, "%s", cfg->node_name ? cfg->node_name : "");
    snprintf(ing->region, sizeof ing->region, "%s", cfg->region ? cfg->region : "");
    ing->cfg.node_name = ing->node_name;
    ing->cfg.region = ing->region;
    snprintf(ing->frozen_id, sizeof ing->frozen_id, "%s",
             cfg->frozen_rule_id ? cfg->frozen_rule_id : "@frozen");
    ing->cfg.frozen_rule_id = ing->frozen_id;
    if (ing->cfg.alert_queue < 2 * GW_INGEST_MAX_BATCH) ing->cfg.alert_queue = 2 * GW_INGEST_MAX_BATCH;
    if (!ing->cfg.burst) ing->cfg.burst = 512;
    if (!ing->cfg.busy_alerts_ms) ing->cfg.busy_alerts_ms = 5;
    if (!ing->cfg.busy_paused_ms) ing->cfg.busy_paused_ms = 20;
    if (!ing->cfg.busy_overload_ms) ing->cfg.busy_overload_ms = 10;
    ing->ring_cap = ing->cfg.alert_queue;
    ing->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ing->txs = calloc(GW_INGEST_MAX_BATCH, sizeof *ing->txs);
    ing->tx_ids = calloc(GW_INGEST_MAX_BATCH, sizeof *ing->tx_ids);
    ing->tx_id_lens = calloc(GW_INGEST_MAX_BATCH, sizeof *ing->tx_id_lens);
    ing->dec = calloc(GW_INGEST_MAX_BATCH, sizeof *ing->dec);
    ing->ring = calloc(ing->ring_cap, sizeof *ing->ring);
    pthread_mutex_init(&ing->lock, NULL);
    pthread_mutex_init(&ing->tables_lock, NULL);
    pthread_cond_init(&ing->cond, NULL);
    if (ing->wake_fd < 0 || !ing->txs || !ing->tx_ids || !ing->tx_id_lens || !ing->dec ||
        !ing->ring || gw_mp_grow(&ing->out, 64 * 1024)) {
        int sys = ing->wake_fd < 0;
        gw_ingest_free(ing);
        return sys ? GW_ERR_SYSTEM : GW_ERR_NOMEM;
    }
    *out = ing;
    return GW_OK;
}

int gw_ingest_start(struct gw_ingest *ing) {
    if (!ing) return GW_ERR_INVALID;
    if (ing->started) return GW_ERR_STATE;
    atomic_store(&ing->stop, 0);
    pthread_mutex_lock(&ing->lock);
    ing->paused_ack = 0; /* stated by the thread's first checkpoint */
    pthread_mutex_unlock(&ing->lock);
    if (pthread_create(&ing->thread, NULL, run, ing) != 0) return GW_ERR_SYSTEM;
    ing->started = 1;
    return GW_OK;
}

int gw_ingest_stop(struct gw_ingest *ing) {
    if (!ing) return GW_ERR_INVALID;
    if (!ing->started) return GW_OK;
    atomic_store_explicit(&ing->stop, 1, memory_order_release);
    wake(ing);
    pthread_join(ing->thread, NULL);
    ing->started = 0;
    return GW_OK;
}

int gw_ingest_pause(struct gw_ingest *ing, int timeout_ms) {
    if (!ing) return GW_ERR_INVALID;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    int rc = GW_OK;
    pthread_mutex_lock(&ing->lock);
    atomic_store_explicit(&ing->pause_req, 1, memory_order_relaxed);
    if (!ing->started) ing->paused_ack = 1;
    pthread_mutex_unlock(&ing->lock);
    if (ing->started) wake(ing);
    pthread_mutex_lock(&ing->lock);
    while (!ing->paused_ack) {
        if (pthread_cond_timedwait(&ing->cond, &ing->lock, &until) == ETIMEDOUT) {
            rc = ing->paused_ack ? GW_OK : GW_ERR_STATE;
            break;
        }
    }
    pthread_mutex_unlock(&ing->lock);
    return rc;
}

int gw_ingest_resume(struct gw_ingest *ing) {
    if (!ing) return GW_ERR_INVALID;
    pthread_mutex_lock(&ing->lock);
    atomic_store_explicit(&ing->pause_req, 0, memory_order_relaxed);
    if (!ing->started) ing->paused_ack = 0;
    pthread_mutex_unlock(&ing->lock);
    if (ing->started) wake(ing);
    return GW_OK;
}

int gw_ingest_stats(struct gw_ingest *ing, struct gw_ingest_stats *out) {
    if (!ing || !out) return GW_ERR_INVALID;
    pthread_mutex_lock(&ing->lock);
    *out = ing->started ? ing->pub : ing->st;
    pthread_mutex_unlock(&ing->lock);
    return GW_OK;
}

int gw_ingest_stats_fresh(struct gw_ingest *ing, struct gw_ingest_stats *out,
                          int timeout_ms) {
    if (!ing || !out) return GW_ERR_INVALID;
    pthread_mutex_lock(&ing->lock);
    uint64_t seq0 = ing->pub_seq;
    int running = ing->started;
    pthread_mutex_unlock(&ing->lock);
    if (!running) return gw_ingest_stats(ing, out);
    wake(ing);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)timeout_ms * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    int rc = GW_OK;
    pthread_mutex_lock(&ing->lock);
    while (ing->pub_seq == seq0 && ing->started) {
        if (pthread_cond_timedwait(&ing->cond, &ing->lock, &until) == ETIMEDOUT) {
            rc = ing->pub_seq == seq0 ? GW_ERR_STATE : GW_OK;
            break;
        }
    }
    *out = ing->pub;
    pthread_mutex_unlock(&ing->lock);
    return rc;
}

int gw_ingest_set_rule_ids(struct gw_ingest *ing, uint32_t version, const char *blob,
                           const uint32_t *offsets, uint32_t n) {
    if (!ing || (n && (!blob || !offsets))) return GW_ERR_INVALID;
    for (uint32_t i = 0; i < n; i++)
        if (offsets[i + 1] < offsets[i]) return GW_ERR_INVALID;
    struct rule_table *t = calloc(1, sizeof *t);
    if (!t) return GW_ERR_NOMEM;
    t->version = version;
    t->n = n;
    t->offsets = malloc((size_t)(n + 1) * sizeof *t->offsets);
    t->blob = malloc(n ? offsets[n] + 1u : 1u);
    if (!t->offsets || !t->blob) {
        free(t->offsets); free(t->blob); free(t);
        return GW_ERR_NOMEM;
    }
    if (n) {
        memcpy(t->offsets, offsets, (size_t)(n + 1) * sizeof *t->offsets);
        memcpy(t->blob, blob, offsets[n]);
    } else {
        t->offsets[0] = 0;
    }
    pthread_mutex_lock(&ing->tables_lock);
    if (ing->n_retired >= sizeof ing->retired / sizeof *ing->retired) {
        pthread_mutex_unlock(&ing->tables_lock);
        free(t->offsets); free(t->blob); free(t);
        return GW_ERR_OVERFLOW; /* 256 rule reloads: restart ingest to reclaim */
    }
    uint32_t slot = ing->next_table++ % MAX_RULE_TABLES;
    struct rule_table *old = atomic_exchange(&ing->tables[slot], t);
    /* The thread may still read `old`: keep it until gw_ingest_free. */
    if (old) ing->retired[ing->n_retired++] = old;
    pthread_mutex_unlock(&ing->tables_lock);
    return GW_OK;
}

static void free_table(struct rule_table *t) {
    if (!t) return;
    free(t->offsets);
    free(t->blob);
    free(t);
}

void gw_ingest_free(struct gw_ingest *ing) {
    if (!ing) return;
    gw_ingest_stop(ing);
    for (int i = 0; i < MAX_RULE_TABLES; i++) free_table(atomic_load(&ing->tables[i]));
    for (uint32_t i = 0; i < ing->n_retired; i++) free_table(ing->retired[i]);
    if (ing->wake_fd >= 0) close(ing->wake_fd);
    free(ing->txs);
    free(ing->tx_ids);
    free(ing->tx_id_lens);
    free(ing->dec);
    free(ing->ring);
    free(ing->homes);
    free(ing->ltx);
    free(ing->ldec);
    free(ing->lidx);
    free(ing->out.buf);
    pthread_mutex_destroy(&ing->lock);
    pthread_mutex_destroy(&ing->tables_lock);
    pthread_cond_destroy(&ing->cond);
    free(ing);
}

/* -- regional fabric: hand-off, completion and peer requests (see gw_ingest.h) ---------- */

int gw_ingest_attach_fabric(struct gw_ingest *ing, const struct gw_dir *dir,
                            int local_region, void *pair) {
    if (!ing || !dir || !pair || local_region < 0) return GW_ERR_INVALID;
    if (ing->started) return GW_ERR_STATE;
    if (!ing->homes) {
        ing->homes = calloc(GW_INGEST_MAX_BATCH, sizeof *ing->homes);
        ing->ltx = calloc(GW_INGEST_MAX_BATCH, sizeof *ing->ltx);
        ing->ldec = calloc(GW_INGEST_MAX_BATCH, sizeof *ing->ldec);
        ing->lidx = calloc(GW_INGEST_MAX_BATCH, sizeof *ing->lidx);
        if (!ing->homes || !ing->ltx || !ing->ldec || !ing->lidx) return GW_ERR_NOMEM;
    }
    ing->dir = dir;
    ing->local_region = local_region;
    ing->fabric = pair;
    return GW_OK;
}

int gw_ingest_fabric_stats(struct gw_ingest *ing, struct gw_ingest_fabric_stats *out) {
    if (!ing || !out) return GW_ERR_INVALID;
    pthread_mutex_lock(&ing->lock);
    if (ing->started) {
        *out = ing->fpub;
    } else {
        *out = ing->fst;
        out->reserved = ing->ring_reserved;
    }
    pthread_mutex_unlock(&ing->lock);
    return GW_OK;
}

/* Home regions of the decoded request: 0 when all are local (score here), 1 when the
 * request was handed off or refused (reply in ing->out, or ing->handed set). */
static int fabric_route(struct gw_ingest *ing, uint64_t rid, const uint8_t *body, size_t len,
                        uint32_t n) {
    const struct gw_zmq_api *z = ing->z;
    struct gw_mp_writer *w = &ing->out;
    uint32_t local = 0, foreign = 0;
    for (uint32_t i = 0; i < n; i++) {
        int h = gw_dir_home(ing->dir, ing->txs[i].account);
        if (h < 0) {
            ing->fst.no_home++;
            ing->st.errors[GW_WE_INVALID]++;
            reply_error(w, rid, GW_WE_INVALID,
                        "an account of the request has no home region in the directory");
            return 1;
        }
        ing->homes[i] = (uint8_t)h;
        if (h == ing->local_region) local++;
        else foreign++;
    }
    if (!foreign) return 0;
    if (!ing->cur_ident) { /* gw_ingest_process_one: no producer to answer later */
        ing->st.errors[GW_WE_INTERNAL]++;
        reply_error(w, rid, GW_WE_INTERNAL, "forwarding needs the ingest thread");
        return 1;
    }
    void *pair = ing->fabric;
    uint8_t kind = 'F';
    if (z->send(pair, &kind, 1, GWZ_DONTWAIT | GWZ_SNDMORE) < 0) {
        ing->fst.busy_handoff++;
        ing->st.busy++;
        reply_busy(w, rid, ing->cfg.busy_alerts_ms);
        return 1;
    }
    /* the rest of a multipart message is accepted once its first frame was */
    z->send(pair, z->msg_data(ing->cur_ident), z->msg_size(ing->cur_ident),
            GWZ_DONTWAIT | GWZ_SNDMORE);
    z->send(pair, body, len, GWZ_DONTWAIT | GWZ_SNDMORE);
    z->send(pair, ing->homes, n, GWZ_DONTWAIT | GWZ_SNDMORE);
    z->send(pair, &local, sizeof local, GWZ_DONTWAIT);
    ing->ring_reserved += local;
    ing->fst.handed_off++;
    ing->fst.handed_off_txs += foreign;
    ing->handed = 1;
    return 1;
}

static void send_to_producer(struct gw_ingest *ing, const void *ident, size_t ident_len,
                             const void *reply, size_t len) {
    const struct gw_zmq_api *z = ing->z;
    if (z->send(ing->cfg.router, ident, ident_len, GWZ_SNDMORE | GWZ_DONTWAIT) < 0) {
        int e = z->errno_();
        if (e == EHOSTUNREACH) ing->st.unroutable++;
        else ing->st.send_refused++;
        return;
    }
    if (z->send(ing->cfg.router, reply, len, GWZ_DONTWAIT) < 0) ing->st.send_refused++;
}

static void release_reserved(struct gw_ingest *ing, const gwz_msg_t *m) {
    const struct gw_zmq_api *z = ing->z;
    uint32_t r = 0;
    memcpy(&r, z->msg_data((gwz_msg_t *)m), sizeof r);
    ing->ring_reserved -= r < ing->ring_reserved ? r : ing->ring_reserved;
}

/* C: score the local transactions of a forwarded request, merge and reply. */
static void complete(struct gw_ingest *ing, const uint8_t *body, size_t len,
                     const uint8_t *blobs, size_t blobs_len, const uint8_t *lens,
                     size_t lens_len) {
    struct gw_mp_writer *w = &ing->out;
    int kind;
    uint64_t rid = 0;
    uint32_t n = 0, m = 0, k = 0;
    w->len = 0;
    int err = gw_ingest_decode_request(body, len, &kind, &rid, &n, ing->txs, ing->tx_ids,
                                       ing->tx_id_lens, GW_INGEST_MAX_BATCH);
    if (err || kind != GW_REQ_SCORE) goto bad;
    for (uint32_t i = 0; i < n; i++) {
        int h = gw_dir_home(ing->dir, ing->txs[i].account);
        if (h < 0) goto bad;
        ing->homes[i] = (uint8_t)h;
        if (h == ing->local_region) {
            ing->ltx[m] = ing->txs[i];
            ing->lidx[m++] = i;
        } else {
            k++;
        }
    }
    if (lens_len != (size_t)k * 4) goto bad;
    size_t total = 0;
    for (uint32_t j = 0; j < k; j++) {
        uint32_t l;
        memcpy(&l, lens + 4 * j, 4);
        total += l;
    }
    if (total != blobs_len) goto bad;
    if (m && gw_engine_score_batch(ing->cfg.engine, ing->ltx, m, ing->ldec) != GW_OK) {
        ing->st.engine_errors++;
        ing->st.errors[GW_WE_INTERNAL]++;
        reply_error(w, rid, GW_WE_INTERNAL, NULL);
        return;
    }
    int64_t now = 0;
    int64_t min_score = ing->cfg.alert_min_score;
    for (uint32_t j = 0; j < m; j++) {
        uint32_t i = ing->lidx[j];
        ing->dec[i] = ing->ldec[j];
        const struct gw_decision *d = &ing->dec[i];
        ing->st.outcome[d->outcome & 3]++;
        ing->st.path[d->path & 1]++;
        if ((d->outcome != GW_ALLOW || (min_score > 0 && d->score >= min_score)) &&
            ring_free(ing) > 0) { /* room was reserved at hand-off */
            if (!now) now = wall_ns();
            push_alert(ing, rid, i, now);
        }
    }
    ing->st.decisions += m;
    ing->fst.completed++;
    ing->fst.completed_local += m;
    put_scored_head(w, rid, n);
    const struct rule_table *tab = NULL;
    uint32_t tab_version = 0;
    const uint8_t *blob = blobs;
    for (uint32_t i = 0, j = 0; i < n; i++) {
        if (ing->homes[i] == ing->local_region) {
            put_decision(ing, w, i, &tab, &tab_version);
            continue;
        }
        uint32_t l;
        memcpy(&l, lens + 4 * j++, 4);
        if (gw_mp_reserve(w, l)) break;
        memcpy(w->buf + w->len, blob, l);
        w->len += l;
        blob += l;
    }
    return;
bad:
    ing->fst.bad_messages++;
    ing->st.errors[GW_WE_INTERNAL]++;
    w->len = 0;
    reply_error(w, rid, GW_WE_INTERNAL, NULL);
}

#define FABRIC_PARTS 6

static void fabric_dispatch(struct gw_ingest *ing, gwz_msg_t *parts, int np) {
    const struct gw_zmq_api *z = ing->z;
    struct gw_mp_writer *w = &ing->out;
    char kind = z->msg_size(&parts[0]) == 1 ? *(const char *)z->msg_data(&parts[0]) : 0;
    if (kind == 'R' && np == 4 && z->msg_size(&parts[3]) == 4) {
        release_reserved(ing, &parts[3]);
        send_to_producer(ing, z->msg_data(&parts[1]), z->msg_size(&parts[1]),
                         z->msg_data(&parts[2]), z->msg_size(&parts[2]));
        ing->fst.relayed++;
    } else if (kind == 'C' && np == 6 && z->msg_size(&parts[5]) == 4) {
        release_reserved(ing, &parts[5]);
        complete(ing, z->msg_data(&parts[2]), z->msg_size(&parts[2]), z->msg_data(&parts[3]),
                 z->msg_size(&parts[3]), z->msg_data(&parts[4]), z->msg_size(&parts[4]));
        if (w->oom) {
            w->oom = 0;
            w->len = 0;
            ing->st.errors[GW_WE_INTERNAL]++;
            reply_error(w, 0, GW_WE_INTERNAL, NULL);
        }
        send_to_producer(ing, z->msg_data(&parts[1]), z->msg_size(&parts[1]), w->buf, w->len);
    } else if (kind == 'S' && np == 3) {
        ing->no_forward = 1;
        process(ing, z->msg_data(&parts[2]), z->msg_size(&parts[2]), 0);
        ing->no_forward = 0;
        if (w->oom) {
            w->oom = 0;
            w->len = 0;
            ing->st.errors[GW_WE_INTERNAL]++;
            reply_error(w, 0, GW_WE_INTERNAL, NULL);
        }
        ing->fst.peer_requests++;
        uint8_t s = 'S';
        if (z->send(ing->fabric, &s, 1, GWZ_DONTWAIT | GWZ_SNDMORE) < 0) {
            ing->fst.reply_refused++;
            return;
        }
        z->send(ing->fabric, z->msg_data(&parts[1]), z->msg_size(&parts[1]),
                GWZ_DONTWAIT | GWZ_SNDMORE);
        z->send(ing->fabric, w->buf, w->len, GWZ_DONTWAIT);
    } else {
        ing->fst.bad_messages++;
    }
}

/* Handle up to `burst` messages from the control plane; -1 when the context ended. */
static int drain_fabric(struct gw_ingest *ing) {
    const struct gw_zmq_api *z = ing->z;
    gwz_msg_t parts[FABRIC_PARTS], extra;
    int handled = 0;
    while ((uint32_t)handled < ing->cfg.burst) {
        z->msg_init(&parts[0]);
        if (z->msg_recv(&parts[0], ing->fabric, GWZ_DONTWAIT) < 0) {
            int e = z->errno_();
            z->msg_close(&parts[0]);
            return e == GWZ_ETERM ? -1 : handled;
        }
        int np = 1, over = 0, more = z->msg_more(&parts[0]);
        while (more) {
            gwz_msg_t *m = np < FABRIC_PARTS ? &parts[np] : &extra;
            z->msg_init(m);
            if (z->msg_recv(m, ing->fabric, GWZ_DONTWAIT) < 0) {
                z->msg_close(m);
                break;
            }
            more = z->msg_more(m);
            if (np < FABRIC_PARTS) np++;
            else { over = 1; z->msg_close(m); }
        }
        handled++;
        if (over) ing->fst.bad_messages++;
        else fabric_dispatch(ing, parts, np);
        for (int i = 0; i < np; i++) z->msg_close(&parts[i]);
    }
    return handled;
}
