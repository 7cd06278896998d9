/* Bounded msgpack reader and writer for the ingest hot path (no allocation on read).
 *
 * The reader never reads past `end`; every call returns 0 on success and -1 on a type
 * mismatch or truncation (r->bad is set on truncation or a reserved byte, i.e. when the
 * body is not msgpack at all). Strings are returned as (pointer, byte length) into the
 * input buffer; gw_mp_utf8_chars validates UTF-8 strictly (no overlongs, surrogates or
 * code points past U+10FFFF) and counts code points, as Python does.
 */
#ifndef GW_MSGPACK_H
#define GW_MSGPACK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct gw_mp_reader {
    const uint8_t *p;
    const uint8_t *end;
    int bad; /* 1: truncated or reserved byte (not msgpack) */
};

enum gw_mp_kind { GW_MP_NONE = 0, GW_MP_NIL, GW_MP_BOOL, GW_MP_UINT, GW_MP_NINT,
                  GW_MP_FLOAT, GW_MP_STR, GW_MP_BIN, GW_MP_ARRAY, GW_MP_MAP, GW_MP_EXT };

static inline uint16_t gw_mp_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t gw_mp_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t gw_mp_be64(const uint8_t *p) {
    return (uint64_t)gw_mp_be32(p) << 32 | gw_mp_be32(p + 4);
}

/* Kind of the next value without consuming it (GW_MP_NONE at end or on 0xc1). */
static inline int gw_mp_peek(const struct gw_mp_reader *r) {
    if (r->p >= r->end) return GW_MP_NONE;
    uint8_t b = *r->p;
    if (b <= 0x7f) return GW_MP_UINT;
    if (b <= 0x8f) return GW_MP_MAP;
    if (b <= 0x9f) return GW_MP_ARRAY;
    if (b <= 0xbf) return GW_MP_STR;
    if (b >= 0xe0) return GW_MP_NINT;
    switch (b) {
    case 0xc0: return GW_MP_NIL;
    case 0xc2: case 0xc3: return GW_MP_BOOL;
    case 0xc4: case 0xc5: case 0xc6: return GW_MP_BIN;
    case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        return GW_MP_EXT;
    case 0xca: case 0xcb: return GW_MP_FLOAT;
    case 0xcc: case 0xcd: case 0xce: case 0xcf: return GW_MP_UINT;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: return GW_MP_NINT; /* sign checked on read */
    case 0xd9: case 0xda: case 0xdb: return GW_MP_STR;
    case 0xdc: case 0xdd: return GW_MP_ARRAY;
    case 0xde: case 0xdf: return GW_MP_MAP;
    default: return GW_MP_NONE;
    }
}

