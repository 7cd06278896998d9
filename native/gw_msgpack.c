#include "gw_msgpack.h"

#include <stdlib.h>

long gw_mp_utf8_chars(const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s, *end = p + len;
    long chars = 0;
    while (end - p >= 8) { /* ASCII fast path, 8 bytes at a time */
        uint64_t w;
        memcpy(&w, p, 8);
        if (w & 0x8080808080808080ULL) break;
        p += 8;
        chars += 8;
    }
    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) { p++; chars++; continue; }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
        else return -1;
        if ((size_t)(end - p) <= n) return -1;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return -1;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return -1;
        p += n + 1;
        chars++;
    }
    return chars;
}

/* Skip one value; nesting is tracked with a small explicit stack of remaining counts. */
static int skip(struct gw_mp_reader *r, uint32_t depth_cap, int check_utf8) {
    uint64_t stack[256];
    uint32_t depth = 0; /* levels open; counts beyond 256 levels folded into `deep` */
    uint64_t remaining = 1;
    uint32_t deep = 0;
    for (;;) {
        while (remaining == 0) {
            if (deep) { deep--; continue; } /* folded levels had exactly one pending item */
            if (depth == 0) return 0;
            remaining = stack[--depth];
        }
        remaining--;
        if (gw_mp_need(r, 1)) return -1;
        uint8_t b = *r->p;
        size_t hdr = 1, body = 0;
        uint64_t children = 0;
        int is_str = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        } else if (b <= 0x8f) { children = 2u * (b & 0x0f); }
        else if (b <= 0x9f) { children = b & 0x0f; }
        else if (b <= 0xbf) { body = b & 0x1f; is_str = 1; }
        else {
            switch (b) {
            case 0xcc: case 0xd0: body = 1; break;
            case 0xcd: case 0xd1: body = 2; break;
            case 0xce: case 0xd2: case 0xca: body = 4; break;
            case 0xcf: case 0xd3: case 0xcb: body = 8; break;
            case 0xd4: body = 2; break;
            case 0xd5: body = 3; break;
            case 0xd6: body = 5; break;
            case 0xd7: body = 9; break;
            case 0xd8: body = 17; break;
            case 0xc4: case 0xd9: hdr = 2; break;
            case 0xc5: case 0xda: hdr = 3; break;
            case 0xc6: case 0xdb: hdr = 5; break;
            case 0xc7: hdr = 3; break;
            case 0xc8: hdr = 4; break;
            case 0xc9: hdr = 6; break;
            case 0xdc: case 0xde: hdr = 3; break;
            case 0xdd: case 0xdf: hdr = 5; break;
            default: r->bad = 1; return -1; /* 0xc1 never used */
            }
            if (gw_mp_need(r, hdr)) return -1;
            const uint8_t *q = r->p + 1;
            switch (b) {
            case 0xc4: case 0xd9: body = q[0]; is_str = b == 0xd9; break;
            case 0xc5: case 0xda: body = gw_mp_be16(q); is_str = b == 0xda; break;
            case 0xc6: case 0xdb: body = gw_mp_be32(q); is_str = b == 0xdb; break;
            case 0xc7: body = (size_t)q[0] + 1; break;
            case 0xc8: body = (size_t)gw_mp_be16(q) + 1; break;
            case 0xc9: body = (size_t)gw_mp_be32(q) + 1; break;
            case 0xdc: children = gw_mp_be16(q); break;
            case 0xdd: children = gw_mp_be32(q); break;
            case 0xde: children = 2u * gw_mp_be16(q); break;
            case 0xdf: children = 2u * (uint64_t)gw_mp_be32(q); break;
            default: break;
            }
        }
        if (gw_mp_need(r, hdr + body)) return -1;
        if (is_str && check_utf8 && gw_mp_utf8_chars((const char *)r->p + hdr, body) < 0) {
            r->bad = 1;
            return -1;
        }
        r->p += hdr + body;
        if (children) {
            if (depth + deep + 1 > depth_cap) { r->bad = 1; return -1; }
            if (depth < 256) stack[depth++] = remaining;
            else if (remaining == 0) deep++;
            else { r->bad = 1; return -1; } /* deep and wide at once: refuse */
            remaining = children;
        }
    }
}

int gw_mp_skip(struct gw_mp_reader *r, uint32_t depth_cap) { return skip(r, depth_cap, 0); }
int gw_mp_skip_checked(struct gw_mp_reader *r, uint32_t depth_cap) {
    return skip(r, depth_cap, 1);
}

int gw_mp_grow(struct gw_mp_writer *w, size_t need) {
    if (w->oom) return -1;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap - w->len < need) cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (!b) { w->oom = 1; return -1; }
    w->buf = b;
    w->cap = cap;
    return 0;
}
