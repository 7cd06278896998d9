/* Account directory of the regional fabric: see gw_dir.h. */
#include "gw_dir.h"

#include <stdlib.h>
#include <string.h>

#include "gw_u64map.h"

struct gw_dir {
    uint32_t mode;
    uint32_t n_regions;
    int32_t default_region;
    struct gw_u64map table; /* account -> region index + 1 */
    size_t n_ranges;
    uint64_t *first;
    uint64_t *last;
    uint8_t *region;
};

const struct gw_u64map *gw_trusted_map(const struct gw_trusted *t);

int32_t gw_dir_jump(uint64_t key, int32_t n) {
    int64_t b = -1, j = 0;
    while (j < n) {
        b = j;
        key = key * 2862933555777941757ULL + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1)));
    }
    return (int32_t)b;
}

void gw_dir_free(struct gw_dir *d) {
    if (d == NULL) return;
    gw_u64map_destroy(&d->table);
    free(d->first);
    free(d->last);
    free(d->region);
    free(d);
}

int gw_dir_new(const struct gw_dir_spec *s, struct gw_dir **out) {
    if (s == NULL || out == NULL) return GW_ERR_INVALID;
    if (s->n_regions == 0 || s->n_regions > GW_DIR_MAX_REGIONS) return GW_ERR_INVALID;
    if (s->default_region < -1 || s->default_region >= (int32_t)s->n_regions)
        return GW_ERR_INVALID;
    if (s->mode != GW_DIR_TABLE && s->mode != GW_DIR_RANGES && s->mode != GW_DIR_HASH)
        return GW_ERR_INVALID;
    struct gw_dir *d = calloc(1, sizeof *d);
    if (d == NULL) return GW_ERR_NOMEM;
    d->mode = s->mode;
    d->n_regions = s->n_regions;
    d->default_region = s->default_region;
    int st = GW_OK;
    if (s->mode == GW_DIR_TABLE) {
        if (s->n_table && (s->table_accounts == NULL || s->table_regions == NULL)) {
            st = GW_ERR_INVALID;
            goto fail;
        }
        if ((st = gw_u64map_init(&d->table, s->n_table, 1)) != GW_OK) goto fail;
        for (size_t i = 0; i < s->n_table; i++) {
            if (s->table_regions[i] >= s->n_regions) { st = GW_ERR_INVALID; goto fail; }
            if (gw_u64map_get(&d->table, s->table_accounts[i])) { st = GW_ERR_INVALID; goto fail; }
            if ((st = gw_u64map_put(&d->table, s->table_accounts[i],
                                    (uint8_t)(s->table_regions[i] + 1))) != GW_OK)
                goto fail;
        }
    } else if (s->mode == GW_DIR_RANGES) {
        size_t n = s->n_ranges;
        if (n && (s->range_first == NULL || s->range_last == NULL || s->range_regions == NULL)) {
            st = GW_ERR_INVALID;
            goto fail;
        }
        d->first = malloc((n ? n : 1) * sizeof *d->first);
        d->last = malloc((n ? n : 1) * sizeof *d->last);
        d->region = malloc(n ? n : 1);
        if (!d->first || !d->last || !d->region) { st = GW_ERR_NOMEM; goto fail; }
        for (size_t i = 0; i < n; i++) {
            if (s->range_first[i] > s->range_last[i] || s->range_regions[i] >= s->n_regions ||
                (i && s->range_first[i] <= s->range_last[i - 1])) {
                st = GW_ERR_INVALID;
                goto fail;
            }
            d->first[i] = s->range_first[i];
            d->last[i] = s->range_last[i];
            d->region[i] = s->range_regions[i];
        }
        d->n_ranges = n;
    }
    *out = d;
    return GW_OK;
fail:
    gw_dir_free(d);
    return st;
}

