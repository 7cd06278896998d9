/* Native risk-scoring engine: compiled rule sets, account state, trusted accounts.
 *
 * Threading contract
 * ------------------
 * - Scoring (gw_engine_score, gw_engine_score_batch) reads and updates per-account state
 *   (velocity, baseline, known devices, quota). Account state is SINGLE-WRITER: at most one
 *   thread may score on an engine at a time (the native ingest thread, or Python callers
 *   serialised by the owner).
 * - Reading account state (gw_engine_profile) belongs to the writer too: the scorer grows
 *   the account table with realloc and updates entries in place without any lock, so a
 *   read from another thread could see a half-written entry or memory already freed.
 * - Everything else may be called from any thread while a scorer runs: installing the live
 *   or shadow rule set, the trusted table, block lists, freezing / unfreezing accounts and
 *   reading counters. Each is an atomic pointer swap; a scorer sees either the whole old or
 *   the whole new object. Replaced objects are retired and freed only after a moment when
 *   no scorer is inside the engine (gw_engine_reclaim; also run after every swap).
 * - Rule sets and trusted tables are reference counted: the creator holds one reference
 *   and the engine takes its own while the object is installed.
 *
 * All lengths are bounded (GW_MAX_*); every entry point returns an enum gw_status.
 */
#ifndef GW_SCORING_H
#define GW_SCORING_H

#include <stddef.h>
#include <stdint.h>

#include "gw_core.h"

#define GW_MAX_RULES 8000        /* rules + guards in one rule set */
#define GW_MAX_CONDS_PER_RULE 16
#define GW_MAX_SET_VALUES 65536  /* values of all `in` / `not_in` sets of one rule set */
#define GW_MAX_FIRED 64          /* rule indices reported per decision (score counts all) */
#define GW_MAX_STR 256           /* longest device / ip / city string hashed */
#define GW_KNOWN_DEVICES 4
#define GW_MAX_TIERS 64

enum gw_feature {
    GW_F_AMOUNT = 0, GW_F_CURRENCY, GW_F_CHANNEL, GW_F_MCC, GW_F_COUNTRY, GW_F_CITY,
    GW_F_DEVICE, GW_F_IP, GW_F_ACCOUNT, GW_F_COUNTERPARTY, GW_F_HOUR, GW_F_WEEKDAY,
    GW_F_BASELINE, GW_F_AMOUNT_TO_BASELINE, GW_F_NEW_DEVICE, GW_F_KNOWN_DEVICES,
    GW_F_COUNTRY_CHANGED, GW_F_CITY_CHANGED,
    GW_F_VEL_1M_COUNT, GW_F_VEL_1M_SUM, GW_F_VEL_1H_COUNT, GW_F_VEL_1H_SUM,
    GW_F_VEL_24H_COUNT, GW_F_VEL_24H_SUM, GW_F_TX_COUNT,
    GW_F_BL_ACCOUNT, GW_F_BL_DEVICE, GW_F_BL_COUNTERPARTY, GW_F_BL_IP,
    GW_F_TRUSTED, GW_F_TIER, GW_F_QUOTA_AMOUNT, GW_F_QUOTA_COUNT,
    GW_NFEAT
};

enum gw_op { GW_OP_EQ = 0, GW_OP_NE, GW_OP_LT, GW_OP_LE, GW_OP_GT, GW_OP_GE, GW_OP_IN,
             GW_OP_NOT_IN, GW_NOPS };

/* Action hints of rules: a step-up method, or a floor on the outcome. */
enum gw_action { GW_ACT_NONE = 0, GW_ACT_FACE, GW_ACT_SMS_DOWN, GW_ACT_SMS_UP,
                 GW_ACT_OLD_DEVICE, GW_ACT_BLOCK, GW_ACT_FREEZE };
enum gw_outcome { GW_ALLOW = 0, GW_STEP_UP, GW_BLOCK, GW_BLOCK_AND_FREEZE };
/* Step-up methods use the action codes 1..4 (GW_ACT_FACE .. GW_ACT_OLD_DEVICE); 0 is none. */
enum gw_path { GW_PATH_FULL = 0, GW_PATH_TRUSTED = 1 };
enum gw_list_kind { GW_LIST_ACCOUNT = 0, GW_LIST_DEVICE, GW_LIST_COUNTERPARTY, GW_LIST_IP,
                    GW_NLISTS };
