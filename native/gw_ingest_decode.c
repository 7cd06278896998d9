/* Ingest request decoder: mirrors gateway/codec.py EndpointCodec.decode exactly (the same
 * wire error code and request id for every input; see tests/ingest/test_decoder.py). */
#include <string.h>

#include "gw_ingest.h"
#include "gw_ingest_internal.h"
#include "gw_msgpack.h"

#define DEPTH_CAP 1000 /* nesting msgspec still decodes (Python's recursion limit) */

/* -- request decoding (mirrors gateway/codec.py EndpointCodec.decode) ------------------- */

static const char *const CHANNELS[6] = {"card", "transfer", "mobile", "web", "atm", "pos"};
/* Request tags of the other endpoints (wire.REQUEST_TAGS minus ping and score; a test
 * keeps the two lists equal): refused with WRONG_ENDPOINT, as the Python codec does. */
static const char *const OTHER_TAGS[] = {
    "status", "rules_load", "rules_rollback", "shadow_report", "trusted_load", "hello",
    "trusted_update", "trusted_get", "alert_submit", "key_register", "key_revoke", "key_list",
    "heartbeat", "received", "resume", "ack", "follow", "who_online", "bye", "open_alerts",
    "executor_hello", "executed", "say", "join", "leave", "invite", "command", "approve",
    "incidents", "cases_search"};

static int str_is(const char *s, uint32_t n, const char *lit) {
    size_t m = strlen(lit);
    return n == m && memcmp(s, lit, m) == 0;
}

/* A str field with a length bound in code points (as msgspec's max_length). */
static int read_text(struct gw_mp_reader *r, const char **s, uint32_t *n, long min_chars,
                     long max_chars) {
    if (gw_mp_read_str(r, s, n)) return -1;
    long chars = gw_mp_utf8_chars(*s, *n);
    if (chars < 0) { r->bad = 1; return -1; }
    return chars < min_chars || chars > max_chars ? -1 : 0;
}

static int read_uint_max(struct gw_mp_reader *r, uint64_t *v, uint64_t max) {
    int neg;
    if (gw_mp_read_int(r, v, &neg)) return -1;
    return neg || *v > max ? -1 : 0;
}

/* Exactly k capital ASCII letters (the wire schema's `^[A-Z]{k}\Z`). */
static int caps(const char *s, uint32_t n, uint32_t k) {
    if (n != k) return 0;
    for (uint32_t i = 0; i < k; i++)
        if (s[i] < 'A' || s[i] > 'Z') return 0;
    return 1;
}

static int decode_tx(struct gw_mp_reader *r, struct gw_tx *tx, const char **id,
                     uint16_t *id_len) {
    uint32_t n, len;
    const char *s;
    uint64_t u;
    if (gw_mp_read_array(r, &n) || n < 12) return -1;
    if (read_text(r, &s, &len, 1, 64)) return -1;
    *id = s;
    *id_len = (uint16_t)len; /* <= 64 code points: <= 256 bytes */
    if (read_uint_max(r, &tx->account, UINT64_MAX)) return -1;
    if (read_uint_max(r, &tx->counterparty, UINT64_MAX)) return -1;
    if (read_uint_max(r, &u, INT64_MAX)) return -1;
    tx->amount = (int64_t)u;
    if (read_text(r, &s, &len, 0, 4) || !caps(s, len, 3)) return -1;
    tx->currency = (uint32_t)(uint8_t)s[0] | (uint32_t)(uint8_t)s[1] << 8 |
                   (uint32_t)(uint8_t)s[2] << 16;
    if (read_text(r, &s, &len, 0, 8)) return -1;
    tx->channel = 0;
    for (int i = 0; i < 6; i++)
        if (str_is(s, len, CHANNELS[i])) tx->channel = (uint8_t)(i + 1);
    if (!tx->channel) return -1;
    if (read_uint_max(r, &u, 9999)) return -1;
    tx->mcc = (uint16_t)u;
    if (read_text(r, &s, &len, 0, 64)) return -1;
    tx->device = len ? gw_hash_str(s, len) : 0;
    if (read_text(r, &s, &len, 0, 45)) return -1;
    tx->ip = len ? gw_hash_str(s, len) : 0;
    if (read_text(r, &s, &len, 0, 3)) return -1;
    if (len == 0) tx->country = 0;
    else if (caps(s, len, 2)) tx->country = (uint16_t)((uint8_t)s[0] | (uint8_t)s[1] << 8);
    else return -1;
    if (read_text(r, &s, &len, 0, 64)) return -1;
    tx->city = len ? gw_hash_str(s, len) : 0;
    if (read_uint_max(r, &u, (uint64_t)1 << 53)) return -1;
    tx->ts_ms = (int64_t)u;
    memset(tx->pad, 0, sizeof tx->pad);
    for (uint32_t i = 12; i < n; i++)
        if (gw_mp_skip(r, DEPTH_CAP)) return -1;
    return 0;
}

