/* Internal: open-addressing hash map from u64 keys to u8 values (or a plain set).
 * Not exported through cffi; shared by gw_scoring.c and gw_trusted.c. */
#ifndef GW_U64MAP_H
#define GW_U64MAP_H

#include <stddef.h>
#include <stdint.h>

struct gw_u64map {
    uint64_t *keys;   /* 0 marks an empty slot; key 0 itself lives in has_zero / zero_val */
    uint8_t *vals;    /* NULL for a set */
    size_t mask;      /* capacity - 1, capacity a power of two */
    size_t count;
    size_t bytes;     /* bytes allocated for keys and vals */
    uint8_t has_zero;
    uint8_t zero_val;
};

static inline uint64_t gw_mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Value stored for key (1 for a set), or 0 when absent. */
static inline int gw_u64map_get(const struct gw_u64map *m, uint64_t key) {
    if (m == NULL || m->keys == NULL) return 0;
    if (key == 0) return m->has_zero ? (m->vals ? m->zero_val : 1) : 0;
    size_t i = (size_t)gw_mix64(key) & m->mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) return m->vals ? m->vals[i] : 1;
        if (k == 0) return 0;
        i = (i + 1) & m->mask;
    }
}

int gw_u64map_init(struct gw_u64map *m, size_t expected, int with_values);
void gw_u64map_destroy(struct gw_u64map *m);
/* Insert or update; the table never grows, so init with an upper bound of keys. */
int gw_u64map_put(struct gw_u64map *m, uint64_t key, uint8_t val);

#endif