#define GW_DEC_FROZEN 1u   /* decision flag: the account was frozen, no rule ran */
#define GW_DEC_NOSTATE 2u  /* decision flag: account table full, scored on empty state */

/* One decoded transaction. Strings are hashed with gw_hash_str (0 means empty). */
struct gw_tx {
    uint64_t account;
    uint64_t counterparty;
    int64_t amount;        /* minor units, >= 0 */
    int64_t ts_ms;         /* >= 0 */
    uint64_t device;
    uint64_t ip;
    uint64_t city;
    uint32_t currency;     /* 3 ASCII letters, little-endian packed */
    uint16_t country;      /* 2 ASCII letters, little-endian packed; 0 if unknown */
    uint16_t mcc;
    uint8_t channel;       /* 1..6 in wire order (card, transfer, mobile, web, atm, pos) */
    uint8_t pad[7];
};

struct gw_decision {
    int64_t score;
    uint32_t version;
    uint8_t outcome;       /* enum gw_outcome */
    uint8_t method;        /* enum gw_action 1..4, or 0 */
    uint8_t path;          /* enum gw_path */
    uint8_t flags;         /* GW_DEC_* */
    uint16_t n_fired;      /* entries in fired[] */
    uint16_t n_fired_total;
    uint16_t fired[GW_MAX_FIRED]; /* ascending; rules are 0..n_rules-1, guards follow */
};

/* Rule-set specification handed over by the compiler in gateway/scoring. */
struct gw_cond_spec {
    int64_t value;
    uint32_t set_off;      /* in/not_in: offset into set_values */
    uint16_t set_len;
    uint8_t feature;       /* enum gw_feature */
    uint8_t op;            /* enum gw_op */
};

struct gw_rule_spec {
    uint64_t id_hash;      /* gw_hash_str of the rule id: shadow reports compare id sets */
    int32_t score;
    uint32_t cond_off;
    uint16_t n_conds;
    uint8_t action;        /* enum gw_action */
    uint8_t trusted;       /* 1: member of the trusted subset */
};

struct gw_tier_spec {
    int64_t daily_amount;
    int64_t daily_count;
    uint8_t level;         /* 1..255, as in the trusted-accounts file */
};

struct gw_ruleset_spec {
    uint32_t version;
    uint32_t n_rules;
    const struct gw_rule_spec *rules;
    uint32_t n_guards;
    const struct gw_rule_spec *guards;   /* score and action ignored */
    uint32_t n_conds;
    const struct gw_cond_spec *conds;
    uint32_t n_set_values;
    const int64_t *set_values;
    uint32_t n_tiers;
    const struct gw_tier_spec *tiers;
    int64_t step_up;
    int64_t block;
    int64_t block_and_freeze;
    uint8_t default_method;
};

struct gw_ruleset;
struct gw_trusted;
struct gw_engine;

/* An account's state as gw_engine_profile reports it: the velocity windows summed exactly
 * as the velocity_* features are, relative to a timestamp, and the learned state. */
struct gw_profile {
    int64_t vel_1m_count;
    int64_t vel_1m_sum;
    int64_t vel_1h_count;
    int64_t vel_1h_sum;
    int64_t vel_24h_count;
    int64_t vel_24h_sum;
    int64_t baseline;      /* minor units; 0 before the first accepted payment */
    uint32_t known_devices; /* 0..GW_KNOWN_DEVICES */
    uint32_t tx_count;     /* payments decided on the account (saturates) */
};

struct gw_engine_stats {
    uint64_t scored;
    uint64_t outcome[4];
    uint64_t path[2];
    uint64_t frozen_hits;
    uint64_t nostate;
    uint64_t accounts;
    uint64_t trusted_accounts;
    uint64_t frozen_accounts;
};

