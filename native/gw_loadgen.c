/* Native load generator: see gw_loadgen.h. */
#include "gw_loadgen.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "gw_ingest.h"
#include "gw_msgpack.h"
#include "gw_zmq.h"

struct lg_conn {
    void *sock;
    int fd;
    uint32_t inflight;
    uint64_t seq;
    uint64_t *sent_at; /* by seq & mask */
};

static inline uint64_t lg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Parse the head of a reply: 1 scored (decisions counted), 2 busy, 3 error, 0 other. */
static int parse_reply(const uint8_t *p, size_t len, uint64_t *rid, uint32_t *decisions) {
    struct gw_mp_reader r = {p, p + len, 0};
    uint32_t n, tlen;
    const char *tag;
    uint64_t v;
    int neg;
    if (gw_mp_read_array(&r, &n) || n < 3 || gw_mp_read_str(&r, &tag, &tlen)) return 0;
    if (gw_mp_read_int(&r, &v, &neg) || gw_mp_read_int(&r, rid, &neg) || neg) return 0;
    if (tlen == 6 && !memcmp(tag, "scored", 6)) {
        if (n < 4 || gw_mp_read_array(&r, decisions)) return 0;
        return 1;
    }
    if (tlen == 4 && !memcmp(tag, "busy", 4)) return 2;
    if (tlen == 5 && !memcmp(tag, "error", 5)) return 3;
    return 0;
}

