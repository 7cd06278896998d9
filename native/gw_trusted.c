/* Trusted accounts (account -> tier level) and the u64 hash map behind them and the
 * block lists. The trusted table is built once (from a file or arrays) and never mutated
 * afterwards, so any number of threads may look it up. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "gw_scoring.h"
#include "gw_u64map.h"

#define HUGE_ALIGN (2u << 20)

static void *big_alloc(size_t bytes) {
    if (bytes >= HUGE_ALIGN) {
        size_t rounded = (bytes + HUGE_ALIGN - 1) & ~(size_t)(HUGE_ALIGN - 1);
        void *p = aligned_alloc(HUGE_ALIGN, rounded);
        if (p == NULL) return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, rounded, MADV_HUGEPAGE);
#endif
        memset(p, 0, rounded);
        return p;
    }
    return calloc(1, bytes ? bytes : 1);
}

int gw_u64map_init(struct gw_u64map *m, size_t expected, int with_values) {
    memset(m, 0, sizeof *m);
    if (expected > ((size_t)1 << 34)) return GW_ERR_OVERFLOW;
    size_t cap = 16;
    while (cap < expected + expected / 3 + 1) cap <<= 1;  /* load factor <= 0.75 */
    m->keys = big_alloc(cap * sizeof(uint64_t));
    if (m->keys == NULL) return GW_ERR_NOMEM;
    m->bytes = cap * sizeof(uint64_t);
    if (with_values) {
        m->vals = big_alloc(cap);
        if (m->vals == NULL) {
            free(m->keys);
            m->keys = NULL;
            return GW_ERR_NOMEM;
        }
        m->bytes += cap;
    }
    m->mask = cap - 1;
    return GW_OK;
}

void gw_u64map_destroy(struct gw_u64map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

int gw_u64map_put(struct gw_u64map *m, uint64_t key, uint8_t val) {
    if (key == 0) {
        if (!m->has_zero) m->count++;
        m->has_zero = 1;
        m->zero_val = val;
        return GW_OK;
    }
    size_t i = (size_t)gw_mix64(key) & m->mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) break;
        if (k == 0) {
            if ((m->count + 1) * 4 > (m->mask + 1) * 3) return GW_ERR_OVERFLOW;
            m->keys[i] = key;
            m->count++;
            break;
        }
        i = (i + 1) & m->mask;
    }
    if (m->vals) m->vals[i] = val;
    return GW_OK;
}

/* -- trusted table ------------------------------------------------------------------ */

struct gw_trusted {
    _Atomic int refs;
    struct gw_u64map map;
};

static int trusted_new(size_t expected, struct gw_trusted **out) {
    struct gw_trusted *t = calloc(1, sizeof *t);
    if (t == NULL) return GW_ERR_NOMEM;
    int st = gw_u64map_init(&t->map, expected, 1);
    if (st != GW_OK) {
        free(t);
        return st;
    }
    atomic_init(&t->refs, 1);
    *out = t;
    return GW_OK;
}

void gw_trusted_release(struct gw_trusted *t) {
    if (t == NULL) return;
    if (atomic_fetch_sub(&t->refs, 1) == 1) {
        gw_u64map_destroy(&t->map);
        free(t);
    }
}

void gw_trusted_retain(struct gw_trusted *t) { atomic_fetch_add(&t->refs, 1); }

size_t gw_trusted_count(const struct gw_trusted *t) { return t ? t->map.count : 0; }
size_t gw_trusted_memory(const struct gw_trusted *t) {
    return t ? t->map.bytes + sizeof *t : 0;
}
int gw_trusted_level(const struct gw_trusted *t, uint64_t account) {
    return t ? gw_u64map_get(&t->map, account) : 0;
}
const struct gw_u64map *gw_trusted_map(const struct gw_trusted *t) { return t ? &t->map : NULL; }

int gw_trusted_from_arrays(const uint64_t *accounts, const uint8_t *levels, size_t n,
                           struct gw_trusted **out) {
    if (out == NULL || (n && (accounts == NULL || levels == NULL))) return GW_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (levels[i] == 0) return GW_ERR_INVALID;
    struct gw_trusted *t;
    int st = trusted_new(n, &t);
    if (st != GW_OK) return st;
    for (size_t i = 0; i < n; i++) {
        st = gw_u64map_put(&t->map, accounts[i], levels[i]);
        if (st != GW_OK) {
            gw_trusted_release(t);
            return st;
        }
    }
    *out = t;
    return GW_OK;
}

/* File format: one `account,level` per line (decimal; separator ',', ';', space or tab).
 * Blank lines, comment lines (first non-blank character '#') and a header on line 1 are
 * skipped; any other line that is not `account,level` is an error. Lines longer than 128
 * bytes are an error. */
#define CHUNK (1u << 20)
#define MAX_LINE 128