struct gw_shadow_stats {
    uint64_t compared;
    uint64_t matrix[4][4];        /* [live outcome][shadow outcome] */
    uint64_t path_differs;
    uint64_t fired_differs;
    int64_t score_diff_sum;       /* shadow - live */
    uint32_t version;             /* shadow rule-set version; 0 when none */
};

uint64_t gw_hash_str(const char *s, size_t len);
/* Hash 3*n strings (device, ip, city of each tx) packed in blob; ends[k] is the end offset
 * of string k. Fills txs[i].device / ip / city. */
int gw_tx_fill_hashes(struct gw_tx *txs, size_t n, const char *blob, size_t blob_len,
                      const uint32_t *ends);

int gw_ruleset_build(const struct gw_ruleset_spec *spec, struct gw_ruleset **out);
void gw_ruleset_release(struct gw_ruleset *rs);

int gw_trusted_load_file(const char *path, struct gw_trusted **out, uint64_t *bad_line);
int gw_trusted_from_arrays(const uint64_t *accounts, const uint8_t *levels, size_t n,
                           struct gw_trusted **out);
void gw_trusted_release(struct gw_trusted *t);
size_t gw_trusted_count(const struct gw_trusted *t);
size_t gw_trusted_memory(const struct gw_trusted *t);
int gw_trusted_level(const struct gw_trusted *t, uint64_t account);

int gw_engine_new(size_t max_accounts, struct gw_engine **out);
void gw_engine_free(struct gw_engine *eng);
int gw_engine_set_rules(struct gw_engine *eng, struct gw_ruleset *rs);
int gw_engine_set_shadow(struct gw_engine *eng, struct gw_ruleset *rs); /* NULL clears */
int gw_engine_set_trusted(struct gw_engine *eng, struct gw_trusted *t); /* NULL clears */
int gw_engine_set_list(struct gw_engine *eng, int kind, const uint64_t *values, size_t n);
int gw_engine_freeze(struct gw_engine *eng, uint64_t account, int frozen);
int gw_engine_is_frozen(struct gw_engine *eng, uint64_t account);
void gw_engine_reclaim(struct gw_engine *eng);
int gw_engine_score(struct gw_engine *eng, const struct gw_tx *tx, struct gw_decision *out);
int gw_engine_score_batch(struct gw_engine *eng, const struct gw_tx *txs, size_t n,
                          struct gw_decision *out);
/* Convenience for bindings: hashes and packs the string fields, then scores. */
int gw_engine_score_fields(struct gw_engine *eng, uint64_t account, uint64_t counterparty,
                           int64_t amount, int64_t ts_ms, const char *device, size_t device_len,
                           const char *ip, size_t ip_len, const char *city, size_t city_len,
                           uint32_t currency, uint16_t country, uint16_t mcc, uint8_t channel,
                           struct gw_decision *out);
/* The state of `account` with the velocity windows taken relative to ts_ms (>= 0), as a
 * transaction at ts_ms would see them. GW_OK: the account has state and *out is filled;
 * GW_ERR_NOT_FOUND: it has none (never scored, frozen before its first payment, or the
 * table was full), *out is zeroed. Account state is single-writer: call this only on the
 * thread that scores on the engine (the native ingest thread, or the owner while it is
 * paused), never concurrently with a scorer; see the threading contract above. */
int gw_engine_profile(struct gw_engine *eng, uint64_t account, int64_t ts_ms,
                      struct gw_profile *out);
int gw_engine_stats(struct gw_engine *eng, struct gw_engine_stats *out);
int gw_engine_shadow_stats(struct gw_engine *eng, struct gw_shadow_stats *out);

/* Native timing loops (clock_gettime), so benchmarks exclude Python call overhead. */
int gw_bench_score(struct gw_engine *eng, const struct gw_tx *txs, size_t n, uint32_t passes,
                   uint32_t batch, int64_t advance_ms, uint64_t *elapsed_ns, uint64_t *paths);
int gw_bench_trusted_lookup(const struct gw_trusted *t, const uint64_t *accounts, size_t n,
                            uint32_t passes, uint64_t *elapsed_ns, uint64_t *found);

#endif