int gw_loadgen_run(const struct gw_loadgen_config *cfg, struct gw_loadgen_result *out) {
    const struct gw_zmq_api *z = gw_zmq();
    if (!z) return GW_ERR_STATE;
    if (!cfg || !out || !cfg->url || !cfg->txs || !cfg->tx_offsets || cfg->n_txs == 0 ||
        cfg->batch == 0 || cfg->batch > GW_INGEST_MAX_BATCH || cfg->connections == 0 ||
        cfg->connections > GW_LOADGEN_MAX_CONNS || cfg->window == 0 || cfg->window > 65536 ||
        cfg->rate < 0)
        return GW_ERR_INVALID;
    memset(out, 0, sizeof *out);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* precise pacing sleeps */
    uint32_t mask = 1;
    while (mask < cfg->window) mask <<= 1;
    size_t max_tx = 0;
    for (uint32_t i = 0; i < cfg->n_txs; i++) {
        if (cfg->tx_offsets[i + 1] < cfg->tx_offsets[i]) return GW_ERR_INVALID;
        size_t l = cfg->tx_offsets[i + 1] - cfg->tx_offsets[i];
        if (l > max_tx) max_tx = l;
    }
    size_t buf_cap = 32 + (size_t)cfg->batch * max_tx;
    uint8_t *buf = malloc(buf_cap);
    struct lg_conn *conns = calloc(cfg->connections, sizeof *conns);
    struct pollfd *pfds = calloc(cfg->connections, sizeof *pfds);
    void *ctx = z->ctx_new();
    int rc = GW_OK;
    if (!buf || !conns || !pfds || !ctx) { rc = !ctx ? GW_ERR_SYSTEM : GW_ERR_NOMEM; goto done; }
    int hwm = 100000, linger = 0;
    for (uint32_t c = 0; c < cfg->connections; c++) {
        struct lg_conn *cn = &conns[c];
        cn->sent_at = calloc((size_t)mask + 1, sizeof *cn->sent_at);
        cn->sock = z->socket(ctx, GWZ_DEALER);
        if (!cn->sent_at || !cn->sock) { rc = GW_ERR_NOMEM; goto done; }
        z->setsockopt(cn->sock, GWZ_LINGER, &linger, sizeof linger);
        z->setsockopt(cn->sock, GWZ_SNDHWM, &hwm, sizeof hwm);
        z->setsockopt(cn->sock, GWZ_RCVHWM, &hwm, sizeof hwm);
        if (z->connect(cn->sock, cfg->url) < 0) { rc = GW_ERR_INVALID; goto done; }
        size_t sz = sizeof cn->fd;
        z->getsockopt(cn->sock, GWZ_FD, &cn->fd, &sz);
        pfds[c].fd = cn->fd;
        pfds[c].events = POLLIN;
    }
    /* ["score", 1, rid(uint64), [tx * batch]] */
    static const uint8_t head[] = {0x94, 0xa5, 's', 'c', 'o', 'r', 'e', 0x01, 0xcf};
    const size_t rid_at = sizeof head;
    memcpy(buf, head, sizeof head);
    size_t txs_at = rid_at + 8;
    if (cfg->batch < 16) buf[txs_at++] = (uint8_t)(0x90 | cfg->batch);
    else { buf[txs_at++] = 0xdc; buf[txs_at++] = (uint8_t)(cfg->batch >> 8);
           buf[txs_at++] = (uint8_t)cfg->batch; }
    uint64_t t_start = lg_now(), t_last = t_start;
    uint64_t deadline = t_start + (uint64_t)cfg->timeout_ms * 1000000u;
    double ns_per_req = cfg->rate > 0 ? 1e9 / cfg->rate : 0;
    uint32_t rr = 0, tx_cursor = 0;
    uint64_t cycle = 0;
    uint64_t seen = 0;
    gwz_msg_t msg;
    for (;;) {
        uint64_t now = lg_now();
        if (now > deadline) break;
        int progress = 0;
        while (out->sent < cfg->requests) {
            if (ns_per_req > 0 && t_start + (uint64_t)(out->sent * ns_per_req) > now) break;
            struct lg_conn *cn = NULL;
            for (uint32_t k = 0; k < cfg->connections; k++) {
                struct lg_conn *cand = &conns[(rr + k) % cfg->connections];
                if (cand->inflight < cfg->window) { cn = cand; rr = (rr + k + 1) % cfg->connections; break; }
            }
            if (!cn) break;
            uint64_t rid = (uint64_t)(cn - conns) << 48 | cn->seq;
            for (int i = 0; i < 8; i++) buf[rid_at + i] = (uint8_t)(rid >> (56 - 8 * i));
            size_t len = txs_at;
            for (uint32_t b = 0; b < cfg->batch; b++) {
                uint32_t o = cfg->tx_offsets[tx_cursor], l = cfg->tx_offsets[tx_cursor + 1] - o;
                memcpy(buf + len, cfg->txs + o, l);
                len += l;
                uint64_t shift = cfg->ts_offset_ms + cycle * cfg->cycle_advance_ms;
                if (shift && l >= 9 && buf[len - 9] == 0xcf) {
                    uint8_t *q = buf + len - 8; /* replayed: a later ts_ms, big-endian */
                    uint64_t ts = 0;
                    for (int i = 0; i < 8; i++) ts = ts << 8 | q[i];
                    ts += shift;
                    for (int i = 0; i < 8; i++) q[i] = (uint8_t)(ts >> (56 - 8 * i));
                }
                if (++tx_cursor == cfg->n_txs) { tx_cursor = 0; cycle++; }
            }
            uint64_t ts = lg_now();
            if (z->send(cn->sock, buf, len, GWZ_DONTWAIT) < 0) break; /* at HWM: receive first */
            cn->sent_at[cn->seq & mask] = ts;
            cn->seq++;
            cn->inflight++;
            out->sent++;
            progress = 1;
        }
        for (uint32_t c = 0; c < cfg->connections; c++) {
            struct lg_conn *cn = &conns[c];
            for (;;) {
                z->msg_init(&msg);
                if (z->msg_recv(&msg, cn->sock, GWZ_DONTWAIT) < 0) { z->msg_close(&msg); break; }
                uint64_t t = lg_now();
                uint64_t rid = 0;
                uint32_t nd = 0;
                int kind = parse_reply(z->msg_data(&msg), z->msg_size(&msg), &rid, &nd);
                z->msg_close(&msg);
                progress = 1;
                out->replies++;
                t_last = t;
                if (kind == 1) { out->scored++; out->decisions += nd; }
                else if (kind == 2) out->busy++;
                else if (kind == 3) out->errors++;
                else out->other++;
                if (cn->inflight) cn->inflight--;
                uint64_t seq = rid & ((1ULL << 48) - 1);
                if ((rid >> 48) == c && seq < cn->seq && ++seen > cfg->warmup) {
                    uint64_t lat = t - cn->sent_at[seq & mask];
                    out->lat_count++;
                    out->lat_sum_ns += lat;
                    if (lat > out->lat_max_ns) out->lat_max_ns = lat;
                    out->lat_buckets[gw_lat_bucket(lat)]++;
                }
            }
        }
        if (out->sent == cfg->requests && out->replies >= out->sent) break;
        if (progress) continue;
        /* nothing to do: sleep on the sockets' signal fds until input or the next send */
        int ready = 0;
        for (uint32_t c = 0; c < cfg->connections && !ready; c++) {
            int ev = 0;
            size_t sz = sizeof ev;
            z->getsockopt(conns[c].sock, GWZ_EVENTS, &ev, &sz);
            if (ev & GWZ_POLLIN) ready = 1;
        }
        if (ready) continue;
        uint64_t wait_ns = 1000000;
        if (ns_per_req > 0 && out->sent < cfg->requests) {
            uint64_t due = t_start + (uint64_t)(out->sent * ns_per_req);
            now = lg_now();
            wait_ns = due > now ? due - now : 0;
            if (wait_ns > 1000000) wait_ns = 1000000;
        }
        struct timespec ts = {0, (long)wait_ns};
        ppoll(pfds, cfg->connections, &ts, NULL);
    }
    out->elapsed_ns = t_last - t_start;
    out->missing = out->sent - (out->replies < out->sent ? out->replies : out->sent);
done:
    if (conns) {
        for (uint32_t c = 0; c < cfg->connections; c++) {
            if (conns[c].sock) z->close(conns[c].sock);
            free(conns[c].sent_at);
        }
    }
    if (ctx) z->ctx_term(ctx);
    free(conns);
    free(pfds);
    free(buf);
    return rc;
}
