/* Risk-scoring engine: rule-set compiler, feature computation, evaluation, engine state.
 * See gw_scoring.h for the threading contract and docs/rules.md for the semantics, which
 * gateway/scoring/_reference.py implements again in pure Python as the test oracle. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_scoring.h"
#include "gw_u64map.h"

void gw_trusted_retain(struct gw_trusted *t);
const struct gw_u64map *gw_trusted_map(const struct gw_trusted *t);

#define RELAXED memory_order_relaxed
#define STAT_ADD(c, v) atomic_store_explicit(&(c), atomic_load_explicit(&(c), RELAXED) + (v), RELAXED)

/* -- compiled rule sets --------------------------------------------------------------- */

struct gw_cond {
    int64_t value;
    uint32_t set_off;
    uint16_t set_len;
    uint8_t feat;
    uint8_t op;
};

struct gw_crule {
    uint64_t id_hash;
    int32_t score;
    uint32_t cond_off;
    uint16_t index;      /* rule index reported in gw_decision.fired */
    uint8_t n_conds;
    uint8_t action;
};

struct gw_eqent {
    int64_t value;
    uint32_t off;
    uint32_t len;
    uint8_t feat;
    uint8_t used;
};

struct gw_range { uint32_t off, n; };

struct gw_prog {
    uint64_t feat_mask;  /* features the program reads */
    struct gw_crule *rules;
    uint32_t n_rules;
    struct gw_cond *conds;
    struct gw_eqent *eq;
    size_t eq_mask;
    uint32_t *eq_lists;
    int64_t *thr;
    uint32_t *thr_rule;
    uint32_t *always;
    uint32_t n_always;
    uint64_t eq_filter[GW_NFEAT][4]; /* 256-bit filter of indexed values per feature */
    uint8_t n_eq_feats, n_ge_feats, n_le_feats;
    uint8_t eq_feats[GW_NFEAT], ge_feats[GW_NFEAT], le_feats[GW_NFEAT];
    struct gw_range ge[GW_NFEAT], le[GW_NFEAT];
};

struct shadow_acc {
    _Atomic uint64_t compared;
    _Atomic uint64_t matrix[4][4];
    _Atomic uint64_t path_differs;
    _Atomic uint64_t fired_differs;
    _Atomic int64_t score_diff_sum;
};

struct gw_ruleset {
    _Atomic int refs;
    uint32_t version, n_rules, n_guards, n_tiers;
    int64_t *sets;
    struct gw_prog full, trusted, guards;
    int64_t t_step, t_block, t_freeze;
    uint8_t default_method;
    int16_t tier_of_level[256];
    struct gw_tier_spec tiers[GW_MAX_TIERS];
    struct shadow_acc shadow;
};

static int is_bool_feat(int f) {
    return f == GW_F_NEW_DEVICE || f == GW_F_COUNTRY_CHANGED || f == GW_F_CITY_CHANGED ||
           f == GW_F_BL_ACCOUNT || f == GW_F_BL_DEVICE || f == GW_F_BL_COUNTERPARTY ||
           f == GW_F_BL_IP || f == GW_F_TRUSTED;
}

static int is_lowcard_feat(int f) {
    return f == GW_F_CURRENCY || f == GW_F_CHANNEL || f == GW_F_WEEKDAY || f == GW_F_HOUR ||
           f == GW_F_TIER || f == GW_F_KNOWN_DEVICES;
}

/* How good a condition is as the rule's index anchor; 0: cannot anchor. */
static int anchor_rank(const struct gw_cond_spec *c) {
    switch (c->op) {
    case GW_OP_EQ:
    case GW_OP_IN: {
        int base;
        if (is_bool_feat(c->feature)) base = c->value ? 60 : 10;
        else if (is_lowcard_feat(c->feature)) base = 70;
        else base = 100;
        if (c->op == GW_OP_IN) base -= c->set_len < 40 ? c->set_len : 40;
        return base > 1 ? base : 1;
    }
    case GW_OP_GE: return 40;
    case GW_OP_GT: return c->value == INT64_MAX ? 0 : 40;
    case GW_OP_LE: return 30;
    case GW_OP_LT: return c->value == INT64_MIN ? 0 : 30;
    default: return 0;
    }
}

static void prog_free(struct gw_prog *p) {
    free(p->rules);
    free(p->conds);
    free(p->eq);
    free(p->eq_lists);
    free(p->thr);
    free(p->thr_rule);
    free(p->always);
    memset(p, 0, sizeof *p);
}

struct eq_tuple { int64_t value; uint32_t pos; uint8_t feat; };
struct thr_tuple { int64_t thr; uint32_t pos; uint8_t feat; };

static int cmp_eq(const void *a, const void *b) {
    const struct eq_tuple *x = a, *y = b;
    if (x->feat != y->feat) return x->feat < y->feat ? -1 : 1;
    if (x->value != y->value) return x->value < y->value ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}
static int cmp_thr_asc(const void *a, const void *b) {
    const struct thr_tuple *x = a, *y = b;
    if (x->feat != y->feat) return x->feat < y->feat ? -1 : 1;
    if (x->thr != y->thr) return x->thr < y->thr ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}
static int cmp_thr_desc(const void *a, const void *b) {
    const struct thr_tuple *x = a, *y = b;
    if (x->feat != y->feat) return x->feat < y->feat ? -1 : 1;
    if (x->thr != y->thr) return x->thr > y->thr ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}
static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static inline size_t eq_hash(uint8_t feat, int64_t value) {
    uint64_t h = ((uint64_t)value + (uint64_t)feat * 0x9E3779B97F4A7C15ULL) * 0xD6E8FEB86659FD93ULL;
    return (size_t)(h ^ (h >> 29));
}