static inline int gw_mp_need(struct gw_mp_reader *r, size_t n) {
    if ((size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return -1;
    }
    return 0;
}

static inline int gw_mp_read_array(struct gw_mp_reader *r, uint32_t *n) {
    if (gw_mp_need(r, 1)) return -1;
    uint8_t b = *r->p;
    if (b >= 0x90 && b <= 0x9f) { *n = b & 0x0f; r->p += 1; return 0; }
    if (b == 0xdc) { if (gw_mp_need(r, 3)) return -1; *n = gw_mp_be16(r->p + 1); r->p += 3; return 0; }
    if (b == 0xdd) { if (gw_mp_need(r, 5)) return -1; *n = gw_mp_be32(r->p + 1); r->p += 5; return 0; }
    return -1;
}

static inline int gw_mp_read_str(struct gw_mp_reader *r, const char **s, uint32_t *len) {
    if (gw_mp_need(r, 1)) return -1;
    uint8_t b = *r->p;
    uint32_t n, h;
    if (b >= 0xa0 && b <= 0xbf) { n = b & 0x1f; h = 1; }
    else if (b == 0xd9) { if (gw_mp_need(r, 2)) return -1; n = r->p[1]; h = 2; }
    else if (b == 0xda) { if (gw_mp_need(r, 3)) return -1; n = gw_mp_be16(r->p + 1); h = 3; }
    else if (b == 0xdb) { if (gw_mp_need(r, 5)) return -1; n = gw_mp_be32(r->p + 1); h = 5; }
    else return -1;
    if (gw_mp_need(r, (size_t)h + n)) return -1;
    *s = (const char *)r->p + h;
    *len = n;
    r->p += h + n;
    return 0;
}

/* Any msgpack integer (not bool, not float). *neg = 1 when the value is negative. */
static inline int gw_mp_read_int(struct gw_mp_reader *r, uint64_t *u, int *neg) {
    if (gw_mp_need(r, 1)) return -1;
    uint8_t b = *r->p;
    *neg = 0;
    if (b <= 0x7f) { *u = b; r->p += 1; return 0; }
    if (b >= 0xe0) { *u = (uint64_t)(int64_t)(int8_t)b; *neg = 1; r->p += 1; return 0; }
    size_t w;
    switch (b) {
    case 0xcc: case 0xd0: w = 1; break;
    case 0xcd: case 0xd1: w = 2; break;
    case 0xce: case 0xd2: w = 4; break;
    case 0xcf: case 0xd3: w = 8; break;
    default: return -1;
    }
    if (gw_mp_need(r, 1 + w)) return -1;
    const uint8_t *q = r->p + 1;
    uint64_t v = w == 1 ? q[0] : w == 2 ? gw_mp_be16(q) : w == 4 ? gw_mp_be32(q) : gw_mp_be64(q);
    if (b >= 0xd0) { /* signed: sign-extend */
        int64_t s = w == 1 ? (int8_t)v : w == 2 ? (int16_t)v : w == 4 ? (int32_t)v : (int64_t)v;
        *neg = s < 0;
        v = (uint64_t)s;
    }
    *u = v;
    r->p += 1 + w;
    return 0;
}

/* Skip one value of any kind without checking UTF-8 (as msgspec skips ignored fields).
 * Iterative: `depth_cap` bounds nesting. Returns -1 and sets bad on malformed input. */
int gw_mp_skip(struct gw_mp_reader *r, uint32_t depth_cap);
/* Like gw_mp_skip but also validates every str as UTF-8 (a full well-formedness check). */
int gw_mp_skip_checked(struct gw_mp_reader *r, uint32_t depth_cap);
/* Code points in s[0..len) if it is valid UTF-8, else -1. */
long gw_mp_utf8_chars(const char *s, size_t len);

/* -- writer ---------------------------------------------------------------------------- */

struct gw_mp_writer {
    uint8_t *buf;
    size_t len;
    size_t cap;
    int oom;
};

int gw_mp_grow(struct gw_mp_writer *w, size_t need);

static inline int gw_mp_reserve(struct gw_mp_writer *w, size_t n) {
    if (w->cap - w->len >= n) return 0;
    return gw_mp_grow(w, n);
}

static inline void gw_mp_put_array(struct gw_mp_writer *w, uint32_t n) {
    if (gw_mp_reserve(w, 5)) return;
    uint8_t *p = w->buf + w->len;
    if (n < 16) { p[0] = (uint8_t)(0x90 | n); w->len += 1; }
    else if (n < 65536) { p[0] = 0xdc; p[1] = (uint8_t)(n >> 8); p[2] = (uint8_t)n; w->len += 3; }
    else { p[0] = 0xdd; p[1] = (uint8_t)(n >> 24); p[2] = (uint8_t)(n >> 16);
           p[3] = (uint8_t)(n >> 8); p[4] = (uint8_t)n; w->len += 5; }
}

static inline void gw_mp_put_str(struct gw_mp_writer *w, const char *s, size_t n) {
    if (gw_mp_reserve(w, n + 5)) return;
    uint8_t *p = w->buf + w->len;
    if (n < 32) { p[0] = (uint8_t)(0xa0 | n); p += 1; }
    else if (n < 256) { p[0] = 0xd9; p[1] = (uint8_t)n; p += 2; }
    else if (n < 65536) { p[0] = 0xda; p[1] = (uint8_t)(n >> 8); p[2] = (uint8_t)n; p += 3; }
    else { p[0] = 0xdb; p[1] = (uint8_t)(n >> 24); p[2] = (uint8_t)(n >> 16);
           p[3] = (uint8_t)(n >> 8); p[4] = (uint8_t)n; p += 5; }
    memcpy(p, s, n);
    w->len = (size_t)(p - w->buf) + n;
}

static inline void gw_mp_put_nil(struct gw_mp_writer *w) {
    if (gw_mp_reserve(w, 1)) return;
    w->buf[w->len++] = 0xc0;
}

static inline void gw_mp_put_uint(struct gw_mp_writer *w, uint64_t v) {
    if (gw_mp_reserve(w, 9)) return;
    uint8_t *p = w->buf + w->len;
    if (v < 128) { p[0] = (uint8_t)v; w->len += 1; }
    else if (v < 256) { p[0] = 0xcc; p[1] = (uint8_t)v; w->len += 2; }
    else if (v < 65536) { p[0] = 0xcd; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)v; w->len += 3; }
    else if (v <= 0xffffffffu) {
        p[0] = 0xce;
        for (int i = 0; i < 4; i++) p[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        w->len += 5;
    } else {
        p[0] = 0xcf;
        for (int i = 0; i < 8; i++) p[1 + i] = (uint8_t)(v >> (56 - 8 * i));
        w->len += 9;
    }
}

static inline void gw_mp_put_int(struct gw_mp_writer *w, int64_t v) {
    if (v >= 0) { gw_mp_put_uint(w, (uint64_t)v); return; }
    if (gw_mp_reserve(w, 9)) return;
    uint8_t *p = w->buf + w->len;
    if (v >= -32) { p[0] = (uint8_t)(int8_t)v; w->len += 1; }
    else {
        p[0] = 0xd3;
        uint64_t u = (uint64_t)v;
        for (int i = 0; i < 8; i++) p[1 + i] = (uint8_t)(u >> (56 - 8 * i));
        w->len += 9;
    }
}

#endif