static int parse_line(const char *p, const char *end, uint64_t lineno, uint64_t *acct,
                      uint8_t *lvl) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    if (p == end || *p == '#') return 0;                      /* blank or comment */
    if (*p < '0' || *p > '9') return lineno == 1 ? 0 : -1;    /* header, else an error */
    uint64_t a = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        uint64_t d = (uint64_t)(*p - '0');
        if (a > (UINT64_MAX - d) / 10) return -1;
        a = a * 10 + d;
        p++;
        digits++;
    }
    if (p == end || (*p != ',' && *p != ';' && *p != ' ' && *p != '\t')) return -1;
    while (p < end && (*p == ',' || *p == ';' || *p == ' ' || *p == '\t')) p++;
    unsigned v = 0;
    int vd = 0;
    while (p < end && *p >= '0' && *p <= '9' && vd < 4) {
        v = v * 10 + (unsigned)(*p - '0');
        p++;
        vd++;
    }
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    if (p != end || vd == 0 || v == 0 || v > 255 || digits == 0) return -1;
    *acct = a;
    *lvl = (uint8_t)v;
    return 1;
}

/* Calls fn for every line; lines are handed without the newline. */
static int for_each_line(int fd, int (*fn)(void *, const char *, const char *, uint64_t),
                         void *ctx,
                         uint64_t *lineno) {
    char *buf = malloc(CHUNK + MAX_LINE + 1);
    if (buf == NULL) return GW_ERR_NOMEM;
    size_t carry = 0;
    int st = GW_OK;
    *lineno = 0;
    for (;;) {
        ssize_t r = read(fd, buf + carry, CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            st = GW_ERR_SYSTEM;
            break;
        }
        size_t have = carry + (size_t)r;
        char *p = buf, *end = buf + have;
        for (;;) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (nl == NULL) break;
            ++*lineno;
            if (nl - p > MAX_LINE) {
                st = GW_ERR_INVALID;
                goto out;
            }
            st = fn(ctx, p, nl, *lineno);
            if (st != GW_OK) goto out;
            p = nl + 1;
        }
        carry = (size_t)(end - p);
        if (r == 0) {
            if (carry) {
                ++*lineno;
                if (carry > MAX_LINE) {
                    st = GW_ERR_INVALID;
                    goto out;
                }
                st = fn(ctx, p, end, *lineno);
            }
            break;
        }
        if (carry > MAX_LINE) {
            ++*lineno;
            st = GW_ERR_INVALID;
            break;
        }
        memmove(buf, p, carry);
    }
out:
    free(buf);
    return st;
}

static int count_fn(void *ctx, const char *p, const char *e, uint64_t lineno) {
    uint64_t a;
    uint8_t l;
    int r = parse_line(p, e, lineno, &a, &l);
    if (r < 0) return GW_ERR_INVALID;
    *(size_t *)ctx += (size_t)r;
    return GW_OK;
}

static int insert_fn(void *ctx, const char *p, const char *e, uint64_t lineno) {
    uint64_t a;
    uint8_t l;
    int r = parse_line(p, e, lineno, &a, &l);
    if (r < 0) return GW_ERR_INVALID;
    if (r == 0) return GW_OK;
    return gw_u64map_put(&((struct gw_trusted *)ctx)->map, a, l);
}

int gw_trusted_load_file(const char *path, struct gw_trusted **out, uint64_t *bad_line) {
    if (path == NULL || out == NULL) return GW_ERR_INVALID;
    uint64_t line = 0;
    if (bad_line) *bad_line = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? GW_ERR_NOT_FOUND : GW_ERR_SYSTEM;
    size_t n = 0;
    struct gw_trusted *t = NULL;
    int st = for_each_line(fd, count_fn, &n, &line);
    if (st == GW_OK && lseek(fd, 0, SEEK_SET) != 0) st = GW_ERR_SYSTEM;
    if (st == GW_OK) st = trusted_new(n, &t);
    if (st == GW_OK) st = for_each_line(fd, insert_fn, t, &line);
    close(fd);
    if (st != GW_OK) {
        if (bad_line) *bad_line = line;
        gw_trusted_release(t);
        return st;
    }
    *out = t;
    return GW_OK;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int gw_bench_trusted_lookup(const struct gw_trusted *t, const uint64_t *accounts, size_t n,
                            uint32_t passes, uint64_t *elapsed_ns, uint64_t *found) {
    if (t == NULL || accounts == NULL || elapsed_ns == NULL || found == NULL)
        return GW_ERR_INVALID;
    uint64_t hits = 0;
    uint64_t t0 = now_ns();
    for (uint32_t p = 0; p < passes; p++)
        for (size_t i = 0; i < n; i++) hits += gw_u64map_get(&t->map, accounts[i]) != 0;
    *elapsed_ns = now_ns() - t0;
    *found = hits;
    return GW_OK;
}