/* Compile the rules whose spec indices are listed in `which` into an indexed program. */
static int prog_build(struct gw_prog *p, const struct gw_rule_spec *specs, const uint32_t *which,
                      uint32_t n, uint32_t index_base, const struct gw_cond_spec *conds,
                      const int64_t *sets) {
    memset(p, 0, sizeof *p);
    int st = GW_ERR_NOMEM;
    size_t n_conds = 0, n_eq = 0, n_ge = 0, n_le = 0;
    for (uint32_t i = 0; i < n; i++) n_conds += specs[which[i]].n_conds;
    p->rules = calloc(n ? n : 1, sizeof *p->rules);
    p->conds = calloc(n_conds ? n_conds : 1, sizeof *p->conds);
    p->always = calloc(n ? n : 1, sizeof *p->always);
    uint8_t *kind = calloc(n ? n : 1, 1); /* 0 always, 1 eq, 2 ge, 3 le */
    struct eq_tuple *eqt = NULL;
    struct thr_tuple *get = NULL, *let = NULL;
    if (!p->rules || !p->conds || !p->always || !kind) goto fail;
    p->n_rules = n;
    size_t co = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct gw_rule_spec *r = &specs[which[i]];
        const struct gw_cond_spec *rc = conds + r->cond_off;
        int best = -1, best_rank = 0;
        for (uint16_t j = 0; j < r->n_conds; j++) {
            p->feat_mask |= 1ull << rc[j].feature;
            int rank = anchor_rank(&rc[j]);
            if (rank > best_rank) {
                best_rank = rank;
                best = j;
            }
        }
        struct gw_crule *cr = &p->rules[i];
        cr->score = r->score;
        cr->id_hash = r->id_hash;
        cr->action = r->action;
        cr->index = (uint16_t)(index_base + which[i]);
        cr->n_conds = (uint8_t)r->n_conds;
        cr->cond_off = (uint32_t)co;
        if (best >= 0) {
            const struct gw_cond_spec *a = &rc[best];
            p->conds[co++] = (struct gw_cond){a->value, a->set_off, a->set_len, a->feature, a->op};
        }
        for (uint16_t j = 0; j < r->n_conds; j++) {
            if ((int)j == best) continue;
            const struct gw_cond_spec *c = &rc[j];
            p->conds[co++] = (struct gw_cond){c->value, c->set_off, c->set_len, c->feature, c->op};
        }
        if (best < 0) {
            p->always[p->n_always++] = i;
            continue;
        }
        switch (rc[best].op) {
        case GW_OP_EQ: kind[i] = 1; n_eq += 1; break;
        case GW_OP_IN: kind[i] = 1; n_eq += rc[best].set_len; break;
        case GW_OP_GE: case GW_OP_GT: kind[i] = 2; n_ge++; break;
        default: kind[i] = 3; n_le++; break;
        }
    }
    eqt = calloc(n_eq ? n_eq : 1, sizeof *eqt);
    get = calloc(n_ge ? n_ge : 1, sizeof *get);
    let = calloc(n_le ? n_le : 1, sizeof *let);
    if (!eqt || !get || !let) goto fail;
    size_t ie = 0, ig = 0, il = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!kind[i]) continue;
        const struct gw_cond *a = &p->conds[p->rules[i].cond_off];
        if (kind[i] == 1) {
            if (a->op == GW_OP_EQ) eqt[ie++] = (struct eq_tuple){a->value, i, a->feat};
            else
                for (uint16_t k = 0; k < a->set_len; k++)
                    eqt[ie++] = (struct eq_tuple){sets[a->set_off + k], i, a->feat};
        } else if (kind[i] == 2) {
            get[ig++] = (struct thr_tuple){a->op == GW_OP_GT ? a->value + 1 : a->value, i, a->feat};
        } else {
            let[il++] = (struct thr_tuple){a->op == GW_OP_LT ? a->value - 1 : a->value, i, a->feat};
        }
    }
    qsort(eqt, ie, sizeof *eqt, cmp_eq);
    qsort(get, ig, sizeof *get, cmp_thr_asc);
    qsort(let, il, sizeof *let, cmp_thr_desc);
    /* eq index: distinct (feat, value) -> list of rule positions (duplicates removed) */
    size_t distinct = 0;
    for (size_t i = 0; i < ie; i++)
        if (i == 0 || eqt[i].feat != eqt[i - 1].feat || eqt[i].value != eqt[i - 1].value)
            distinct++;
    size_t cap = 8;
    while (cap < distinct * 2) cap <<= 1;
    p->eq = calloc(cap, sizeof *p->eq);
    p->eq_lists = calloc(ie ? ie : 1, sizeof *p->eq_lists);
    p->thr = calloc(ig + il + 1, sizeof *p->thr);
    p->thr_rule = calloc(ig + il + 1, sizeof *p->thr_rule);
    if (!p->eq || !p->eq_lists || !p->thr || !p->thr_rule) goto fail;
    p->eq_mask = cap - 1;
    uint8_t seen_feat[GW_NFEAT] = {0};
    size_t lo = 0;
    for (size_t i = 0; i < ie;) {
        size_t j = i;
        struct gw_eqent e = {eqt[i].value, (uint32_t)lo, 0, eqt[i].feat, 1};
        while (j < ie && eqt[j].feat == e.feat && eqt[j].value == e.value) {
            if (j == i || eqt[j].pos != eqt[j - 1].pos) p->eq_lists[lo++] = eqt[j].pos;
            j++;
        }
        e.len = (uint32_t)(lo - e.off);
        size_t hv = eq_hash(e.feat, e.value);
        p->eq_filter[e.feat][(hv >> 62) & 3] |= 1ull << ((hv >> 56) & 63);
        size_t h = hv & p->eq_mask;
        while (p->eq[h].used) h = (h + 1) & p->eq_mask;
        p->eq[h] = e;
        if (!seen_feat[e.feat]) {
            seen_feat[e.feat] = 1;
            p->eq_feats[p->n_eq_feats++] = e.feat;
        }
        i = j;
    }
    size_t to = 0;
    for (size_t i = 0; i < ig; i++) {
        uint8_t f = get[i].feat;
        if (i == 0 || get[i - 1].feat != f) {
            p->ge_feats[p->n_ge_feats++] = f;
            p->ge[f].off = (uint32_t)to;
        }
        p->ge[f].n++;
        p->thr[to] = get[i].thr;
        p->thr_rule[to++] = get[i].pos;
    }
    for (size_t i = 0; i < il; i++) {
        uint8_t f = let[i].feat;
        if (i == 0 || let[i - 1].feat != f) {
            p->le_feats[p->n_le_feats++] = f;
            p->le[f].off = (uint32_t)to;
        }
        p->le[f].n++;
        p->thr[to] = let[i].thr;
        p->thr_rule[to++] = let[i].pos;
    }
    st = GW_OK;
    goto done;
fail:
    prog_free(p);
done:
    free(kind);
    free(eqt);
    free(get);
    free(let);
    return st;
}

static void ruleset_free(struct gw_ruleset *rs) {
    prog_free(&rs->full);
    prog_free(&rs->trusted);
    prog_free(&rs->guards);
    free(rs->sets);
    free(rs);
}

void gw_ruleset_release(struct gw_ruleset *rs) {
    if (rs != NULL && atomic_fetch_sub(&rs->refs, 1) == 1) ruleset_free(rs);
}

static int check_rules(const struct gw_rule_spec *r, uint32_t n, const struct gw_ruleset_spec *s) {
    for (uint32_t i = 0; i < n; i++) {
        if (r[i].n_conds > GW_MAX_CONDS_PER_RULE || r[i].cond_off > s->n_conds ||
            r[i].n_conds > s->n_conds - r[i].cond_off || r[i].action > GW_ACT_FREEZE)
            return GW_ERR_INVALID;
        for (uint16_t j = 0; j < r[i].n_conds; j++) {
            const struct gw_cond_spec *c = &s->conds[r[i].cond_off + j];
            if (c->feature >= GW_NFEAT || c->op >= GW_NOPS) return GW_ERR_INVALID;
            if ((c->op == GW_OP_IN || c->op == GW_OP_NOT_IN) &&
                (c->set_off > s->n_set_values || c->set_len > s->n_set_values - c->set_off))
                return GW_ERR_INVALID;
        }
    }
    return GW_OK;
}