int gw_dir_home(const struct gw_dir *d, uint64_t account) {
    switch (d->mode) {
    case GW_DIR_HASH:
        return gw_dir_jump(gw_mix64(account), (int32_t)d->n_regions);
    case GW_DIR_TABLE: {
        int v = gw_u64map_get(&d->table, account);
        return v ? v - 1 : d->default_region;
    }
    default: { /* ranges: the last range starting at or below the account */
        size_t lo = 0, hi = d->n_ranges;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (d->first[mid] <= account) lo = mid + 1;
            else hi = mid;
        }
        if (lo && account <= d->last[lo - 1]) return d->region[lo - 1];
        return d->default_region;
    }
    }
}

int gw_dir_homes(const struct gw_dir *d, const uint64_t *accounts, size_t n, int16_t *out) {
    if (d == NULL || (n && (accounts == NULL || out == NULL))) return GW_ERR_INVALID;
    for (size_t i = 0; i < n; i++) out[i] = (int16_t)gw_dir_home(d, accounts[i]);
    return GW_OK;
}

int gw_trusted_derive(const struct gw_trusted *base, const struct gw_dir *dir,
                      int local_region, const uint64_t *accounts, const uint8_t *levels,
                      size_t n, struct gw_trusted **out, uint64_t *dropped) {
    if (out == NULL || (n && (accounts == NULL || levels == NULL))) return GW_ERR_INVALID;
    const struct gw_u64map *m = gw_trusted_map(base);
    size_t cap = (m ? m->count : 0) + n;
    uint64_t *acc = malloc((cap ? cap : 1) * sizeof *acc);
    uint8_t *lvl = malloc(cap ? cap : 1);
    struct gw_u64map changed, seen;
    memset(&changed, 0, sizeof changed);
    memset(&seen, 0, sizeof seen);
    int st = GW_OK;
    uint64_t drop = 0;
    size_t k = 0;
    if (acc == NULL || lvl == NULL) { st = GW_ERR_NOMEM; goto out; }
    if ((st = gw_u64map_init(&changed, n, 0)) != GW_OK) goto out;
    if ((st = gw_u64map_init(&seen, n, 0)) != GW_OK) goto out;
    for (size_t i = 0; i < n; i++)
        if ((st = gw_u64map_put(&changed, accounts[i], 1)) != GW_OK) goto out;
    if (m != NULL) {
        if (m->has_zero) {
            if (dir && gw_dir_home(dir, 0) != local_region) drop++;
            else if (!gw_u64map_get(&changed, 0)) { acc[k] = 0; lvl[k++] = m->zero_val; }
        }
        for (size_t i = 0; m->keys && i <= m->mask; i++) {
            uint64_t a = m->keys[i];
            if (a == 0) continue;
            if (dir && gw_dir_home(dir, a) != local_region) { drop++; continue; }
            if (gw_u64map_get(&changed, a)) continue;
            acc[k] = a;
            lvl[k++] = m->vals[i];
        }
    }
    for (size_t i = n; i-- > 0;) { /* the last change of an account wins */
        if (gw_u64map_get(&seen, accounts[i])) continue;
        if ((st = gw_u64map_put(&seen, accounts[i], 1)) != GW_OK) goto out;
        if (levels[i]) { acc[k] = accounts[i]; lvl[k++] = levels[i]; }
    }
    st = gw_trusted_from_arrays(acc, lvl, k, out);
out:
    if (dropped) *dropped = drop;
    gw_u64map_destroy(&changed);
    gw_u64map_destroy(&seen);
    free(acc);
    free(lvl);
    return st;
}

size_t gw_trusted_entries(const struct gw_trusted *t, uint64_t *accounts, uint8_t *levels,
                          size_t cap) {
    const struct gw_u64map *m = gw_trusted_map(t);
    size_t k = 0;
    if (m == NULL || accounts == NULL || levels == NULL) return 0;
    if (m->has_zero && k < cap) { accounts[k] = 0; levels[k++] = m->zero_val; }
    for (size_t i = 0; m->keys && i <= m->mask && k < cap; i++) {
        if (m->keys[i] == 0) continue;
        accounts[k] = m->keys[i];
        levels[k++] = m->vals[i];
    }
    return k;
}
