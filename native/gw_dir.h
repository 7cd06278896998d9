/* Account directory of the regional fabric: the home region of every account.
 *
 * A directory is built once from a spec (Python validates the configuration and builds the
 * arrays) and never changes afterwards, so any thread may look accounts up, in particular
 * the native ingest thread, which sends a transaction whose account is homed elsewhere to
 * the control plane instead of scoring it. Three modes, each giving the same answer on
 * every node that holds the same configuration (gateway/fabric/_directory.py is the
 * reference implementation, checked against this one by a differential test):
 *
 * - GW_DIR_TABLE:  an explicit account -> region table, then `default_region`;
 * - GW_DIR_RANGES: sorted, non-overlapping inclusive account ranges, then `default_region`;
 * - GW_DIR_HASH:   jump consistent hash (Lamping & Veach) of gw_mix64(account) over the
 *                  regions in configuration order.
 *
 * Region indexes are 0 .. n_regions-1 (at most GW_DIR_MAX_REGIONS); -1 means the account
 * has no home region (table or ranges without a default).
 */
#ifndef GW_DIR_H
#define GW_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "gw_core.h"
#include "gw_scoring.h"

#define GW_DIR_TABLE 1
#define GW_DIR_RANGES 2
#define GW_DIR_HASH 3
#define GW_DIR_MAX_REGIONS 64

struct gw_dir_spec {
    uint32_t mode;
    uint32_t n_regions;
    int32_t default_region;          /* -1: none */
    const uint64_t *table_accounts;  /* GW_DIR_TABLE: n_table distinct accounts */
    const uint8_t *table_regions;
    size_t n_table;
    const uint64_t *range_first;     /* GW_DIR_RANGES: sorted by first, non-overlapping */
    const uint64_t *range_last;      /* inclusive */
    const uint8_t *range_regions;
    size_t n_ranges;
};

struct gw_dir;

int gw_dir_new(const struct gw_dir_spec *spec, struct gw_dir **out);
void gw_dir_free(struct gw_dir *d);
/* Home region index of `account`, or -1 when it has none. */
int gw_dir_home(const struct gw_dir *d, uint64_t account);
/* gw_dir_home of n accounts into out[0..n). */
int gw_dir_homes(const struct gw_dir *d, const uint64_t *accounts, size_t n, int16_t *out);
/* Jump consistent hash of `key` into [0, n) (exposed for the reference test). */
int32_t gw_dir_jump(uint64_t key, int32_t n);

/* A new trusted table: the entries of `base` (may be NULL) whose account is homed at
 * `local_region` (all of them when `dir` is NULL), then `changes` applied in order (level 0
 * removes the account). `*dropped` gets the number of base entries left out as foreign. */
int gw_trusted_derive(const struct gw_trusted *base, const struct gw_dir *dir,
                      int local_region, const uint64_t *accounts, const uint8_t *levels,
                      size_t n, struct gw_trusted **out, uint64_t *dropped);

/* Up to `cap` entries of a trusted table into accounts/levels (in table order); returns
 * how many were written. */
size_t gw_trusted_entries(const struct gw_trusted *t, uint64_t *accounts, uint8_t *levels,
                          size_t cap);

#endif