int gw_ruleset_build(const struct gw_ruleset_spec *s, struct gw_ruleset **out) {
    if (s == NULL || out == NULL) return GW_ERR_INVALID;
    if ((uint64_t)s->n_rules + s->n_guards > GW_MAX_RULES || s->n_set_values > GW_MAX_SET_VALUES ||
        s->n_tiers > GW_MAX_TIERS || s->default_method < GW_ACT_FACE ||
        s->default_method > GW_ACT_OLD_DEVICE || !(s->step_up < s->block) ||
        !(s->block < s->block_and_freeze) ||
        (s->n_rules && !s->rules) || (s->n_guards && !s->guards) || (s->n_conds && !s->conds) ||
        (s->n_set_values && !s->set_values) || (s->n_tiers && !s->tiers))
        return GW_ERR_INVALID;
    if (check_rules(s->rules, s->n_rules, s) || check_rules(s->guards, s->n_guards, s))
        return GW_ERR_INVALID;
    struct gw_ruleset *rs = calloc(1, sizeof *rs);
    if (rs == NULL) return GW_ERR_NOMEM;
    atomic_init(&rs->refs, 1);
    rs->version = s->version;
    rs->n_rules = s->n_rules;
    rs->n_guards = s->n_guards;
    rs->t_step = s->step_up;
    rs->t_block = s->block;
    rs->t_freeze = s->block_and_freeze;
    rs->default_method = s->default_method;
    for (int i = 0; i < 256; i++) rs->tier_of_level[i] = -1;
    for (uint32_t i = 0; i < s->n_tiers; i++) {
        if (s->tiers[i].level == 0 || rs->tier_of_level[s->tiers[i].level] >= 0) {
            free(rs);
            return GW_ERR_INVALID;
        }
        rs->tiers[i] = s->tiers[i];
        rs->tier_of_level[s->tiers[i].level] = (int16_t)i;
    }
    rs->n_tiers = s->n_tiers;
    int st = GW_ERR_NOMEM;
    uint32_t *which = calloc((size_t)s->n_rules + s->n_guards + 1, sizeof *which);
    rs->sets = calloc((size_t)s->n_set_values + 1, sizeof *rs->sets);
    if (!which || !rs->sets) goto fail;
    memcpy(rs->sets, s->set_values, (size_t)s->n_set_values * sizeof *rs->sets);
    /* sort every set so membership is a binary search; overlapping sets sort the same */
    for (uint32_t pass = 0; pass < 2; pass++) {
        const struct gw_rule_spec *r = pass ? s->guards : s->rules;
        uint32_t n = pass ? s->n_guards : s->n_rules;
        for (uint32_t i = 0; i < n; i++)
            for (uint16_t j = 0; j < r[i].n_conds; j++) {
                const struct gw_cond_spec *c = &s->conds[r[i].cond_off + j];
                if (c->op == GW_OP_IN || c->op == GW_OP_NOT_IN)
                    qsort(rs->sets + c->set_off, c->set_len, sizeof(int64_t), cmp_i64);
            }
    }
    for (uint32_t i = 0; i < s->n_rules; i++) which[i] = i;
    if ((st = prog_build(&rs->full, s->rules, which, s->n_rules, 0, s->conds, rs->sets))) goto fail;
    uint32_t nt = 0;
    for (uint32_t i = 0; i < s->n_rules; i++)
        if (s->rules[i].trusted) which[nt++] = i;
    if ((st = prog_build(&rs->trusted, s->rules, which, nt, 0, s->conds, rs->sets))) goto fail;
    for (uint32_t i = 0; i < s->n_guards; i++) which[i] = i;
    if ((st = prog_build(&rs->guards, s->guards, which, s->n_guards, s->n_rules, s->conds,
                         rs->sets)))
        goto fail;
    free(which);
    *out = rs;
    return GW_OK;
fail:
    free(which);
    ruleset_free(rs);
    return st;
}

/* -- evaluation ----------------------------------------------------------------------- */

struct acc {
    int64_t score;
    uint64_t sig;
    uint16_t *fired;
    uint32_t nf;
    uint8_t floor;
    uint8_t method_rank;
    uint8_t method;
};

static const uint8_t METHOD_RANK[7] = {0, 3, 1, 4, 2, 0, 0}; /* sms_up > face > old > sms_down */