/* The typed decode: 0 when the body is a well-typed ping/score request. */
static int decode_typed(const uint8_t *body, size_t len, int *kind, int64_t *version,
                        int *version_ok, uint64_t *rid, uint32_t *n_txs, struct gw_tx *txs,
                        const char **ids, uint16_t *id_lens, uint32_t cap) {
    struct gw_mp_reader r = {body, body + len, 0};
    uint32_t n, tlen, ntx;
    const char *tag;
    uint64_t u;
    int neg;
    if (gw_mp_read_array(&r, &n) || n < 1) return -1;
    if (gw_mp_read_str(&r, &tag, &tlen)) return -1;
    if (str_is(tag, tlen, "ping")) *kind = GW_REQ_PING;
    else if (str_is(tag, tlen, "score")) *kind = GW_REQ_SCORE;
    else return -1;
    if (n < (*kind == GW_REQ_PING ? 3u : 4u)) return -1;
    if (gw_mp_read_int(&r, &u, &neg)) return -1;
    *version_ok = 1;
    *version = (int64_t)u;
    if (neg || u != 1) *version_ok = 0;
    if (read_uint_max(&r, rid, UINT64_MAX)) return -1;
    uint32_t used = 3;
    *n_txs = 0;
    if (*kind == GW_REQ_SCORE) {
        if (gw_mp_read_array(&r, &ntx)) return -1;
        struct gw_tx scratch;
        const char *sid;
        uint16_t slen;
        for (uint32_t i = 0; i < ntx; i++) {
            int ok = i < cap ? decode_tx(&r, &txs[i], &ids[i], &id_lens[i])
                             : decode_tx(&r, &scratch, &sid, &slen);
            if (ok) return -1;
        }
        *n_txs = ntx;
        used = 4;
    }
    for (uint32_t i = used; i < n; i++)
        if (gw_mp_skip(&r, DEPTH_CAP)) return -1;
    return r.p == r.end ? 0 : -1;
}

/* Why a body failed the typed decode (gateway/codec.py _classify). */
static int classify(const uint8_t *body, size_t len, uint64_t *rid) {
    struct gw_mp_reader r = {body, body + len, 0};
    *rid = 0;
    if (gw_mp_skip_checked(&r, DEPTH_CAP) || r.p != r.end) return GW_WE_MALFORMED;
    r.p = body;
    uint32_t n, tlen;
    const char *tag;
    if (gw_mp_read_array(&r, &n) || n < 1 || gw_mp_read_str(&r, &tag, &tlen))
        return GW_WE_MALFORMED;
    int vkind = GW_MP_NONE;
    uint64_t v = 0;
    int vneg = 0;
    if (n > 1) {
        vkind = gw_mp_peek(&r);
        if (vkind == GW_MP_UINT || vkind == GW_MP_NINT) gw_mp_read_int(&r, &v, &vneg);
        else gw_mp_skip(&r, DEPTH_CAP);
    }
    if (n > 2) {
        int k = gw_mp_peek(&r);
        uint64_t x;
        int neg;
        if ((k == GW_MP_UINT || k == GW_MP_NINT) && !gw_mp_read_int(&r, &x, &neg) && !neg)
            *rid = x;
    }
    if ((vkind == GW_MP_UINT || vkind == GW_MP_NINT) && (vneg || v != 1))
        return GW_WE_UNSUPPORTED_VERSION;
    if (str_is(tag, tlen, "ping") || str_is(tag, tlen, "score")) return GW_WE_MALFORMED;
    for (size_t i = 0; i < sizeof OTHER_TAGS / sizeof *OTHER_TAGS; i++)
        if (str_is(tag, tlen, OTHER_TAGS[i])) return GW_WE_WRONG_ENDPOINT;
    return GW_WE_UNKNOWN_TYPE;
}

int gw_ingest_decode_request(const uint8_t *body, size_t len, int *kind, uint64_t *rid,
                          uint32_t *n_txs, struct gw_tx *txs, const char **ids,
                          uint16_t *id_lens, uint32_t cap) {
    *kind = GW_REQ_NONE;
    *rid = 0;
    *n_txs = 0;
    if (len == 0) return GW_WE_EMPTY_MESSAGE;
    if (len > GW_INGEST_MAX_FRAME) return GW_WE_TOO_LARGE;
    int64_t version;
    int version_ok = 0;
    if (decode_typed(body, len, kind, &version, &version_ok, rid, n_txs, txs, ids, id_lens,
                     cap)) {
        *kind = GW_REQ_NONE;
        *n_txs = 0;
        return classify(body, len, rid);
    }
    if (!version_ok) return GW_WE_UNSUPPORTED_VERSION;
    if (*kind == GW_REQ_SCORE) {
        if (*n_txs == 0) return GW_WE_INVALID;
        if (*n_txs > GW_INGEST_MAX_BATCH) return GW_WE_TOO_LARGE;
    }
    return 0;
}

int gw_ingest_decode(const uint8_t *body, size_t len, int *kind, uint64_t *rid,
                     uint32_t *n_txs, struct gw_tx *txs, uint32_t cap) {
    const char *ids[GW_INGEST_MAX_BATCH];
    uint16_t lens[GW_INGEST_MAX_BATCH];
    if (cap > GW_INGEST_MAX_BATCH) cap = GW_INGEST_MAX_BATCH;
    return gw_ingest_decode_request(body, len, kind, rid, n_txs, txs, ids, lens, txs ? cap : 0);
}