static inline int in_set(const int64_t *s, uint32_t n, int64_t x) {
    if (n <= 8) {
        for (uint32_t i = 0; i < n; i++)
            if (s[i] == x) return 1;
        return 0;
    }
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (s[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && s[lo] == x;
}

static inline int cond_ok(const struct gw_cond *c, const int64_t *f, const int64_t *sets) {
    int64_t x = f[c->feat];
    switch (c->op) {
    case GW_OP_EQ: return x == c->value;
    case GW_OP_NE: return x != c->value;
    case GW_OP_LT: return x < c->value;
    case GW_OP_LE: return x <= c->value;
    case GW_OP_GT: return x > c->value;
    case GW_OP_GE: return x >= c->value;
    case GW_OP_IN: return in_set(sets + c->set_off, c->set_len, x);
    default: return !in_set(sets + c->set_off, c->set_len, x);
    }
}

static inline void run_rule(const struct gw_prog *p, uint32_t pos, uint32_t start,
                            const int64_t *f, const int64_t *sets, struct acc *a) {
    const struct gw_crule *r = &p->rules[pos];
    const struct gw_cond *c = p->conds + r->cond_off;
    for (uint32_t j = start; j < r->n_conds; j++)
        if (!cond_ok(&c[j], f, sets)) return;
    a->fired[a->nf++] = r->index;
    a->score += r->score;
    a->sig += r->id_hash;
    if (r->action == GW_ACT_BLOCK && a->floor < GW_BLOCK) a->floor = GW_BLOCK;
    else if (r->action == GW_ACT_FREEZE) a->floor = GW_BLOCK_AND_FREEZE;
    else if (r->action >= GW_ACT_FACE && r->action <= GW_ACT_OLD_DEVICE &&
             METHOD_RANK[r->action] > a->method_rank) {
        a->method_rank = METHOD_RANK[r->action];
        a->method = r->action;
    }
}

static void prog_eval(const struct gw_prog *p, const int64_t *f, const int64_t *sets,
                      struct acc *a) {
    for (uint32_t k = 0; k < p->n_eq_feats; k++) {
        uint8_t feat = p->eq_feats[k];
        int64_t x = f[feat];
        size_t hv = eq_hash(feat, x);
        if (!(p->eq_filter[feat][(hv >> 62) & 3] & (1ull << ((hv >> 56) & 63)))) continue;
        size_t h = hv & p->eq_mask;
        for (;;) {
            const struct gw_eqent *e = &p->eq[h];
            if (!e->used) break;
            if (e->feat == feat && e->value == x) {
                for (uint32_t i = 0; i < e->len; i++) run_rule(p, p->eq_lists[e->off + i], 1, f, sets, a);
                break;
            }
            h = (h + 1) & p->eq_mask;
        }
    }
    for (uint32_t k = 0; k < p->n_ge_feats; k++) {
        uint8_t feat = p->ge_feats[k];
        int64_t x = f[feat];
        const struct gw_range *r = &p->ge[feat];
        for (uint32_t i = r->off; i < r->off + r->n && p->thr[i] <= x; i++)
            run_rule(p, p->thr_rule[i], 1, f, sets, a);
    }
    for (uint32_t k = 0; k < p->n_le_feats; k++) {
        uint8_t feat = p->le_feats[k];
        int64_t x = f[feat];
        const struct gw_range *r = &p->le[feat];
        for (uint32_t i = r->off; i < r->off + r->n && p->thr[i] >= x; i++)
            run_rule(p, p->thr_rule[i], 1, f, sets, a);
    }
    for (uint32_t i = 0; i < p->n_always; i++) run_rule(p, p->always[i], 0, f, sets, a);
}

static int cmp_u16(const void *a, const void *b) {
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static void sort_u16(uint16_t *v, uint32_t n) {
    if (n > 24) {
        qsort(v, n, sizeof *v, cmp_u16);
        return;
    }
    for (uint32_t i = 1; i < n; i++) {
        uint16_t x = v[i];
        uint32_t j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

#define VEL_MASK (0x3full << GW_F_VEL_1M_COUNT)

/* Velocity features are summed over 20 buckets; computed only when a program reads them. */
struct lazy {
    const struct gw_tx *tx;
    const struct gw_acct *st;
    int velocity_done;
};
static void velocity(int64_t ts_ms, const struct gw_acct *st, int64_t *f);

static inline void need(struct lazy *lz, const struct gw_prog *p, int64_t *f) {
    if (!lz->velocity_done && (p->feat_mask & VEL_MASK)) {
        velocity(lz->tx->ts_ms, lz->st, f);
        lz->velocity_done = 1;
    }
}

/* Decide one transaction on rule set rs from the features f. buf holds GW_MAX_RULES. */
static uint64_t decide(const struct gw_ruleset *rs, int64_t *f, struct lazy *lz,
                       struct gw_decision *d, uint16_t *buf) {
    int64_t amount = f[GW_F_AMOUNT];
    struct acc a = {0, 0, buf, 0, GW_ALLOW, 0, 0};
    uint8_t path = GW_PATH_FULL;
    int level = (int)f[GW_F_TIER];
    if (level > 0 && level < 256 && rs->tier_of_level[level] >= 0) {
        const struct gw_tier_spec *t = &rs->tiers[rs->tier_of_level[level]];
        if ((__int128)f[GW_F_QUOTA_AMOUNT] + amount <= t->daily_amount &&
            f[GW_F_QUOTA_COUNT] + 1 <= t->daily_count) {
            struct acc g = {0, 0, buf, 0, GW_ALLOW, 0, 0};
            need(lz, &rs->guards, f);
            prog_eval(&rs->guards, f, rs->sets, &g);
            a.nf = g.nf;
            a.sig = g.sig;
            if (g.nf == 0) path = GW_PATH_TRUSTED;
        }
    }
    const struct gw_prog *prog = path == GW_PATH_TRUSTED ? &rs->trusted : &rs->full;
    need(lz, prog, f);
    prog_eval(prog, f, rs->sets, &a);
    sort_u16(buf, a.nf);
    uint8_t outcome = a.score >= rs->t_freeze  ? GW_BLOCK_AND_FREEZE
                      : a.score >= rs->t_block ? GW_BLOCK
                      : a.score >= rs->t_step  ? GW_STEP_UP
                                               : GW_ALLOW;
    if (a.floor > outcome) outcome = a.floor;
    d->score = a.score;
    d->version = rs->version;
    d->outcome = outcome;
    d->method = outcome == GW_STEP_UP ? (a.method ? a.method : rs->default_method) : 0;
    d->path = path;
    d->flags = 0;
    d->n_fired_total = (uint16_t)a.nf;
    d->n_fired = (uint16_t)(a.nf < GW_MAX_FIRED ? a.nf : GW_MAX_FIRED);
    memcpy(d->fired, buf, d->n_fired * sizeof *buf);
    return a.sig;
}

/* -- account state -------------------------------------------------------------------- */

#define NWIN 3
#define NBUCKETS 20
static const int64_t WIN_MS[NWIN] = {10000, 600000, 10800000};
static const uint32_t WIN_N[NWIN] = {6, 6, 8};
static const uint32_t WIN_OFF[NWIN] = {0, 6, 12};
#define DAY_MS 86400000LL

struct gw_bucket { uint32_t epoch, count; uint64_t sum; };

struct gw_acct {
    uint64_t account;
    int64_t baseline;
    uint64_t devices[GW_KNOWN_DEVICES];
    uint64_t last_city;
    uint64_t quota_amount;
    uint32_t quota_day, quota_count, tx_count;
    uint16_t last_country;
    uint8_t n_devices, dev_next;
    struct gw_bucket buckets[NBUCKETS];
};

struct retired { void *p; void (*fn)(void *); };

struct snapshot {
    struct gw_ruleset *rs, *shadow;
    const struct gw_u64map *trusted, *lists[GW_NLISTS], *frozen;
};

struct gw_engine {
    _Atomic uint64_t active;
    char pad0[56];
    _Atomic(struct gw_ruleset *) live;
    _Atomic(struct gw_ruleset *) shadow;
    _Atomic(struct gw_trusted *) trusted;
    _Atomic(struct gw_u64map *) lists[GW_NLISTS];
    _Atomic(struct gw_u64map *) frozen;
    pthread_mutex_t mu;
    struct retired *retired;
    size_t n_retired, cap_retired;
    /* account state: single writer (the scorer) */
    uint32_t *slots;
    size_t slot_mask;
    struct gw_acct *accts;
    size_t cap_accts, max_accounts;
    _Atomic uint64_t n_accts;
    _Atomic uint64_t n_frozen;
    _Atomic uint64_t st_scored, st_outcome[4], st_path[2], st_frozen, st_nostate;
};

uint64_t gw_hash_str(const char *s, size_t len) {
    if (len == 0 || s == NULL) return 0;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int gw_tx_fill_hashes(struct gw_tx *txs, size_t n, const char *blob, size_t blob_len,
                      const uint32_t *ends) {
    if ((n && (txs == NULL || ends == NULL)) || (blob_len && blob == NULL)) return GW_ERR_INVALID;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t h[3];
        for (int k = 0; k < 3; k++) {
            size_t end = ends[3 * i + k];
            if (end < start || end > blob_len || end - start > GW_MAX_STR) return GW_ERR_INVALID;
            h[k] = gw_hash_str(blob + start, end - start);
            start = end;
        }
        txs[i].device = h[0];
        txs[i].ip = h[1];
        txs[i].city = h[2];
    }
    return GW_OK;
}

static int retire(struct gw_engine *eng, void *p, void (*fn)(void *)) {
    /* caller holds eng->mu */
    if (p == NULL) return GW_OK;
    if (eng->n_retired == eng->cap_retired) {
        size_t cap = eng->cap_retired ? eng->cap_retired * 2 : 16;
        struct retired *r = realloc(eng->retired, cap * sizeof *r);
        if (r == NULL) return GW_ERR_NOMEM;
        eng->retired = r;
        eng->cap_retired = cap;
    }
    eng->retired[eng->n_retired++] = (struct retired){p, fn};
    return GW_OK;
}

static void reclaim_locked(struct gw_engine *eng) {
    if (atomic_load(&eng->active) != 0) return;
    for (size_t i = 0; i < eng->n_retired; i++) eng->retired[i].fn(eng->retired[i].p);
    eng->n_retired = 0;
}

void gw_engine_reclaim(struct gw_engine *eng) {
    if (eng == NULL) return;
    pthread_mutex_lock(&eng->mu);
    reclaim_locked(eng);
    pthread_mutex_unlock(&eng->mu);
}

static void rs_release_fn(void *p) { gw_ruleset_release(p); }
static void trusted_release_fn(void *p) { gw_trusted_release(p); }
static void map_free_fn(void *p) {
    gw_u64map_destroy(p);
    free(p);
}

int gw_engine_new(size_t max_accounts, struct gw_engine **out) {
    if (out == NULL || max_accounts == 0 || max_accounts > (1u << 30)) return GW_ERR_INVALID;
    struct gw_engine *eng = calloc(1, sizeof *eng);
    if (eng == NULL) return GW_ERR_NOMEM;
    eng->max_accounts = max_accounts;
    eng->slot_mask = 1023;
    eng->slots = calloc(1024, sizeof *eng->slots);
    eng->cap_accts = 512;
    eng->accts = malloc(eng->cap_accts * sizeof *eng->accts);
    if (!eng->slots || !eng->accts || pthread_mutex_init(&eng->mu, NULL) != 0) {
        free(eng->slots);
        free(eng->accts);
        free(eng);
        return GW_ERR_NOMEM;
    }
    *out = eng;
    return GW_OK;
}

void gw_engine_free(struct gw_engine *eng) {
    if (eng == NULL) return;
    pthread_mutex_lock(&eng->mu);
    retire(eng, atomic_exchange(&eng->live, NULL), rs_release_fn);
    retire(eng, atomic_exchange(&eng->shadow, NULL), rs_release_fn);
    retire(eng, atomic_exchange(&eng->trusted, NULL), trusted_release_fn);
    for (int k = 0; k < GW_NLISTS; k++) retire(eng, atomic_exchange(&eng->lists[k], NULL), map_free_fn);
    retire(eng, atomic_exchange(&eng->frozen, NULL), map_free_fn);
    for (size_t i = 0; i < eng->n_retired; i++) eng->retired[i].fn(eng->retired[i].p);
    pthread_mutex_unlock(&eng->mu);
    pthread_mutex_destroy(&eng->mu);
    free(eng->retired);
    free(eng->slots);
    free(eng->accts);
    free(eng);
}

static int swap_rs(struct gw_engine *eng, _Atomic(struct gw_ruleset *) *slot, struct gw_ruleset *rs) {
    pthread_mutex_lock(&eng->mu);
    if (rs) atomic_fetch_add(&rs->refs, 1);
    struct gw_ruleset *old = atomic_exchange(slot, rs);
    int st = retire(eng, old, rs_release_fn);
    if (st != GW_OK) { /* cannot defer the free: put the old one back */
        atomic_store(slot, old);
        if (rs) atomic_fetch_sub(&rs->refs, 1);
    }
    reclaim_locked(eng);
    pthread_mutex_unlock(&eng->mu);
    return st;
}

int gw_engine_set_rules(struct gw_engine *eng, struct gw_ruleset *rs) {
    if (eng == NULL || rs == NULL) return GW_ERR_INVALID;
    return swap_rs(eng, &eng->live, rs);
}

int gw_engine_set_shadow(struct gw_engine *eng, struct gw_ruleset *rs) {
    if (eng == NULL) return GW_ERR_INVALID;
    return swap_rs(eng, &eng->shadow, rs);
}

int gw_engine_set_trusted(struct gw_engine *eng, struct gw_trusted *t) {
    if (eng == NULL) return GW_ERR_INVALID;
    pthread_mutex_lock(&eng->mu);
    if (t) gw_trusted_retain(t);
    struct gw_trusted *old = atomic_exchange(&eng->trusted, t);
    int st = retire(eng, old, trusted_release_fn);
    if (st != GW_OK) {
        atomic_store(&eng->trusted, old);
        gw_trusted_release(t);
    }
    reclaim_locked(eng);
    pthread_mutex_unlock(&eng->mu);
    return st;
}

static int swap_map_locked(struct gw_engine *eng, _Atomic(struct gw_u64map *) *slot,
                           struct gw_u64map *m) {
    struct gw_u64map *old = atomic_exchange(slot, m);
    int st = retire(eng, old, map_free_fn);
    if (st != GW_OK) {
        atomic_store(slot, old);
        map_free_fn(m);
    }
    reclaim_locked(eng);
    return st;
}

int gw_engine_set_list(struct gw_engine *eng, int kind, const uint64_t *values, size_t n) {
    if (eng == NULL || kind < 0 || kind >= GW_NLISTS || (n && values == NULL)) return GW_ERR_INVALID;
    struct gw_u64map *m = malloc(sizeof *m);
    if (m == NULL) return GW_ERR_NOMEM;
    int st = gw_u64map_init(m, n, 0);
    for (size_t i = 0; st == GW_OK && i < n; i++) st = gw_u64map_put(m, values[i], 1);
    if (st != GW_OK) {
        map_free_fn(m);
        return st;
    }
    pthread_mutex_lock(&eng->mu);
    st = swap_map_locked(eng, &eng->lists[kind], m);
    pthread_mutex_unlock(&eng->mu);
    return st;
}

/* The frozen set is updated in place under eng->mu (key published after its value, both
 * with atomic stores) and copied into a larger table only when it fills up, so freezing
 * costs O(1) amortised while scorers read it without a lock. */
static inline int frozen_get(const struct gw_u64map *m, uint64_t key) {
    if (m == NULL) return 0;
    if (key == 0) return __atomic_load_n(&m->has_zero, __ATOMIC_ACQUIRE) &&
                         __atomic_load_n(&m->zero_val, __ATOMIC_RELAXED);
    size_t i = (size_t)gw_mix64(key) & m->mask;
    for (;;) {
        uint64_t k = __atomic_load_n(&m->keys[i], __ATOMIC_ACQUIRE);
        if (k == key) return __atomic_load_n(&m->vals[i], __ATOMIC_RELAXED);
        if (k == 0) return 0;
        i = (i + 1) & m->mask;
    }
}

static int frozen_set_locked(struct gw_engine *eng, uint64_t account, int frozen) {
    struct gw_u64map *m = atomic_load(&eng->frozen);
    if (frozen_get(m, account) == (frozen != 0)) return GW_OK;
    if (m == NULL || (account != 0 && (m->count + 1) * 4 > (m->mask + 1) * 3)) {
        struct gw_u64map *n = malloc(sizeof *n);
        if (n == NULL) return GW_ERR_NOMEM;
        int st = gw_u64map_init(n, m ? 2 * m->count + 16 : 16, 1);
        if (st == GW_OK && m) {
            if (m->has_zero && m->zero_val) st = gw_u64map_put(n, 0, 1);
            for (size_t i = 0; st == GW_OK && i <= m->mask; i++)
                if (m->keys[i] && m->vals[i]) st = gw_u64map_put(n, m->keys[i], 1);
        }
        if (st == GW_OK) st = retire(eng, m, map_free_fn);
        if (st != GW_OK) {
            map_free_fn(n);
            return st;
        }
        atomic_store(&eng->frozen, n);
        m = n;
    }
    uint8_t v = frozen != 0;
    if (account == 0) {
        __atomic_store_n(&m->zero_val, v, __ATOMIC_RELAXED);
        __atomic_store_n(&m->has_zero, 1, __ATOMIC_RELEASE);
    } else {
        size_t i = (size_t)gw_mix64(account) & m->mask;
        while (m->keys[i] != 0 && m->keys[i] != account) i = (i + 1) & m->mask;
        __atomic_store_n(&m->vals[i], v, __ATOMIC_RELAXED);
        if (m->keys[i] == 0) {
            __atomic_store_n(&m->keys[i], account, __ATOMIC_RELEASE);
            m->count++;
        }
    }
    atomic_store_explicit(&eng->n_frozen, atomic_load_explicit(&eng->n_frozen, RELAXED) +
                          (frozen ? 1 : (uint64_t)-1), RELAXED);
    return GW_OK;
}

int gw_engine_freeze(struct gw_engine *eng, uint64_t account, int frozen) {
    if (eng == NULL) return GW_ERR_INVALID;
    pthread_mutex_lock(&eng->mu);
    int st = frozen_set_locked(eng, account, frozen);
    reclaim_locked(eng);
    pthread_mutex_unlock(&eng->mu);
    return st;
}

static void enter(struct gw_engine *eng, struct snapshot *s) {
    atomic_fetch_add(&eng->active, 1);
    s->rs = atomic_load(&eng->live);
    s->shadow = atomic_load(&eng->shadow);
    s->trusted = gw_trusted_map(atomic_load(&eng->trusted));
    for (int k = 0; k < GW_NLISTS; k++) s->lists[k] = atomic_load(&eng->lists[k]);
    s->frozen = atomic_load(&eng->frozen);
}

static void leave(struct gw_engine *eng) { atomic_fetch_sub(&eng->active, 1); }

int gw_engine_is_frozen(struct gw_engine *eng, uint64_t account) {
    if (eng == NULL) return GW_ERR_INVALID;
    atomic_fetch_add(&eng->active, 1);
    int r = frozen_get(atomic_load(&eng->frozen), account);
    leave(eng);
    return r;
}

static int grow_slots(struct gw_engine *eng) {
    size_t cap = (eng->slot_mask + 1) * 2;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) return GW_ERR_NOMEM;
    size_t n = atomic_load_explicit(&eng->n_accts, RELAXED);
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)gw_mix64(eng->accts[i].account) & (cap - 1);
        while (slots[h]) h = (h + 1) & (cap - 1);
        slots[h] = (uint32_t)(i + 1);
    }
    free(eng->slots);
    eng->slots = slots;
    eng->slot_mask = cap - 1;
    return GW_OK;
}

/* The account's state, or NULL when it has none. */
static struct gw_acct *acct_find(const struct gw_engine *eng, uint64_t account) {
    for (size_t h = (size_t)gw_mix64(account) & eng->slot_mask;; h = (h + 1) & eng->slot_mask) {
        uint32_t s = eng->slots[h];
        if (s == 0) return NULL;
        if (eng->accts[s - 1].account == account) return &eng->accts[s - 1];
    }
}

/* The account's state, created empty on first sight; NULL when the table is full. */
static struct gw_acct *acct_get(struct gw_engine *eng, uint64_t account) {
    struct gw_acct *found = acct_find(eng, account);
    if (found != NULL) return found;
    size_t n = atomic_load_explicit(&eng->n_accts, RELAXED);
    if (n >= eng->max_accounts) return NULL;
    if (n == eng->cap_accts) {
        size_t cap = eng->cap_accts * 2;
        struct gw_acct *a = realloc(eng->accts, cap * sizeof *a);
        if (a == NULL) return NULL;
        eng->accts = a;
        eng->cap_accts = cap;
    }
    if ((n + 1) * 2 > eng->slot_mask + 1 && grow_slots(eng) != GW_OK) return NULL;
    size_t h = (size_t)gw_mix64(account) & eng->slot_mask;
    while (eng->slots[h]) h = (h + 1) & eng->slot_mask;
    struct gw_acct *a = &eng->accts[n];
    memset(a, 0, sizeof *a);
    a->account = account;
    eng->slots[h] = (uint32_t)(n + 1);
    atomic_store_explicit(&eng->n_accts, n + 1, RELAXED);
    return a;
}

static inline uint64_t sat_add_u64(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }
static inline int64_t clamp_i64(uint64_t v) { return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v; }

static void velocity(int64_t ts_ms, const struct gw_acct *st, int64_t *f) {
    for (int w = 0; w < NWIN; w++) {
        uint32_t e = (uint32_t)(uint64_t)(ts_ms / WIN_MS[w]);
        uint64_t cnt = 0, sum = 0;
        for (uint32_t b = WIN_OFF[w]; b < WIN_OFF[w] + WIN_N[w]; b++) {
            const struct gw_bucket *bk = &st->buckets[b];
            if (bk->count && (uint32_t)(e - bk->epoch) < WIN_N[w]) {
                cnt += bk->count;
                sum = sat_add_u64(sum, bk->sum);
            }
        }
        f[GW_F_VEL_1M_COUNT + 2 * w] = (int64_t)cnt;
        f[GW_F_VEL_1M_SUM + 2 * w] = clamp_i64(sum);
    }
}

static void features(const struct gw_tx *tx, const struct gw_acct *st, const struct snapshot *s,
                     int64_t *f) {
    f[GW_F_AMOUNT] = tx->amount;
    f[GW_F_CURRENCY] = tx->currency;
    f[GW_F_CHANNEL] = tx->channel;
    f[GW_F_MCC] = tx->mcc;
    f[GW_F_COUNTRY] = tx->country;
    f[GW_F_CITY] = (int64_t)tx->city;
    f[GW_F_DEVICE] = (int64_t)tx->device;
    f[GW_F_IP] = (int64_t)tx->ip;
    f[GW_F_ACCOUNT] = (int64_t)tx->account;
    f[GW_F_COUNTERPARTY] = (int64_t)tx->counterparty;
    f[GW_F_HOUR] = (tx->ts_ms / 3600000) % 24;
    f[GW_F_WEEKDAY] = (tx->ts_ms / DAY_MS + 3) % 7;
    f[GW_F_BASELINE] = st->baseline;
    if (st->baseline > 0) {
        __int128 r = (__int128)tx->amount * 1000 / st->baseline;
        f[GW_F_AMOUNT_TO_BASELINE] = r > INT64_MAX ? INT64_MAX : (int64_t)r;
    } else {
        f[GW_F_AMOUNT_TO_BASELINE] = 0;
    }
    int known = 0;
    for (int i = 0; i < st->n_devices; i++) known |= st->devices[i] == tx->device;
    f[GW_F_NEW_DEVICE] = tx->device != 0 && st->n_devices > 0 && !known;
    f[GW_F_KNOWN_DEVICES] = st->n_devices;
    f[GW_F_COUNTRY_CHANGED] = tx->country && st->last_country && tx->country != st->last_country;
    f[GW_F_CITY_CHANGED] = tx->city && st->last_city && tx->city != st->last_city;
    f[GW_F_TX_COUNT] = st->tx_count;
    f[GW_F_BL_ACCOUNT] = gw_u64map_get(s->lists[GW_LIST_ACCOUNT], tx->account) != 0;
    f[GW_F_BL_DEVICE] = tx->device && gw_u64map_get(s->lists[GW_LIST_DEVICE], tx->device) != 0;
    f[GW_F_BL_COUNTERPARTY] = gw_u64map_get(s->lists[GW_LIST_COUNTERPARTY], tx->counterparty) != 0;
    f[GW_F_BL_IP] = tx->ip && gw_u64map_get(s->lists[GW_LIST_IP], tx->ip) != 0;
    int level = gw_u64map_get(s->trusted, tx->account);
    f[GW_F_TRUSTED] = level != 0;
    f[GW_F_TIER] = level;
    uint32_t day = (uint32_t)(tx->ts_ms / DAY_MS);
    int today = st->quota_day == day;
    f[GW_F_QUOTA_AMOUNT] = today ? clamp_i64(st->quota_amount) : 0;
    f[GW_F_QUOTA_COUNT] = today ? st->quota_count : 0;
}

static void update_state(struct gw_acct *st, const struct gw_tx *tx, uint8_t outcome) {
    for (int w = 0; w < NWIN; w++) {
        uint64_t ep = (uint64_t)(tx->ts_ms / WIN_MS[w]);
        uint32_t e = (uint32_t)ep;
        struct gw_bucket *bk = &st->buckets[WIN_OFF[w] + (uint32_t)(ep % WIN_N[w])];
        uint32_t d = e - bk->epoch;
        if (bk->count && d == 0) {
            if (bk->count < UINT32_MAX) bk->count++;
            bk->sum = sat_add_u64(bk->sum, (uint64_t)tx->amount);
        } else if (bk->count == 0 || d < 0x80000000u) {
            bk->epoch = e;
            bk->count = 1;
            bk->sum = (uint64_t)tx->amount;
        }
    }
    if (st->tx_count < UINT32_MAX) st->tx_count++;
    if (outcome > GW_STEP_UP) return;
    st->baseline = st->baseline == 0 ? tx->amount : st->baseline + (tx->amount - st->baseline) / 8;
    if (tx->device) {
        int known = 0;
        for (int i = 0; i < st->n_devices; i++) known |= st->devices[i] == tx->device;
        if (!known) {
            st->devices[st->dev_next] = tx->device;
            st->dev_next = (uint8_t)((st->dev_next + 1) % GW_KNOWN_DEVICES);
            if (st->n_devices < GW_KNOWN_DEVICES) st->n_devices++;
        }
    }
    if (tx->country) st->last_country = tx->country;
    if (tx->city) st->last_city = tx->city;
    uint32_t day = (uint32_t)(tx->ts_ms / DAY_MS);
    if (st->quota_day != day) {
        st->quota_day = day;
        st->quota_amount = 0;
        st->quota_count = 0;
    }
    st->quota_amount = sat_add_u64(st->quota_amount, (uint64_t)tx->amount);
    if (st->quota_count < UINT32_MAX) st->quota_count++;
}

static void shadow_compare(struct gw_ruleset *sh, const struct gw_decision *live,
                           const struct gw_decision *sd, uint64_t live_sig, uint64_t sh_sig) {
    struct shadow_acc *a = &sh->shadow;
    STAT_ADD(a->compared, 1);
    STAT_ADD(a->matrix[live->outcome][sd->outcome], 1);
    if (live->path != sd->path) STAT_ADD(a->path_differs, 1);
    STAT_ADD(a->score_diff_sum, sd->score - live->score);
    /* the sets of fired ids differ (signature: sum of id hashes) */
    if (live_sig != sh_sig || live->n_fired_total != sd->n_fired_total)
        STAT_ADD(a->fired_differs, 1);
}

static void score_one(struct gw_engine *eng, struct snapshot *s, const struct gw_tx *tx,
                      struct gw_decision *d, uint16_t *buf) {
    STAT_ADD(eng->st_scored, 1);
    if (frozen_get(s->frozen, tx->account)) {
        memset(d, 0, offsetof(struct gw_decision, fired));
        d->outcome = GW_BLOCK;
        d->version = s->rs->version;
        d->flags = GW_DEC_FROZEN;
        STAT_ADD(eng->st_frozen, 1);
        STAT_ADD(eng->st_outcome[GW_BLOCK], 1);
        STAT_ADD(eng->st_path[GW_PATH_FULL], 1);
        return;
    }
    struct gw_acct empty;
    struct gw_acct *st = acct_get(eng, tx->account);
    uint8_t flags = 0;
    if (st == NULL) {
        memset(&empty, 0, sizeof empty);
        empty.account = tx->account;
        st = &empty;
        flags = GW_DEC_NOSTATE;
        STAT_ADD(eng->st_nostate, 1);
    }
    int64_t f[GW_NFEAT];
    features(tx, st, s, f);
    struct lazy lz = {tx, st, 0};
    uint64_t sig = decide(s->rs, f, &lz, d, buf);
    d->flags = flags;
    if (s->shadow) {
        struct gw_decision sd;
        uint64_t ssig = decide(s->shadow, f, &lz, &sd, buf);
        shadow_compare(s->shadow, d, &sd, sig, ssig);
    }
    update_state(st, tx, d->outcome);
    STAT_ADD(eng->st_outcome[d->outcome], 1);
    STAT_ADD(eng->st_path[d->path], 1);
    if (d->outcome == GW_BLOCK_AND_FREEZE) {
        gw_engine_freeze(eng, tx->account, 1);
        s->frozen = atomic_load(&eng->frozen); /* still protected: we are inside enter() */
    }
}

static int tx_valid(const struct gw_tx *tx) { return tx->amount >= 0 && tx->ts_ms >= 0; }

int gw_engine_score(struct gw_engine *eng, const struct gw_tx *tx, struct gw_decision *out) {
    if (eng == NULL || tx == NULL || out == NULL || !tx_valid(tx)) return GW_ERR_INVALID;
    uint16_t buf[GW_MAX_RULES];
    struct snapshot s;
    enter(eng, &s);
    int st = GW_ERR_STATE;
    if (s.rs) {
        score_one(eng, &s, tx, out, buf);
        st = GW_OK;
    }
    leave(eng);
    return st;
}

int gw_engine_score_batch(struct gw_engine *eng, const struct gw_tx *txs, size_t n,
                          struct gw_decision *out) {
    if (eng == NULL || (n && (txs == NULL || out == NULL))) return GW_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!tx_valid(&txs[i])) return GW_ERR_INVALID;
    uint16_t buf[GW_MAX_RULES];
    struct snapshot s;
    enter(eng, &s);
    int st = GW_ERR_STATE;
    if (s.rs) {
        for (size_t i = 0; i < n; i++) score_one(eng, &s, &txs[i], &out[i], buf);
        st = GW_OK;
    }
    leave(eng);
    return st;
}

int gw_engine_score_fields(struct gw_engine *eng, uint64_t account, uint64_t counterparty,
                           int64_t amount, int64_t ts_ms, const char *device, size_t device_len,
                           const char *ip, size_t ip_len, const char *city, size_t city_len,
                           uint32_t currency, uint16_t country, uint16_t mcc, uint8_t channel,
                           struct gw_decision *out) {
    if (device_len > GW_MAX_STR || ip_len > GW_MAX_STR || city_len > GW_MAX_STR)
        return GW_ERR_INVALID;
    struct gw_tx tx = {
        .account = account, .counterparty = counterparty, .amount = amount, .ts_ms = ts_ms,
        .device = gw_hash_str(device, device_len), .ip = gw_hash_str(ip, ip_len),
        .city = gw_hash_str(city, city_len), .currency = currency, .country = country,
        .mcc = mcc, .channel = channel,
    };
    return gw_engine_score(eng, &tx, out);
}

int gw_engine_profile(struct gw_engine *eng, uint64_t account, int64_t ts_ms,
                      struct gw_profile *out) {
    if (eng == NULL || out == NULL || ts_ms < 0) return GW_ERR_INVALID;
    memset(out, 0, sizeof *out);
    const struct gw_acct *st = acct_find(eng, account);
    if (st == NULL) return GW_ERR_NOT_FOUND;
    int64_t f[GW_NFEAT];
    velocity(ts_ms, st, f);
    out->vel_1m_count = f[GW_F_VEL_1M_COUNT];
    out->vel_1m_sum = f[GW_F_VEL_1M_SUM];
    out->vel_1h_count = f[GW_F_VEL_1H_COUNT];
    out->vel_1h_sum = f[GW_F_VEL_1H_SUM];
    out->vel_24h_count = f[GW_F_VEL_24H_COUNT];
    out->vel_24h_sum = f[GW_F_VEL_24H_SUM];
    out->baseline = st->baseline;
    out->known_devices = st->n_devices;
    out->tx_count = st->tx_count;
    return GW_OK;
}

int gw_engine_stats(struct gw_engine *eng, struct gw_engine_stats *out) {
    if (eng == NULL || out == NULL) return GW_ERR_INVALID;
    out->scored = atomic_load_explicit(&eng->st_scored, RELAXED);
    for (int i = 0; i < 4; i++) out->outcome[i] = atomic_load_explicit(&eng->st_outcome[i], RELAXED);
    for (int i = 0; i < 2; i++) out->path[i] = atomic_load_explicit(&eng->st_path[i], RELAXED);
    out->frozen_hits = atomic_load_explicit(&eng->st_frozen, RELAXED);
    out->nostate = atomic_load_explicit(&eng->st_nostate, RELAXED);
    out->accounts = atomic_load_explicit(&eng->n_accts, RELAXED);
    atomic_fetch_add(&eng->active, 1);
    struct gw_trusted *t = atomic_load(&eng->trusted);
    out->trusted_accounts = gw_trusted_count(t);
    out->frozen_accounts = atomic_load_explicit(&eng->n_frozen, RELAXED);
    leave(eng);
    return GW_OK;
}

int gw_engine_shadow_stats(struct gw_engine *eng, struct gw_shadow_stats *out) {
    if (eng == NULL || out == NULL) return GW_ERR_INVALID;
    memset(out, 0, sizeof *out);
    atomic_fetch_add(&eng->active, 1);
    struct gw_ruleset *sh = atomic_load(&eng->shadow);
    if (sh) {
        struct shadow_acc *a = &sh->shadow;
        out->compared = atomic_load_explicit(&a->compared, RELAXED);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) out->matrix[i][j] = atomic_load_explicit(&a->matrix[i][j], RELAXED);
        out->path_differs = atomic_load_explicit(&a->path_differs, RELAXED);
        out->fired_differs = atomic_load_explicit(&a->fired_differs, RELAXED);
        out->score_diff_sum = atomic_load_explicit(&a->score_diff_sum, RELAXED);
        out->version = sh->version;
    }
    leave(eng);
    return GW_OK;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int gw_bench_score(struct gw_engine *eng, const struct gw_tx *txs, size_t n, uint32_t passes,
                   uint32_t batch, int64_t advance_ms, uint64_t *elapsed_ns, uint64_t *paths) {
    if (eng == NULL || txs == NULL || n == 0 || elapsed_ns == NULL || paths == NULL ||
        batch > 4096)
        return GW_ERR_INVALID;
    struct gw_tx *work = malloc(n * sizeof *work);
    struct gw_decision *out = malloc((batch ? batch : 1) * sizeof *out);
    if (work == NULL || out == NULL) {
        free(work);
        free(out);
        return GW_ERR_NOMEM;
    }
    memcpy(work, txs, n * sizeof *work);
    uint64_t total = 0;
    int st = GW_OK;
    paths[0] = paths[1] = 0;
    for (uint32_t p = 0; p < passes && st == GW_OK; p++) {
        uint64_t t0 = now_ns();
        if (batch == 0) {
            for (size_t i = 0; i < n && st == GW_OK; i++) {
                st = gw_engine_score(eng, &work[i], out);
                paths[out->path & 1]++;
            }
        } else {
            for (size_t i = 0; i < n && st == GW_OK; i += batch) {
                size_t m = n - i < batch ? n - i : batch;
                st = gw_engine_score_batch(eng, &work[i], m, out);
                for (size_t k = 0; k < m; k++) paths[out[k].path & 1]++;
            }
        }
        total += now_ns() - t0;
        for (size_t i = 0; i < n; i++) work[i].ts_ms += advance_ms;
    }
    free(work);
    free(out);
    *elapsed_ns = total;
    return st;
}
